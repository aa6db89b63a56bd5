// Boot: connect the session, load the scene the server names, wire the panels, expose the test hook.
import { Box3, Vector3 } from 'three';
import { bindAlarmHistory } from './alarms/history.js';
import { AlarmPanel } from './alarms/panel.js';
import { linkClaims, linkCredentials, refusalText } from './auth.js';
import { ElementBatches } from './batcher.js';
import { Catalog } from './catalog.js';
import { startCollaboration } from './collab/index.js';
import { elementMenu } from './element_menu.js';
import { Labels } from './labels.js';
import { loadModel } from './loader.js';
import { NavCube } from './nav_cube.js';
import { PresenceLayer } from './presence.js';
import { CLOSE_NAME, RESYNC_LIVE, wsUrl } from './protocol.js';
import { Session } from './session.js';
import { areaOf, areaOfInterest, modelCaster, orbitToArea, standingPose } from './start_pose.js';
import { TwinState } from './state.js';
import { TileStreamer, parseIndex } from './tiles.js';
import { startTimeMachine } from './timeline/index.js';
import { pinOf } from './topics/create.js';
import { topicLines } from './topics/list.js';
import { arr } from './topics/viewpoint.js';
import { MeasureTool } from './tools/measure.js';
import { SectionTool } from './tools/section.js';
import { SectionCaps } from './tools/section_caps.js';
import { SectionHandles } from './tools/section_handles.js';
import { SectionPanel } from './tools/section_panel.js';
import { TwinView } from './twin_view.js';
import { ContextMenu, onLongPress } from './ui/context_menu.js';
import { $ } from './ui/dom.js';
import { Freshness } from './ui/freshness.js';
import { startLayout } from './ui/layout.js';
import { bindLegend } from './ui/legend.js';
import { clearNotice, showNotice, showProgress } from './ui/notice.js';
import { PropertiesPanel } from './ui/properties.js';
import { bindStatusChip } from './ui/status.js';
import { TreePanel } from './ui/tree.js';
import { Names } from './ui/names.js';
import { YouPanel, rememberedName } from './ui/you.js';
import { Viewer } from './viewer.js';
import { Visibility } from './visibility.js';

// A click that moves the pointer further than this (px) was an orbit drag, not a pick.
const CLICK_SLOP_PX = 4;
// The hover ray (our laser for others) is recomputed at most this often.
const HOVER_INTERVAL_MS = 100;
// Point-cloud picking tolerance, as a fraction of the model's diagonal.
const POINT_PICK_FRACTION = 0.003;
// From this many glTF nodes on, preparing the batches takes long enough (~0.3 s on software GL) to be
// worth painting "Preparing elements…" first.
const LARGE_MODEL_NODES = 20000;
// The panels are filled after the first frame with the model, or after this long without one.
const FIRST_FRAME_WAIT_MS = 500;
// A tiled scene tells the server what it holds once its tiles have stopped coming and going for this long: each
// change costs a snapshot of the new area.
const INTEREST_SETTLE_MS = 1000;
// "View resynchronised" is news, not a state: it goes away after this long.
const RESYNC_NOTICE_MS = 4000;
// Lines of text the XR panel holds (an element's, or a topic's).
const XR_PANEL_LINES = 8;
// Keyboard, walk and fly speed (m/s): this fraction of the model's diagonal, within walking pace and a car's.
const SPEED_PER_DIAGONAL = 0.05;
const MIN_SPEED = 1.4;
const MAX_SPEED = 30;

const params = new URLSearchParams(location.search);
const sceneParam = params.get('scene');
/**
 * The GLB download starts at boot when the URL names the scene, alongside the WebSocket handshake and
 * snapshot instead of after them; loadScene takes it over when the snapshot names the same file.
 * @type {{url: string, abort: AbortController, model: Promise<import('./loader.js').Model|import('./loader.js').TiledModel>, onProgress: (f: number, b: number) => void}|null}
 */
let earlyLoad = null;
if (sceneParam) {
  const abort = new AbortController();
  const url = `/scenes/${sceneParam}/scene.glb`;
  earlyLoad = { url, abort, model: Promise.resolve(/** @type {any} */ (null)), onProgress: () => {} };
  const el = earlyLoad;
  const prefetch = /** @type {any} */ (window).twinviewPrefetch; // started by index.html
  delete (/** @type {any} */ (window).twinviewPrefetch); // ours now: as a global it would keep the model alive
  el.model = loadModel(url, { signal: abort.signal, onProgress: (f, b) => el.onProgress(f, b),
    early: prefetch?.url === url ? prefetch : undefined });
  el.model.catch(() => {}); // loadScene decides what a failure means
}

