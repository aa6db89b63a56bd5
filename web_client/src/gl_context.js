// The viewer's WebGL2 context. index.html makes it while the app is still downloading (boot_gl.js),
// because making one costs synchronous round trips to the GPU process, each waiting behind whatever that
// process is busy with (on a software GL, compositing the page: tens of ms each); the Viewer makes its
// own when there is none. Everything here saves such round trips. No imports: the build inlines this
// into index.html.

// Software GL (no GPU: VMs, remote desktops, headless CI). There 4x MSAA rasterises every triangle per
// sample and doubles the frame time; on a GPU it is nearly free, so it stays on. `?msaa=1|0` overrides.
const SOFTWARE_GL = /swiftshader|llvmpipe|softpipe|software/i;
// No preserveDrawingBuffer: keeping the buffer costs a copy per frame (a third of a software-GL frame);
// the page keeps showing the last frame anyway, and a read-back renders first (topics' snapshotPng). A stencil
// buffer for the caps of cut solids (tools/section_caps.js): it shares the depth buffer's 32 bits (D24S8).
const CONTEXT_ATTRIBUTES = { alpha: true, depth: true, stencil: true, premultipliedAlpha: true,
  preserveDrawingBuffer: false, powerPreference: /** @type {const} */ ('high-performance') };
// What three asks for when its renderer starts (WebGLExtensions.init) and at the first texture upload:
// asked here, while the app downloads (the browser keeps the answers).
const EXTENSIONS = ['EXT_color_buffer_float', 'WEBGL_clip_cull_distance', 'OES_texture_float_linear',
  'EXT_color_buffer_half_float', 'WEBGL_multisampled_render_to_texture', 'WEBGL_render_shared_exponent',
  'EXT_texture_filter_anisotropic'];
const SCISSOR_BOX = 0x0c10;
const VERSION = 0x1f02;
const SAMPLES = 0x80a9;

/**
 * A WebGL2 context (`context` null when the browser has none), its canvas, whether the GL is software,
 * and `known`: parameters three reads when its renderer starts that the browser would fetch from the
 * GPU process every time (see withKnownParameters).
 * @typedef {{canvas: HTMLCanvasElement, context: WebGL2RenderingContext|null, software: boolean,
 *            known: Map<number, any>}} GLContext
 */

/**
 * The context: multisampled unless the renderer is software (see SOFTWARE_GL), which takes a first
 * context to ask, then a second one without MSAA. With `container`, its drawing buffer is sized for it
 * before it is made (resizing a live one is two more round trips) and it is put there.
 * @param {HTMLElement} [container]
 * @returns {GLContext}
 */
export function createContext(container) {
  const forced = new URLSearchParams(location.search).get('msaa');
  // The first context is kept unless the GL turns out to be software. It is sized before it is made only
  // when it is kept for sure (?msaa), else after (one resize: cheap on a GPU); a software GL's second is.
  const first = make(forced !== '0', forced !== null ? container : undefined);
  const gl = first.context;
  if (!gl || forced !== null) return withExtensions(first);
  const info = gl.getExtension('WEBGL_debug_renderer_info');
  const name = String(gl.getParameter(info ? info.UNMASKED_RENDERER_WEBGL : gl.RENDERER));
  if (!SOFTWARE_GL.test(name)) {
    if (container) place(first.canvas, container);
    return withExtensions(first);
  }
  gl.getExtension('WEBGL_lose_context')?.loseContext();
  return withExtensions({ ...make(false, container), software: true });
}

/**
 * Enable what three asks for, on the context that is kept (a first request can be a round trip).
 * @param {GLContext} gl @returns {GLContext}
 */
function withExtensions(gl) {
  for (const name of EXTENSIONS) gl.context?.getExtension(name);
  return gl;
}

/**
 * @param {boolean} antialias @param {HTMLElement} [container] @returns {GLContext}
 */
function make(antialias, container) {
  const canvas = document.createElement('canvas');
  if (container) place(canvas, container);
  const context = canvas.getContext('webgl2', { ...CONTEXT_ATTRIBUTES, antialias });
  const known = new Map();
  if (context) {
    // A new context's scissor box is its whole drawing buffer (WebGL spec; resizing leaves it), a WebGL 2
    // context's version string starts "WebGL 2.0" (all three reads of it), and a drawing buffer made
    // without antialias has no samples.
    known.set(SCISSOR_BOX, Int32Array.of(0, 0, context.drawingBufferWidth, context.drawingBufferHeight));
    known.set(VERSION, 'WebGL 2.0');
    if (!antialias) known.set(SAMPLES, 0);
  }
  return { canvas, context, software: false, known };
}

/** Drawing-buffer pixels per CSS pixel: the screen's, at most 2 (beyond that fill rate costs more than it shows). */
export function pixelRatio() {
  return Math.min(window.devicePixelRatio, 2);
}

/**
 * Size the canvas's drawing buffer as the Viewer will (container size × pixelRatio) and put it in the
 * container: then the renderer's own sizing changes nothing.
 * @param {HTMLCanvasElement} canvas @param {HTMLElement} container
 */
function place(canvas, container) {
  canvas.width = Math.floor((container.clientWidth || 1) * pixelRatio());
  canvas.height = Math.floor((container.clientHeight || 1) * pixelRatio());
  container.appendChild(canvas);
}

/**
 * Run `make` (three's renderer constructor) with `gl.known` answering getParameter for what it holds:
 * three reads the scissor box, version string and sample count when it starts, and for those the browser
 * asks the GPU process each time. Only for a context nothing has used yet, so the values still hold.
 * @template T @param {GLContext} gl @param {() => T} make @returns {T}
 */
export function withKnownParameters(gl, make) {
  const ctx = gl.context;
  if (!ctx || !gl.known.size) return make();
  const own = ctx.getParameter;
  ctx.getParameter = (/** @type {number} */ p) => (gl.known.has(p) ? gl.known.get(p) : own.call(ctx, p));
  try {
    return make();
  } finally {
    delete (/** @type {any} */ (ctx)).getParameter; // the prototype's again
    gl.known.clear(); // used: from now on the context's state is three's
  }
}
