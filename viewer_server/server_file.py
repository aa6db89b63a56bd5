"""`server.json` in a data dir: which server, if any, is serving it now, and at which address.

A command that changes what a running server holds in memory (`twinview bcf import`) goes through that
server's REST API instead of the SQLite file, so that connected users see the change at once. The file
is written when the server listens and removed when it stops; one left by a server that died names a
process that no longer runs, and is ignored.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Final

SERVER_FILE: Final = "server.json"
# Addresses a server listens on for every interface; a local command reaches it on loopback.
_ANY_ADDRESS: Final = {"", "0.0.0.0", "::"}


def local_url(host: str, port: int) -> str:
    """The address a command on this machine uses for a server listening on `host`:`port`."""
    if host in _ANY_ADDRESS:
        host = "127.0.0.1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


@contextmanager
def announced(data_dir: Path, url: str) -> Iterator[None]:
    """Say in `data_dir` that this process serves it at `url`, for as long as the block runs."""
    path = data_dir / SERVER_FILE
    partial = path.with_name(f".{SERVER_FILE}.{os.getpid()}")
    partial.write_text(json.dumps({"pid": os.getpid(), "url": url}))
    partial.replace(path)  # whole or not at all, for a reader at any moment
    try:
        yield
    finally:
        with suppress(OSError, ValueError):
            if json.loads(path.read_text()).get("pid") == os.getpid():  # not a newer server's
                path.unlink()


def running_server(data_dir: Path) -> str | None:
    """The URL of the server serving `data_dir` now, or None when none is."""
    try:
        record = json.loads((data_dir / SERVER_FILE).read_text())
        pid, url = int(record["pid"]), str(record["url"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None  # left by a server that died
    except PermissionError:
        pass  # alive, another user's
    return url