const state = new TwinState();
const viewer = new Viewer($('#view'), bootContext());
const credentials = linkCredentials(location);
const session = new Session(state, {
  join: credentials,
  url: wsUrl(location) + (sceneParam ? `/${encodeURIComponent(sceneParam)}` : ''),
  client: 'twinview-web',
  name: params.get('name') || rememberedName(),
  layer: params.get('layer'),
});
const labels = new Labels(viewer, $('#labels'));
const freshness = new Freshness(session, state);
const presence = new PresenceLayer(viewer, session, labels, $('#people'));
const visibility = new Visibility();
const menu = new ContextMenu(document.body);
const section = new SectionTool(viewer, () => (app.batches ? boxOfAll(app.batches) : null));
const caps = new SectionCaps(viewer, section);
const handles = new SectionHandles(viewer, section);
const measure = new MeasureTool(viewer, { readout: $('#measure-readout'), panel: $('#measure-controls'), list: $('#measure-list'),
  indicator: $('#snap-indicator'), labels });
const navCube = new NavCube($('#navcube'), viewer, { box: visibleBox });

/** The loaded scene: `abort` cancels its download, `scope` ends its batches, panels and listeners; `loader`
 * is which reader read the model (Model.via, or "tiles"); `tiles` streams a tiled scene's tiles.
 * @type {{glbUrl: string, loader: string, abort: AbortController|null, scope: AbortController|null, twin: TwinView|null,
 *         batches: import('./batcher.js').ElementBatches|null, catalog: Catalog|null, properties: PropertiesPanel|null, tree: TreePanel|null,
 *         tiles: TileStreamer|null}} */
const app = { glbUrl: '', loader: '', abort: null, scope: null, twin: null, batches: null, catalog: null, properties: null,
  tree: null, tiles: null };

let resolveReady = /** @type {(v: any) => void} */ (() => {});
const ready = new Promise((r) => { resolveReady = r; });

bindStatusChip(session);
const layout = startLayout();
bindLegend($('#legend'), state);
const names = new Names(() => app.catalog, session);
const collab = startCollaboration({ viewer, session, section, measure, select, app, credentials, ready, names, visibility });
const sectionPanel = new SectionPanel({ viewer, section, caps, focusBox, model: () => app });
const you = new YouPanel($('#you'), session, collab.identity, Boolean(linkClaims(credentials.token)?.name));
const timeline = startTimeMachine({ session, app, store: collab.store, select, token: () => credentials.token });

session.addEventListener('snapshot', (e) => {
  const snap = /** @type {import('./session.js').SessionEvent<'snapshot'>} */ (e).detail;
  $('#scene-name').textContent = snap.scene;
  if (snap.glb_url !== app.glbUrl) loadScene(snap.glb_url, snap.scene);
  if (snap.resync && snap.reason && snap.reason !== RESYNC_LIVE) {
    showNotice('info', 'View resynchronised', `The server could not resume this session (${snap.reason}); the view now shows its current state.`);
    setTimeout(() => clearNotice('info'), RESYNC_NOTICE_MS);
  }
});
session.addEventListener('welcome', (e) => fillLayers(/** @type {import('./session.js').SessionEvent<'welcome'>} */ (e).detail));
session.addEventListener('status', (e) => {
  const { status, detail } = /** @type {import('./session.js').SessionEvent<'status'>} */ (e).detail;
  if (status === 'refused') {
    const why = refusalText(session.closeCode, detail, credentials.token);
    if (session.closeCode === CLOSE_NAME) {
      showNotice('error', why.title);
      $('#notice').append(you.form(why.detail, { sent: () => clearNotice('error') }));
    } else {
      showNotice('error', why.title, why.detail, [{ label: 'Reload', run: () => location.reload() }]);
    }
  } else if (status === 'reconnecting') {
    if (session.welcome) {
      showNotice('warning', 'Connection lost — reconnecting…',
        `${detail}. The view keeps the last known state and resumes where it left off.`);
    } else {
      showNotice('warning', 'Cannot reach the TwinView server — retrying…', `${detail}. Is the server running?`);
    }
  } else if (status === 'degraded') {
    showNotice('warning', 'Server degraded — changes are paused', `${detail}. The view shows the last known state.`);
  } else if (status === 'live' || status === 'resynced') {
    clearNotice('warning');
  }
});
// Errors nobody showed where they happened (see Session's 'servererror'): after every listener has run.
session.addEventListener('servererror', (e) => queueMicrotask(() => {
  if (e.defaultPrevented) return;
  const err = /** @type {import('./session.js').SessionEvent<'servererror'>} */ (e).detail;
  showNotice('warning', `Server error: ${err.code}`, err.message);
}));
session.connect();
// With ?scene= the model is on screen without waiting for the WebSocket handshake and snapshot; the
// snapshot's glb_url is normally the same file (then nothing reloads), else it replaces this load.
if (earlyLoad && sceneParam) loadScene(earlyLoad.url, sceneParam);

