// Run by index.html before the app (inlined by the build), once the page's elements are there: the WebGL
// context, sized for and placed in the view (see gl_context.js). window.twinviewGL makes it (once) and
// returns it; main.js calls it for the Viewer.
//
// Making it blocks this thread for tens of ms (on a software GL, ~100), and the model's download worker
// (index.html's first script) needs this thread for a moment before it runs. So it is made once the
// worker says it has started, or when the app asks, whichever comes first: while the app downloads when
// that takes a while, and never ahead of the model's download.
import { createContext } from './gl_context.js';

const w = /** @type {any} */ (window);
/** @type {import('./gl_context.js').GLContext|null} */
let gl = null;
const make = () => {
  if (!gl) {
    gl = createContext(document.getElementById('view') ?? undefined);
    performance.mark('twinview:gl');
  }
  return gl;
};
w.twinviewGL = make;
const prefetch = w.twinviewPrefetch;
if (!prefetch || prefetch.messages.length) make();
else prefetch.worker.addEventListener('message', make, { once: true });
