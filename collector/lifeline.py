"""Children that cannot outlive their parent.

``driftline up`` starts the store, the broker, the collector, the dashboard, alerting and the demo
as child processes. If ``up`` is killed with SIGKILL it can run no clean-up, and orphans would keep
ports 9092, 8123 and 9464 (the next ``up`` would fail with "port in use"). On Linux each child asks
the kernel for a signal when its parent dies (``prctl(PR_SET_PDEATHSIG)``), set between fork and
exec so that it covers the whole life of the child.

The kernel sends that signal when the *thread* that forked the child exits, not the process: a
supervisor must start its children from a thread that lives as long as it does (``up`` uses its
main thread). On systems without ``prctl`` the children simply have no lifeline.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
from typing import Callable

PR_SET_PDEATHSIG = 1

__all__ = ["die_with_parent"]


def die_with_parent(sig: int = signal.SIGTERM) -> Callable[[], None] | None:
    """A ``preexec_fn`` for ``subprocess.Popen`` that makes the child receive ``sig`` when this
    process dies; ``None`` where the platform has no such mechanism.

    >>> import subprocess, sys
    >>> subprocess.run([sys.executable, "-c", "pass"], preexec_fn=die_with_parent()).returncode
    0
    """
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    parent = os.getpid()

    def preexec() -> None:  # runs in the child between fork and exec: no locks, no allocation-heavy work
        libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return preexec