/**
 * @param {string} glbUrl @param {string} sceneId
 */
async function loadScene(glbUrl, sceneId) {
  app.abort?.abort();
  const abort = new AbortController();
  app.abort = abort;
  app.glbUrl = glbUrl;
  const progress = showProgress(() => abort.abort());
  clearNotice();
  try {
    const model = await takeEarlyLoad(glbUrl, abort, progress.update)
      ?? await loadModel(glbUrl, { signal: abort.signal, onProgress: progress.update });
    performance.mark('twinview:read');
    // A tiled scene (tiles.js): its batches start empty, the tiles join them as they arrive; its catalogue
    // (names, classes, tree, which element has geometry) is one file of columns, asked for at once.
    const tiled = 'tiles' in model ? parseIndex(model.tiles) : null;
    const tilesBase = glbUrl.replace(/scene\.glb$/, 'tiles/');
    const records = tiled ? fetch(tilesBase + tiled.catalog, { signal: abort.signal }).then((r) => {
      if (!r.ok) throw new Error(`${r.status} ${r.statusText}`);
      return r.json();
    }).then((c) => Catalog.columns(c)) : null;
    records?.catch(() => {}); // awaited below
    progress.stage('Preparing elements…');
    // Let the message paint before the busy part, when there is one (a frame is long on software GL).
    if ('nodes' in model && model.nodes > LARGE_MODEL_NODES) await new Promise((r) => requestAnimationFrame(r));
    app.scope?.abort(); // the previous scene's batches, panels and listeners
    app.scope = new AbortController();
    const { signal } = app.scope;
    const batches = 'tiles' in model ? new ElementBatches() : model.batch();
    if (tiled) batches.bounds = new Box3(new Vector3(...tiled.lo), new Vector3(...tiled.hi));
    performance.mark('twinview:batched');
    app.loader = 'tiles' in model ? 'tiles' : model.via;
    app.batches = batches;
    // What the user hides, isolates or x-rays is per scene; a container's contents come from the catalogue (of a
    // tiled scene, also which elements have geometry: those of tiles not loaded yet count).
    const drawn = () => [...(app.catalog?.byId.values() ?? [])].filter((r) => (r.tile ?? -1) >= 0).map((r) => r.id);
    visibility.use({ drawable: (id) => batches.elements.has(id) || (tiled !== null && (app.catalog?.get(id)?.tile ?? -1) >= 0),
      all: () => (tiled ? drawn() : batches.elements.keys()), children: (id) => app.catalog?.children.get(id) ?? [] });
    const twin = new TwinView(viewer, batches, state, labels, visibility, signal);
    app.twin = twin;
    app.tiles = tiled ? new TileStreamer({ index: tiled, base: tilesBase, batches, viewer, signal,
      arrived: (ids) => twin.arrived(ids), leaving: () => twin.leaving() }) : null;
    if (app.tiles) followTiles(app.tiles, twin, signal);
    app.twin.edges.setEnabled(look.edges);
    viewer.clipModel(batches.group);
    caps.use(batches);
    freshness.bindLabels(labels, signal);
    const all = boxOfAll(batches);
    if (all) {
      viewer.fitBox(all, { animate: false });
      startView.pending = true;
      startView();
      // Points are picked within a distance of the ray: a small fraction of the model, not three's 1 m.
      const diagonal = all.getSize(new Vector3()).length();
      viewer.raycaster.params.Points.threshold = diagonal * POINT_PICK_FRACTION;
      viewer.controls.speed = Math.min(MAX_SPEED, Math.max(MIN_SPEED, diagonal * SPEED_PER_DIAGONAL));
    }
    progress.done();
    // The model shows from the next frame on; the panels and the coarser levels of detail follow without holding
    // it back.
    await new Promise((r) => {
      viewer.addEventListener('frame', r, { once: true });
      setTimeout(r, FIRST_FRAME_WAIT_MS); // a hidden tab draws no frames
    });
    // Reflections for the glTF (PBR) materials — metals read as metal — once the model is on screen, when it
    // has such materials. Not on a software GL, where prefiltering holds the GPU process for many seconds,
    // unless asked for (`?env=1`; `?env=0`: never).
    const env = params.get('env');
    const pbr = batches.batches.some((b) => !(/** @type {any} */ (b).isMergedBatch));
    if (env === '1' || (env !== '0' && pbr && !viewer.softwareGL)) viewer.useEnvironment();
    if (signal.aborted) return;
    // Names, classes and the tree come with the model (a tiled scene's: its catalogue); property sets and search
    // from the server (catalog.js).
    app.catalog = new Catalog(records ? await records
      : batches.nodes.map((n) => ({ id: n.id, name: n.name, class: n.cls, parent: n.parent })), sceneId);
    if (signal.aborted) return;
    wirePanels(app.catalog, signal);
    if (sectionPanel.open) sectionPanel.fillStoreys();
    if ('meshSource' in model) app.twin.useLods(model.meshSource);
    // Load phases, visible in the browser's performance panel.
    performance.measure('twinview:prepare', 'twinview:read');
    quickLook(sceneId);
    resolveReady({ elements: tiled ? tiled.elements : batches.elements.size, drawCalls: batches.drawCalls,
      loadMs: Math.round(performance.now()) });
  } catch (e) {
    progress.done();
    const err = /** @type {Error & {hint?: string}} */ (e);
    const retry = { label: 'Load again', run: () => loadScene(glbUrl, sceneId) };
    if (err.name === 'AbortError') return showNotice('info', 'Loading cancelled', 'The live connection stays open.', [retry]);
    app.glbUrl = ''; // a later snapshot may try again (e.g. after the server rebuilt the scene)
    showNotice('error', 'The 3D model failed to load', `${err.message}${err.hint ? ` — ${err.hint}` : ''}`, [retry]);
  }
}

