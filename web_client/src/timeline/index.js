// The time machine in one call (docs/CLIENT.md, "Time machine"): the replay over the session, the timeline bar
// under the view, the history chart and the comparison of two moments. main.js gives it the session and the
// loaded scene; the properties panel charts a property through `chart.toggle`.
import { $, h } from '../ui/dom.js';
import { TimelineBar } from './bar.js';
import { ChartPanel } from './chart.js';
import { Compare } from './compare.js';
import { MAX_KEYS, historyApi } from './history_api.js';
import { ReplayController } from './replay.js';

/**
 * @param {{session: import('../session.js').Session,
 *          app: {twin: import('../twin_view.js').TwinView|null, batches: import('../batcher.js').ElementBatches|null,
 *                catalog: import('../catalog.js').Catalog|null},
 *          store: import('../topics/store.js').TopicStore, select: (id: string|null, fly?: boolean) => void,
 *          token: () => string|null}} deps `token`: the join link's, for the REST reads
 */
export function startTimeMachine({ session, app, store, select, token }) {
  const api = historyApi(token);
  const view = $('#view');
  /** A panel over the view. @param {string} id */
  const float = (id) => {
    const el = h('div', { id, class: `float ${id}`, hidden: true });
    view.appendChild(el);
    return el;
  };
  const nameOf = (/** @type {string} */ id) => app.catalog?.label(id) ?? id;
  const replay = new ReplayController(session, {
    resetTopics: (topics, comments) => store.reset(/** @type {import('../protocol.js').Snapshot} */ (
      /** @type {unknown} */ ({ topics, comments }))),
    isSelf: (who) => {
      const w = session.welcome;
      return [w?.name, w?.user, w?.session_id, session.client].includes(who);
    },
  });
  const bar = new TimelineBar(h('div', { id: 'timeline' }), {
    replay, api, nameOf, now: () => (Date.now() + session.clockOffsetMs) / 1000,
  });
  view.appendChild(bar.root);
  session.state.addEventListener('delta', (e) => {
    if (replay.mode === 'live' && /** @type {import('../state.js').DeltaEvent} */ (e).detail.delta.events?.length) bar.refreshSoon();
  });
  const chart = new ChartPanel(float('chart-panel'), { bar, replay, api, nameOf });
  const compare = new Compare(float('compare-panel'), { state: session.state, app, bar, api, nameOf, select: (id) => select(id, true) });
  const chartBtn = h('button', { class: 'tl-chart', title: 'Chart the selected element\'s values', onclick: () => {
    const id = app.twin?.selected;
    const numeric = [...(session.state.props.get(id ?? '') ?? [])].filter(([, st]) => typeof st.v === 'number');
    if (!id || !numeric.length) {
      bar.error.textContent = 'Pick an element with live values first (or use Chart beside a value in Properties).';
      return;
    }
    for (const [prop] of numeric.slice(0, MAX_KEYS)) if (!chart.has(id, prop)) chart.toggle(id, prop);
  } }, 'Chart');
  const compareBtn = h('button', { class: 'tl-compare-open', title: 'Colour elements by change between two moments',
    onclick: () => compare.open() }, 'Compare');
  bar.tools.append(chartBtn, compareBtn);
  return { replay, bar, chart, compare };
}
