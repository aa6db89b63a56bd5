"""Forked children that die with their parent, however the parent dies.

The sandboxed reader runs in a process group of its own (so that a stop can kill it with its kernel
workers), which also means that a signal to the CLI's process group — what CI and systemd send — does not
reach it. So every forked child (the reader, forked by `scene.reader_host`, and each IFC kernel worker
it forks) asks the kernel to SIGKILL it when its parent dies (`PR_SET_PDEATHSIG`): after SIGTERM, SIGKILL
of the parent alone or of its whole group, a crash, anything. The request is made in the child, after the
fork; a parent that died between the fork and the request is caught by comparing the parent pid with the
one expected.

Linux only. `PR_SET_PDEATHSIG` fires when the *thread* that forked the child exits: fork from the thread
that lives as long as the child should (the only thread of `scene.reader_host`, the IFC reader's main thread).
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from typing import Final

PR_SET_PDEATHSIG: Final = 1  # <linux/prctl.h>
# Exit code of a child that finds its parent already gone: it must do nothing more, and nobody reads it.
ORPHAN_EXIT: Final = 1


def die_with_parent(parent: int) -> None:
    """In a freshly forked child of `parent` (its pid, taken before the fork): be SIGKILLed when it dies,
    and exit at once if it is already gone. Does nothing where prctl does not exist (not Linux)."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"prctl(PR_SET_PDEATHSIG): {os.strerror(errno)}")
    if os.getppid() != parent:  # the parent died before the request: nobody would kill us later
        os._exit(ORPHAN_EXIT)