/**
 * Follow a tiled scene's tiles as they come and go: edges, outlines and section caps for the batches now held, and
 * tell the server which part of the scene this viewer holds (docs/PROTOCOL.md §15 `interest`): the box of the
 * loaded tiles once they have settled for INTEREST_SETTLE_MS, or the whole scene when every tile is in; the
 * server then sends the live values of that part only (and a snapshot of it at each change).
 * @param {TileStreamer} tiles @param {TwinView} twin @param {AbortSignal} signal
 */
function followTiles(tiles, twin, signal) {
  let timer = 0;
  const send = () => {
    if (signal.aborted) return;
    const box = new Box3();
    for (const t of tiles.tiles) if (t.state === 'loaded') box.union(t.box);
    session.setInterest(tiles.complete || box.isEmpty() ? null : { box: [box.min.toArray(), box.max.toArray()] });
  };
  tiles.addEventListener('change', () => {
    twin.left();
    caps.use(tiles.batches);
    clearTimeout(timer);
    timer = window.setTimeout(send, INTEREST_SETTLE_MS);
  }, { signal });
  signal.addEventListener('abort', () => {
    clearTimeout(timer);
    session.setInterest(null);
  });
}

/**
 * The early download of `glbUrl`, if there is one: its result, or null (then load it the usual way).
 * @param {string} glbUrl @param {AbortController} abort @param {(f: number, b: number) => void} onProgress
 */
async function takeEarlyLoad(glbUrl, abort, onProgress) {
  const el = earlyLoad;
  earlyLoad = null;
  if (!el) return null;
  if (el.url !== glbUrl) {
    el.abort.abort();
    return null;
  }
  el.onProgress = onProgress;
  const early = el.abort; // not `el`: the listener lives as long as `abort` and must not keep the model
  abort.signal.addEventListener('abort', () => early.abort());
  try {
    return await el.model;
  } catch (e) {
    if (abort.signal.aborted) throw e;
    return null; // e.g. refused without the session's credentials: the usual path reports it
  }
}

/** @param {import('./batcher.js').ElementBatches} batches */
function boxOfAll(batches) {
  if (batches.bounds) return batches.bounds.clone();
  /** @type {import('three').Box3|null} */
  let box = null;
  for (const e of batches.elements.values()) box = box ? box.union(e.box) : e.box.clone();
  return box;
}

/**
 * The box of the elements shown (all of them when none is), or null before a model is in. Of a tiled scene, an
 * element of a tile not loaded counts as its tile's box (the index's bounds), so Home frames the whole model.
 */
function visibleBox() {
  const batches = app.batches;
  if (!batches) return null;
  /** @type {import('three').Box3|null} */
  let box = null;
  for (const id of batches.elements.keys()) {
    if (!batches.isVisible(id)) continue;
    const b = batches.boxOf(id);
    if (b && !b.isEmpty()) box = box ? box.union(b) : b;
  }
  const hidden = visibility.hidden;
  const pending = app.tiles && pendingBox(hidden.size ? [...visibility.scope.all()].filter((id) => !hidden.has(id)) : null);
  if (pending) box = box ? box.union(pending) : pending;
  return box ?? boxOfAll(batches);
}

