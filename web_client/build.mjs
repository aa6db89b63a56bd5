// Build dist/: the app bundled and minified (three, its addons and the meshopt decoder included, nothing
// fetched from a CDN) as app.js plus the chunks it imports on demand (GLTFLoader, the meshopt decoder, the
// WebXR module: see docs/CLIENT.md, "Time to first frame"), the download worker, the stylesheets, the AR
// badge and an index.html without the dev import map, with what it runs before the app inlined.
import { build } from 'esbuild';
import { copyFile, mkdir, readFile, rm, writeFile } from 'node:fs/promises';

const here = new URL('.', import.meta.url).pathname;
const dist = `${here}dist/`;

await rm(dist, { recursive: true, force: true });
await mkdir(dist, { recursive: true });
const common = { bundle: true, target: 'es2022', minify: true, define: { TWINVIEW_BUNDLE: 'true' }, logLevel: 'warning' };
const app = await build({
  ...common,
  entryPoints: [{ in: `${here}src/main.js`, out: 'app' }],
  format: 'esm',
  splitting: true,
  // Next to app.js: loader.js finds the worker relative to its own module (import.meta.url).
  chunkNames: '[name]-[hash]',
  sourcemap: true,
  metafile: true,
  outdir: dist,
});
// What app.js imports statically (three, shared with the lazy chunks, is a chunk of its own): preloaded
// by index.html, or the browser would ask for it only once it has parsed app.js.
const appOut = Object.entries(app.metafile.outputs).find(([, o]) => o.entryPoint?.endsWith('src/main.js'));
const preload = appOut[1].imports.filter((i) => i.kind === 'import-statement')
  .map((i) => `<link rel="modulepreload" href="./${i.path.split('/').pop()}">`).join('\n  ');
await build({ ...common, entryPoints: [`${here}src/download_worker.js`], format: 'esm', sourcemap: true, outdir: dist });
for (const f of ['styles.css', 'ar-badge.svg']) await copyFile(`${here}${f}`, `${dist}${f}`);
// The time machine's stylesheet, with uPlot's that it imports inlined.
await build({ ...common, entryPoints: [`${here}timeline.css`], outdir: dist });
// What index.html runs before the app, inlined: the download worker's code (as a blob: URL, which starts
// without a request of its own) and boot_gl.js (the WebGL context) as a classic script, which runs at once.
const inline = async (entry, format) => {
  const out = await build({ ...common, entryPoints: [`${here}src/${entry}`], format, write: false });
  const code = out.outputFiles[0].text.trim();
  if (/<\/script|<!--/i.test(code)) throw new Error(`${entry}: cannot be inlined into index.html`);
  return code;
};
const worker = JSON.stringify(await inline('download_worker.js', 'esm'));
const bootGl = await inline('boot_gl.js', 'iife');
const html = (await readFile(`${here}index.html`, 'utf8'))
  .replace(/\s*<!-- dev only:[^>]*-->\s*<script type="importmap">[\s\S]*?<\/script>/, '')
  .replace('./src/main.js', './app.js')
  .replace('</head>', () => `  ${preload}\n</head>`)
  .replace("const workerUrl = './src/download_worker.js';",
    () => `const workerUrl = URL.createObjectURL(new Blob([${worker}], { type: 'text/javascript' }));`)
  .replace('<script type="module" src="./src/boot_gl.js"></script>', () => `<script>${bootGl}</script>`);
if (html.includes('importmap') || html.includes('./src/')) throw new Error('index.html: could not rewrite for dist');
await writeFile(`${dist}index.html`, html);
console.log('web_client: built dist/');
