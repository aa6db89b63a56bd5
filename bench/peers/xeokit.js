// The peer viewer of bench/plant_viewers.py: the xeokit SDK (its own minified ES build, served beside this file) as its
// examples use it, loading one XKT made by xeokit-convert: a Viewer on a canvas of the TwinView viewer's size
// (?w=&h=), XKTLoaderPlugin, and a TreeViewPlugin (containment hierarchy) beside it as the tree panel. Defaults
// everywhere else (antialias on, as the SDK ships; ?aa=0 turns it off, as the TwinView viewer does on software GL).
// Marks on the page's clock: xeokit:loaded (the model and its metadata are in the scene), xeokit:first-frame
// (the first frame rendered after that); the bench marks the tree's first row.
import { Viewer, XKTLoaderPlugin, TreeViewPlugin } from './xeokit-sdk.min.es.js';

const q = new URLSearchParams(location.search);
const canvas = document.getElementById('c');
canvas.width = Number(q.get('w')) || innerWidth - 300;
canvas.height = Number(q.get('h')) || innerHeight;
canvas.style.width = `${canvas.width}px`;
canvas.style.height = `${canvas.height}px`;
const viewer = new Viewer({ canvasId: 'c', antialias: q.get('aa') !== '0' });
new TreeViewPlugin(viewer, {
  containerElement: document.getElementById('tree'),
  hierarchy: 'containment',
  autoExpandDepth: 3,
});
const loader = new XKTLoaderPlugin(viewer);
const model = loader.load({ id: 'plant', src: q.get('xkt') });
const xeokit = { viewer, model, loaded: false, error: null };
window.xeokit = xeokit;
model.on('error', (e) => { xeokit.error = String(e); });
model.on('loaded', () => {
  performance.mark('xeokit:loaded');
  xeokit.loaded = true;
  viewer.cameraFlight.jumpTo(model);
  viewer.scene.once('rendered', () => performance.mark('xeokit:first-frame'));
});