/**
 * World box of elements (a container: its contents) as placed, or null when none is drawn; of a tiled scene, an
 * element of a tile not loaded counts as its tile's box. @param {Iterable<string>} ids
 */
function boxOf(ids) {
  const box = app.twin?.boxOf(ids) ?? null;
  const pending = app.tiles ? pendingBox(visibility.expand(ids)) : null;
  return pending ? box?.union(pending) ?? pending : box;
}

/**
 * The box of the tiles not loaded that hold one of these drawable ids (null: any), by the index's bounds; null
 * when there is none (every tile in, or a scene served as one file). @param {Iterable<string>|null} ids
 */
function pendingBox(ids) {
  const tiles = app.tiles;
  if (!tiles || tiles.complete) return null;
  /** @type {Set<number>|null} */
  let wanted = null;
  if (ids) {
    wanted = new Set();
    for (const id of ids) {
      if (!app.batches?.elements.has(id)) wanted.add(app.catalog?.get(id)?.tile ?? -1);
    }
  }
  const box = tiles.pendingBox(wanted ? (n) => /** @type {Set<number>} */ (wanted).has(n) : undefined);
  return box.isEmpty() ? null : box;
}

/** What Fit and Section act on: the selection (a storey: its contents), else the whole model as shown. */
function focusBox() {
  const id = app.twin?.selected;
  return id ? boxOf([id]) : visibleBox();
}

/**
 * The first view of a scene looks at its area of interest (start_pose.js), once both the model and the state are
 * in — unless the session says where to look (a presenter, a procedure step: collab/ flies there) or the user
 * has moved the camera.
 */
function startView() {
  const batches = app.batches;
  if (!startView.pending || !batches || state.seq < 0) return;
  startView.pending = false;
  if (collab.presenter.following || collab.procedure.step?.viewpoint?.camera) return;
  const start = performance.now();
  const cast = modelCaster(viewer, batches);
  const area = areaOfInterest({ batches, state, cast });
  if (area) orbitToArea(viewer, area, cast);
  performance.measure('twinview:start-view', { start }); // its cost, in the browser's performance panel
}
startView.pending = false;
state.addEventListener('reset', startView);
// Once the user moves or the camera flies somewhere chosen (a fit, a viewpoint, the API), a late first snapshot
// no longer moves it.
viewer.controls.addEventListener('start', () => { startView.pending = false; });
viewer.addEventListener('flight', () => { startView.pending = false; });

/**
 * Where to stand at 1:1 to see elements (null: the area of interest: the presenter's view, the procedure step,
 * the live elements), in the scene's coordinates.
 * @param {string[]|null} ids @param {Vector3|null} prefer the heading to face when the area does not say
 * @returns {import('./start_pose.js').StandingPose|null}
 */
function standing(ids, prefer) {
  const batches = app.batches;
  if (!batches) return null;
  const cast = modelCaster(viewer, batches);
  const area = ids ? areaOf(ids, batches, null)
    : areaOfInterest({ batches, state, cast, presenter: collab.presenter.state?.viewpoint?.camera ?? null, step: collab.procedure.step });
  if (!area) return null;
  const { floor, heading } = standingPose(area, batches, cast, prefer);
  const toWorld = viewer.world.matrixWorld;
  return { floor: floor.applyMatrix4(toWorld), heading: heading.transformDirection(toWorld) };
}

/** @param {Catalog} catalog @param {AbortSignal} signal */
function wirePanels(catalog, signal) {
  app.tree = new TreePanel($('#tree'), /** @type {HTMLInputElement} */ ($('#search')), catalog, (id) => select(id, true),
    { visibility, onMenu: (target, x, y) => menu.open(x, y, elementMenu(target, menuActions(null)), target.label) }, signal);
  app.properties = new PropertiesPanel($('#properties'), catalog, state, {
    chart: timeline.chart,
    signal,
  });
  new AlarmPanel($('#alarms'), $('#alarm-count'), { session, state, names, identity: collab.identity, onGo: (id) => select(id, true), signal });
  bindAlarmHistory($('#alarm-history'), { state, names, signal });
}

/**
 * Select an element everywhere: highlight, tree, properties; optionally fly to it.
 * @param {string|null} id @param {boolean} [fly]
 */
function select(id, fly = false) {
  app.twin?.select(id);
  app.tree?.select(id);
  app.properties?.show(id);
  collab.selected(id);
  if (viewer.renderer.xr.isPresenting) xr?.showPanel(id);
  const box = id ? app.twin?.boxOf([id]) : null;
  if (fly && box) viewer.fitBox(box);
  // An element of a tile not loaded (picked in the tree or a search): its tile comes first, then the flight.
  const tile = id && !app.batches?.elements.has(id) ? app.catalog?.get(id)?.tile ?? -1 : -1;
  if (tile >= 0) app.tiles?.request(tile).then(() => { if (fly && app.twin?.selected === id) select(id, true); });
}

