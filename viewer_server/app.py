"""The aiohttp application: REST, WebSocket, scene files and the web client, on one port."""

from __future__ import annotations

import functools
import time
from pathlib import Path
from typing import Final

from aiohttp import web
from aiohttp.typedefs import Handler

from viewer_server.api import MAX_INGEST_BODY_BYTES, add_routes, fail
from viewer_server.bus import BusUnavailable
from viewer_server.http_edge import EdgePolicy
from viewer_server.http_edge import install as install_edge
from viewer_server.live import LIVE, STARTED, LiveScene
from viewer_server.protocol import CLOSE_GOING_AWAY, ERR_NOT_SAVED
from viewer_server.session import close_sessions, forward_presenter

REPO: Final = Path(__file__).resolve().parents[1]


def web_client_dir(repo: Path = REPO) -> Path | None:
    """web_client/dist when built, else web_client/ (served as is); None when neither has index.html."""
    for candidate in (repo / "web_client" / "dist", repo / "web_client"):
        if (candidate / "index.html").is_file():
            return candidate
    return None


@web.middleware
async def _bus_unavailable(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A write the shared bus could not take (several processes, Redis unreachable): 503, nothing changed."""
    try:
        return await handler(request)
    except BusUnavailable as exc:
        return fail(503, ERR_NOT_SAVED, str(exc))


def make_app(live: LiveScene, client_dir: Path | None = None, edge: EdgePolicy | None = None) -> web.Application:
    """The application; `edge` says which hosts and origins it answers (default: local names and addresses)."""
    app = web.Application(client_max_size=MAX_INGEST_BODY_BYTES, middlewares=[_bus_unavailable])
    app[LIVE] = live
    app[STARTED] = time.monotonic()
    if live.presenters is not None:
        live.presenters.on_publish.append(functools.partial(forward_presenter, live))
    add_routes(app)
    root = client_dir or web_client_dir()
    install_edge(app, edge or EdgePolicy.for_server(), root / "index.html" if root is not None else None)
    if root is not None:
        index = root / "index.html"

        async def index_page(request: web.Request) -> web.FileResponse:
            return web.FileResponse(index)

        app.router.add_get("/", index_page)
        # Registered last: everything not matched above is a file of the web client.
        app.router.add_static("/", root, follow_symlinks=False)
    app.on_shutdown.append(_close_sessions)
    return app


async def _close_sessions(app: web.Application) -> None:
    """Tell clients to come back (1001) instead of letting their sockets die; all at once, and
    without waiting long for clients that do not answer (a stalled one would hold shutdown)."""
    await close_sessions(app[LIVE].sessions, CLOSE_GOING_AWAY, "server shutting down")
