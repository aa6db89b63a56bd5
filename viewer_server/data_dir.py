"""The server's data dir: the SQLite store, the secret that signs join links, built scenes, `server.json`.

It never lives in the source tree, where `git add` could pick up the secret: the default is
`$XDG_DATA_HOME/twinview` (`~/.local/share/twinview`), and `--data-dir` moves it. It is created private to
its owner (0700), and so are the files in it.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Final

APP_DIR: Final = "twinview"
PRIVATE_DIR: Final = 0o700
PRIVATE_FILE: Final = 0o600


def default_data_dir() -> Path:
    """`$XDG_DATA_HOME/twinview`, or `~/.local/share/twinview` where XDG_DATA_HOME is unset or not absolute."""
    xdg = os.environ.get("XDG_DATA_HOME", "")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".local" / "share"
    return base / APP_DIR


def prepare(data_dir: Path) -> Path:
    """Create `data_dir` if needed and make it private to its owner; returns it."""
    data_dir.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
    if data_dir.stat().st_mode & 0o077:
        data_dir.chmod(PRIVATE_DIR)
    return data_dir


def create_private(path: Path) -> None:
    """Create `path` empty with mode 0600 unless it exists (SQLite then gives its -wal/-shm files the same mode)."""
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE))