/**
 * What the element menu does here; `hit` is where the view was right-clicked or long-pressed (a topic is pinned
 * there), null from the tree (a topic is pinned on top of the element).
 * @param {import('three').Intersection|null} hit @returns {import('./element_menu.js').MenuActions}
 */
function menuActions(hit) {
  return {
    visibility,
    zoomTo: (ids) => {
      const box = boxOf(ids);
      if (box) viewer.fitBox(box);
    },
    properties: (id) => {
      select(id);
      if (matchMedia('(max-width: 900px)').matches) layout.open('properties');
      else $('#properties').scrollIntoView({ block: 'nearest' });
    },
    addTopic: collab.identity.may('topic.create') ? (id) => {
      if (hit) return collab.creator.startAt(pinOf(hit, id, viewer.world));
      const box = app.twin?.boxOf([id]);
      if (!box) return;
      const top = box.getCenter(new Vector3()).setY(box.max.y).applyMatrix4(viewer.world.matrixWorld.clone().invert());
      collab.creator.startAt({ element: id, point: arr(top), normal: [0, 1, 0] });
    } : null,
  };
}

/** The element menu for what is under a point of the view (which it selects). @param {number} x @param {number} y */
function openViewMenu(x, y) {
  const hit = viewer.pickAt(x, y);
  const id = hit && app.batches ? app.batches.idOf(hit) : null;
  if (id) select(id);
  openElementMenu(id, x, y, hit);
}

/**
 * The element menu of one element (null: of the model) at a point of the window.
 * @param {string|null} id @param {number} x @param {number} y @param {import('three').Intersection|null} hit
 */
function openElementMenu(id, x, y, hit) {
  const label = id ? app.catalog?.label(id) ?? id : 'Model';
  menu.open(x, y, elementMenu(id ? { ids: [id], label, id } : null, menuActions(hit)), label);
}

/** @param {import('./protocol.js').Welcome} welcome */
function fillLayers(welcome) {
  const sel = /** @type {HTMLSelectElement} */ ($('#layer-select'));
  sel.replaceChildren(...welcome.layers.map((l) => new Option(l, l, false, l === welcome.layer)));
  sel.onchange = () => session.subscribe(sel.value);
}

/** AR Quick Look on iOS / visionOS: Safari opens the USDZ itself. @param {string} sceneId */
function quickLook(sceneId) {
  const a = /** @type {HTMLAnchorElement} */ ($('#quicklook'));
  a.href = `/scenes/${encodeURIComponent(sceneId)}/scene.usdz`;
  a.hidden = !document.createElement('a').relList.supports('ar');
}

