"""Children that cannot outlive their parent.

``driftline up`` starts the store, the broker, the collector, the dashboard, alerting and the demo
as child processes. If ``up`` is killed with SIGKILL it can run no clean-up, and orphans would keep
ports 9092, 8123 and 9464 (the next ``up`` would fail with "port in use"). On Linux each child asks
the kernel for a signal when its parent dies (``prctl(PR_SET_PDEATHSIG)``), set between fork and
exec so that it covers the whole life of the child.

The kernel sends that signal when the *thread* that forked the child exits, not the process: a
supervisor must start its children from a thread that lives as long as it does (``up`` uses its
main thread). On systems without ``prctl`` the children simply have no lifeline.

A clean stop can take long (the store lets statements in flight finish, the collector commits), so
the signal alone does not bound how long a child outlives ``up``. A child started with
``lifeline_env(grace_s)`` in its environment calls ``keep_lifeline()`` first thing: a watcher
thread notices the parent is gone (its parent pid changes) and ends the process ``grace_s`` later
if the clean stop has not. Every driftline child is built to survive SIGKILL (the collector
commits only what is stored, the store's parts are atomic), so cutting a stop short loses nothing
that was acknowledged.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
import threading
import time
from typing import Callable

PR_SET_PDEATHSIG = 1
LIFELINE_ENV = "DRIFTLINE_LIFELINE"  # "<parent pid> <grace seconds>", read once by the child
LIFELINE_GRACE_S = 3.0  # a child of `up` is gone within this long (plus its poll) after up dies

__all__ = ["LIFELINE_ENV", "LIFELINE_GRACE_S", "die_with_parent", "keep_lifeline", "lifeline_env"]


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


def lifeline_env(grace_s: float) -> dict[str, str]:
    """Environment entries that make a child calling ``keep_lifeline()`` end at most ``grace_s``
    after this process dies."""
    return {LIFELINE_ENV: f"{os.getpid()} {grace_s:g}"}


def keep_lifeline(poll_s: float = 0.1) -> threading.Thread | None:
    """In a child: honour the lifeline its parent gave it (``lifeline_env``), if any. The entry
    is removed from the environment so that this process's own children do not inherit it.
    Returns the watcher thread, or None without a lifeline. A malformed entry is ignored."""
    raw = os.environ.pop(LIFELINE_ENV, None)
    if not raw:
        return None
    try:
        parent_s, grace_text = raw.split()
        parent, grace_s = int(parent_s), float(grace_text)
    except ValueError:
        return None

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_s)
        time.sleep(grace_s)  # the clean stop the parent-death signal started has this long
        try:
            os.write(2, f"driftline: parent process {parent} is gone and the clean stop did not finish within "
                        f"{grace_s:g} s; exiting now\n".encode())
        finally:
            os._exit(1)

    thread = threading.Thread(target=watch, name="driftline-lifeline", daemon=True)
    thread.start()
    return thread
