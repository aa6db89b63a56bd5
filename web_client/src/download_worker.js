// Downloads one file off the page's main thread and hands its bytes over (transferred, not copied).
// Read on the main thread, a response stalls whenever that thread is busy (evaluating the app, creating
// the WebGL context, parsing): the browser stops taking data once its small pipe is full, which made a
// large model's download take twice as long as the network needed.
// In: the absolute URL, URI-encoded as the worker's own fragment (`download_worker.js#<url>`), so the
// download starts as soon as the worker runs: a message posted to a worker that is still starting waits
// for the page's main thread to hand it over, i.e. until the app has been evaluated. Out: {started: true},
// {progress: [received, total]} (total 0 when unknown) at most every PROGRESS_MS, then {buffer} or {error}.
// A scene's `scene.glb` is asked for its tiles first (`tiles/tiles.json`: 204 when the server serves the scene as
// one file): a tiled scene's index comes back as {tiles: <index text>} instead, and the whole GLB is never fetched.

// Each progress report repaints the page, which a software GL composites on the CPU the download needs.
const PROGRESS_MS = 100;

/** @param {string} url */
async function download(url) {
  postMessage({ started: true }); // index.html makes the WebGL context once the download is under way
  try {
    if (url.endsWith('/scene.glb')) {
      const index = await fetch(url.replace(/scene\.glb$/, 'tiles/tiles.json'));
      if (index.status === 200) {
        postMessage({ tiles: await index.text() });
        return;
      }
    }
    const res = await fetch(url);
    if (!res.ok) {
      postMessage({ error: `${res.status} ${res.statusText}` });
      return;
    }
    const total = Number(res.headers.get('content-length')) || 0;
    const buffer = await read(res, total);
    postMessage({ buffer }, { transfer: [buffer] });
  } catch (e) {
    postMessage({ error: String(/** @type {Error} */ (e)?.message ?? e) });
  }
}

download(decodeURIComponent(location.hash.slice(1)));

/**
 * The body, copied chunk by chunk into a buffer of the announced size (grown if that was wrong).
 * @param {Response} res @param {number} total @returns {Promise<ArrayBuffer>}
 */
async function read(res, total) {
  if (!res.body) return res.arrayBuffer();
  const reader = res.body.getReader();
  let out = new Uint8Array(total);
  let received = 0;
  let reported = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    if (received + value.length > out.length) {
      const grown = new Uint8Array(Math.max(out.length * 2, received + value.length));
      grown.set(out.subarray(0, received));
      out = grown;
    }
    out.set(value, received);
    received += value.length;
    if (performance.now() - reported >= PROGRESS_MS) {
      reported = performance.now();
      postMessage({ progress: [received, total] });
    }
  }
  return received === out.length ? out.buffer : out.buffer.slice(0, received);
}