// Picking: a click without drag selects what is under the pointer (or clears the selection).
let down = { x: 0, y: 0 };
viewer.renderer.domElement.addEventListener('pointerdown', (e) => { down = { x: e.clientX, y: e.clientY }; });
viewer.renderer.domElement.addEventListener('pointerup', (e) => {
  if (Math.hypot(e.clientX - down.x, e.clientY - down.y) > CLICK_SLOP_PX) return;
  if (e.button === 2) return openViewMenu(e.clientX, e.clientY); // a right-click, not a right-drag (pan)
  if (sectionPanel.click(e.clientX, e.clientY)) return;
  if (measure.active) {
    measure.click(e.clientX, e.clientY);
    return;
  }
  if (collab.click(e.clientX, e.clientY)) return;
  select(pickId(e.clientX, e.clientY));
});
// Our pointer, shown to the others as a laser while it is over the model.
let lastHover = 0;
viewer.renderer.domElement.addEventListener('pointermove', (e) => {
  if (!e.buttons) measure.hover(e.clientX, e.clientY, e.timeStamp); // not while orbiting
  if (e.timeStamp - lastHover < HOVER_INTERVAL_MS) return; // a raycast per mouse event is wasted work
  lastHover = e.timeStamp;
  const hit = viewer.pickAt(e.clientX, e.clientY);
  presence.pointer = hit ? viewer.raycaster.ray.clone() : null;
  // The element under the mouse is outlined, not when a section handle (drawn in front) is what it points at.
  const over = hit && e.pointerType === 'mouse' && !e.buttons && handles.handleAt(e.clientX, e.clientY) < 0;
  app.twin?.hover(over ? app.batches?.idOf(hit) ?? null : null);
});
viewer.renderer.domElement.addEventListener('pointerleave', () => app.twin?.hover(null));
/** @param {HTMLElement} btn @param {boolean} on */
const press = (btn, on) => btn.setAttribute('aria-pressed', String(on));
$('#btn-section').addEventListener('click', (e) => {
  sectionPanel.show(!sectionPanel.open);
  press(/** @type {HTMLElement} */ (e.currentTarget), sectionPanel.open);
});
$('#btn-measure').addEventListener('click', (e) => {
  measure.setActive(!measure.active);
  press(/** @type {HTMLElement} */ (e.currentTarget), measure.active);
});
// Edges on or off (`?edges=1` starts with them on), for this scene and the next.
const look = { edges: params.get('edges') === '1' };
press($('#btn-edges'), look.edges);
$('#btn-edges').addEventListener('click', () => {
  look.edges = !look.edges;
  app.twin?.edges.setEnabled(look.edges);
  press($('#btn-edges'), look.edges);
});
for (const b of $('#measure-controls').querySelectorAll('[data-kind]')) {
  b.addEventListener('click', () => measure.setKind(/** @type {import('./tools/measure.js').MeasureKind} */ (/** @type {HTMLElement} */ (b).dataset.kind)));
}
$('#measure-finish').addEventListener('click', () => measure.finish());
$('#measure-clear').addEventListener('click', () => measure.clear());
viewer.renderer.domElement.addEventListener('dblclick', () => { if (measure.active) measure.finish(); });
$('#btn-fit').addEventListener('click', () => {
  const box = focusBox();
  if (box) viewer.fitBox(box);
});
// Double-click: select the element and fly to it (its box framed, orbiting about it); on empty space, fit all.
viewer.renderer.domElement.addEventListener('dblclick', (e) => {
  if (measure.active) return;
  const id = pickId(e.clientX, e.clientY);
  select(id);
  const box = id ? boxOf([id]) : visibleBox();
  if (box) viewer.fitBox(box);
});
// The browser's own menu never shows over the view; a long press of a finger opens ours.
viewer.renderer.domElement.addEventListener('contextmenu', (e) => e.preventDefault());
onLongPress(viewer.renderer.domElement, openViewMenu);
// F fits (the selection, else all), Home goes home, Enter finishes a measurement, Esc cancels its draft, else
// clears the selection and leaves walk or fly; the Menu key (or Shift+F10) opens the selection's element menu;
// movement and zoom keys are the navigation's (navigation.js). Keys typed into a field are the field's.
window.addEventListener('keydown', (e) => {
  const t = e.target;
  if (t instanceof HTMLElement && (t.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(t.tagName))) return;
  if (e.key === 'ContextMenu' || (e.key === 'F10' && e.shiftKey)) {
    if (t instanceof HTMLElement && t.closest('#tree, #context-menu')) return;
    e.preventDefault();
    const id = app.twin?.selected ?? null;
    const at = id ? screenOf(id) : null;
    const r = viewer.renderer.domElement.getBoundingClientRect();
    openElementMenu(id, at?.x ?? r.left + r.width / 2, at?.y ?? r.top + r.height / 2, null);
    return;
  }
  if (e.ctrlKey || e.metaKey || e.altKey || e.defaultPrevented) return; // used by a widget (timeline, alarm list)
  if (e.key === 'f' || e.key === 'F') $('#btn-fit').click();
  else if (e.key === 'Enter' && measure.active) measure.finish();
  else if (e.key === 'Home') {
    e.preventDefault();
    navCube.home();
  } else if (e.key === 'Escape') {
    if (measure.draft.length) return measure.cancel();
    select(null);
    viewer.controls.setMode('orbit');
  }
});
window.addEventListener('pagehide', () => {
  app.abort?.abort();
  session.close();
});

// WebXR: xr.js (controller rays, the canvas panel, AR placement) is loaded, in a chunk of its own, only
// where the browser offers an immersive session; the buttons show once it is there.
/** @type {import('./xr.js').XRController|null} */
let xr = null;
startXR().catch((e) => console.warn('WebXR is not available:', e));

