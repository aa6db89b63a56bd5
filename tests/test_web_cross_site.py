"""A page of another site, open in the same browser as the viewer, cannot use the server (docs/SECURITY.md):
its WebSocket is refused before the upgrade, its `no-cors` text/plain ingest changes nothing, and it cannot
frame the viewer. Chromium sends `Origin` as any browser does; the other site is another port of 127.0.0.1."""

from __future__ import annotations

import contextlib
import json
import threading
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.web_helpers import build_client, chromium_browser, live_twin, open_viewer

pytestmark = [pytest.mark.browser, pytest.mark.slow]

KEY = "el-00000.pressure"
ATTACK = """<!doctype html><title>cheap flights</title>
<iframe id="twin" src="{target}/" onload="this.dataset.loaded = 1"></iframe><script>
window.socket = new Promise((resolve) => {{
  const ws = new WebSocket("{ws}", ["twinview.v1"]);
  ws.onopen = () => resolve("open");
  ws.onclose = (e) => resolve("closed " + e.code);
}});
window.posted = fetch("{target}/api/ingest", {{method: "POST", mode: "no-cors",
  headers: {{"Content-Type": "text/plain"}}, body: JSON.stringify({{readings: [{{key: "{key}", value: 15.5}}]}})}})
  .then(() => "sent", (e) => "failed " + e);
</script>"""


@contextlib.contextmanager
def other_site(page: str) -> Iterator[str]:
    """An HTTP server on another port of 127.0.0.1 (another origin) serving `page` at /."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = page.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


def test_a_page_of_another_site_cannot_use_the_server_through_the_browser(tmp_path) -> None:
    build_client()
    with live_twin(tmp_path, count=6) as live, chromium_browser() as browser:
        viewer = open_viewer(browser, live.url + "/")  # the visitor has the twin open in another tab
        ws = live.url.replace("http://", "ws://") + "/ws"
        with other_site(ATTACK.format(target=live.url, ws=ws, key=KEY)) as site:
            page = browser.new_page()
            page.goto(site + "/")
            assert page.evaluate("window.socket") == "closed 1006"  # 403 before the upgrade
            assert page.evaluate("window.posted") == "sent"  # the browser sent it; the server refused it
            page.wait_for_function("() => document.querySelector('#twin').dataset.loaded === '1'", timeout=30_000)
            framed = [f.url for f in page.frames if f is not page.main_frame]
            assert framed and not any(url.startswith(live.url) for url in framed)  # frame-ancestors 'none'
        with urllib.request.urlopen(f"{live.url}/api/history/el-00000/pressure", timeout=10) as answer:
            assert json.loads(answer.read())["samples"] == []
        assert live.server.live.ingest.accepted == 0  # type: ignore[attr-defined]
        assert viewer.errors == []
