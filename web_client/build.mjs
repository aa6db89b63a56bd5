// Build dist/: one bundled, minified app.js (three, addons and the meshopt decoder included, nothing
// fetched from a CDN), the download worker, the stylesheet, the AR badge and an index.html without the
// dev import map.
import { build } from 'esbuild';
import { copyFile, mkdir, readFile, rm, writeFile } from 'node:fs/promises';

const here = new URL('.', import.meta.url).pathname;
const dist = `${here}dist/`;

await rm(dist, { recursive: true, force: true });
await mkdir(dist, { recursive: true });
await build({
  entryPoints: [{ in: `${here}src/main.js`, out: 'app' }, { in: `${here}src/download_worker.js`, out: 'download_worker' }],
  bundle: true,
  format: 'esm',
  target: 'es2022',
  minify: true,
  sourcemap: true,
  outdir: dist,
  logLevel: 'warning',
});
for (const f of ['styles.css', 'ar-badge.svg']) await copyFile(`${here}${f}`, `${dist}${f}`);
const html = (await readFile(`${here}index.html`, 'utf8'))
  .replace(/\s*<!-- dev only:[^>]*-->\s*<script type="importmap">[\s\S]*?<\/script>/, '')
  .replace('./src/main.js', './app.js')
  .replace('./src/download_worker.js', './download_worker.js');
if (html.includes('importmap') || html.includes('./src/')) throw new Error('index.html: could not rewrite for dist');
await writeFile(`${dist}index.html`, html);
console.log('web_client: built dist/');