async function startXR() {
  const system = navigator.xr;
  if (!system) return;
  const offered = await Promise.all(['immersive-vr', 'immersive-ar']
    .map((m) => system.isSessionSupported(/** @type {XRSessionMode} */ (m)).catch(() => false)));
  if (!offered.some(Boolean)) return;
  const { XRController } = await import('./xr.js');
  const ctl = new XRController(viewer, {
    modelBox: () => (app.batches ? boxOfAll(app.batches) : null),
    onPick: (id) => select(id),
    idOf: (hit) => app.batches?.idOf(hit) ?? null,
    panelLines,
    setPointer: (ray) => { presence.pointer = ray; },
    topicOn: (ray, camera) => collab.pins.topicOn(ray, camera),
    topicLines: (guid) => topicLines(collab.store, guid, XR_PANEL_LINES, names),
    nameOf: (id) => names.element(id),
    anchorOf: (id) => app.twin?.topOf(id) ?? null,
    alarms: () => state.alarms.values(),
    standing,
  }, labels);
  xr = ctl;
  ctl.offer($('#btn-vr'), $('#btn-ar'));
  ctl.addEventListener('error', (e) => showNotice('error', /** @type {CustomEvent} */ (e).detail));
  viewer.renderer.xr.addEventListener('sessionstart', () => { $('#xr-overlay').hidden = ctl.mode !== 'ar'; });
  viewer.renderer.xr.addEventListener('sessionend', () => { $('#xr-overlay').hidden = true; });
  $('#xr-scale').addEventListener('click', () => ctl.toggleScale());
  ctl.addEventListener('scale', (e) => { // from the overlay's button or the XR panel's
    $('#xr-scale').textContent = /** @type {CustomEvent<boolean>} */ (e).detail ? 'Tabletop' : '1:1';
    $('#xr-hint').textContent = 'Tap a surface to place the model again';
  });
  $('#xr-exit').addEventListener('click', () => viewer.renderer.xr.getSession()?.end());
  state.addEventListener('delta', () => ctl.redrawPanel());
  collab.store.addEventListener('change', () => ctl.redrawPanel());
}

/** Text of the XR properties panel: name, class, status, then live values (no ids: people read names). @param {string} id @returns {string[]} */
function panelLines(id) {
  const rec = app.catalog?.get(id);
  const v = state.visuals.get(id);
  const live = [...(state.props.get(id) ?? [])].map(([k, st]) =>
    `${k}: ${typeof st.v === 'number' ? st.v.toFixed(2) : String(st.v)}${st.u ? ` ${st.u}` : ''}${st.q && st.q !== 'good' ? ` (${st.q})` : ''}`);
  return [names.element(id), rec?.class ?? '', v?.status ? `status: ${v.status}` : '', ...live].filter(Boolean)
    .slice(0, XR_PANEL_LINES);
}

/**
 * The WebGL context index.html makes (boot_gl.js; made now if it has not been yet), if any: ours now.
 * @returns {import('./gl_context.js').GLContext|undefined}
 */
function bootContext() {
  const w = /** @type {any} */ (window);
  const make = w.twinviewGL;
  delete w.twinviewGL;
  const gl = typeof make === 'function' ? make() : null;
  return gl?.canvas ? gl : undefined;
}

/** Where an element's centre is on screen (client px), or null. @param {string} id */
function screenOf(id) {
  const c = app.batches?.boxOf(id)?.getCenter(new Vector3());
  if (!c) return null;
  const p = c.applyMatrix4(viewer.world.matrixWorld).project(viewer.camera);
  const r = viewer.renderer.domElement.getBoundingClientRect();
  return { x: r.left + ((p.x + 1) / 2) * r.width, y: r.top + ((1 - p.y) / 2) * r.height };
}

/** @param {number} x @param {number} y */
function pickId(x, y) {
  const hit = viewer.pickAt(x, y);
  return hit && app.batches ? app.batches.idOf(hit) : null;
}

/** Test and automation hook. */
Object.assign(window, {
  twinview: {
    ready,
    state,
    session,
    viewer,
    app,
    presence,
    freshness,
    layout,
    measure,
    section,
    navCube,
    visibility,
    menu,
    caps,
    handles,
    sectionPanel,
    /** the XR controller, once loaded (see startXR) */
    get xr() { return xr; },
    collab,
    timeline,
    get seq() { return state.seq; },
    /** @param {string} id */
    colorOf: (id) => app.batches?.colorOf(id) ?? '',
    drawCalls: () => viewer.renderer.info.render.calls,
    screenOf,
    /** @param {number} x @param {number} y */
    pick: (x, y) => { const id = pickId(x, y); select(id); return id; },
    select,
    /** Render `n` frames back to back and return the mean frame time (ms) measured with requestAnimationFrame. */
    async frameTime(n = 30) {
      const stamps = [];
      for (let i = 0; i <= n; i++) {
        viewer.camera.position.applyAxisAngle(viewer.camera.up, 0.01);
        viewer.camera.lookAt(viewer.controls.target);
        viewer.invalidate();
        stamps.push(await new Promise((r) => requestAnimationFrame(r)));
      }
      return { meanMs: (stamps[n] - stamps[0]) / n, renderMs: viewer.lastFrameMs, drawCalls: viewer.renderer.info.render.calls };
    },
  },
});
// Load phases (see loadScene): the app has been evaluated; what is left is the model.
performance.mark('twinview:app');
