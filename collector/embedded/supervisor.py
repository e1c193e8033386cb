"""The supervisor behind ``driftline up``: every child watched, a crashed one restarted.

Each child is started by a ``launch`` function that returns a handle with ``proc`` (a
``subprocess.Popen``) and ``stop(timeout_s)``. ``tick()`` (called by ``up``'s main thread every
0.25 s) notices a child that exited, logs it, counts it and starts it again after a backoff
that doubles with each crash in a row (0.5 s, 1 s, 2 s, ... 30 s). A child that keeps crashing soon
after it starts (a port taken, a bad configuration) is given up on, like systemd's start limit:
``tick()`` raises ``GiveUp`` and ``up`` stops the stack with an error instead of looping forever.

Children are started from the thread that calls ``add``/``tick`` (``up``'s main thread), which
matters for their lifeline (see ``lifeline``).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

from driftline.sdk.errors import GiveUp

logger = logging.getLogger("driftline.collector")

__all__ = ["Child", "GiveUp", "Handle", "ServiceProcess", "Supervisor", "describe_exit"]


class Handle(Protocol):
    proc: subprocess.Popen[Any]

    def stop(self, timeout_s: float = ...) -> Any: ...


@dataclass
class ServiceProcess:
    """A plain child process: SIGTERM, wait, then SIGKILL."""

    proc: subprocess.Popen[Any]

    def stop(self, timeout_s: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                logger.warning("pid %d did not stop within %.0f s of SIGTERM; killing it", self.proc.pid, timeout_s)
                self.proc.kill()
                self.proc.wait(5)
        return int(self.proc.returncode)


@dataclass
class Child:
    """One supervised process. ``restart``: ``always`` (a service) or ``on_failure`` (a job such as
    the demo, which may finish on its own with exit code 0)."""

    name: str
    launch: Callable[[], Handle]
    stop_timeout_s: float = 30.0
    restart: str = "always"
    log_path: Path | None = None
    on_restart: Callable[[Child], None] | None = None
    handle: Handle | None = None
    started_at: float = 0.0
    restarts: int = 0
    crashes_in_a_row: int = 0
    restart_at: float | None = None
    log_from: int = 0  # the log's size when this run started: what it wrote lies after
    last_exit: str = ""
    finished: bool = field(default=False)
    held: bool = False  # stopped on purpose (see Supervisor.hold): not a crash, not restarted
    planned_start: bool = False


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"code {code}"


def log_size(path: Path | None) -> int:
    try:
        return os.path.getsize(path) if path is not None else 0
    except OSError:
        return 0


def log_ending(path: Path | None, since: int = 0, limit: int = 300) -> str:
    """The last line a crashed child wrote to its log after byte ``since`` (where its run began):
    what a traceback ends with, the error, so the message on up's console says why without opening
    the log; "" when this run wrote nothing."""
    if path is None:
        return ""
    try:
        with open(path, "rb") as f:
            f.seek(max(since, f.seek(0, os.SEEK_END) - 4096))
            tail = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    lines = [line.strip() for line in tail.splitlines() if line.strip()]
    if not lines:
        return ""
    return lines[-1] if len(lines[-1]) <= limit else lines[-1][:limit - 1] + "…"


class Supervisor:
    """Starts children, restarts the ones that crash, stops them in the order asked."""

    def __init__(self, *, print_fn: Callable[[str], None] = print, clock: Callable[[], float] = time.monotonic,
                 backoff_min_s: float = 0.5, backoff_max_s: float = 30.0, stable_after_s: float = 30.0,
                 max_crashes_in_a_row: int = 5) -> None:
        self.print_fn = print_fn
        self.clock = clock
        self.backoff_min_s = backoff_min_s
        self.backoff_max_s = backoff_max_s
        self.stable_after_s = stable_after_s
        self.max_crashes_in_a_row = max_crashes_in_a_row
        self.children: dict[str, Child] = {}
        self.restarts: dict[str, int] = {}
        # tick() runs on up's main thread; hold()/release() come from other threads (the topic
        # rotator). Children are still started only by tick(), on the main thread (lifeline).
        self._lock = threading.RLock()

    # -- start -------------------------------------------------------------------------------
    def add(self, child: Child) -> Child:
        """Start ``child`` now; a failure to start is raised (nothing half-started is kept)."""
        child.log_from = log_size(child.log_path)
        child.handle = child.launch()
        child.started_at = self.clock()
        self.children[child.name] = child
        return child

    def get(self, name: str) -> Child | None:
        return self.children.get(name)

    def running(self, name: str) -> bool:
        child = self.children.get(name)
        return bool(child and child.handle is not None and child.handle.proc.poll() is None)

    # -- watch -------------------------------------------------------------------------------
    def tick(self) -> None:
        """Notice exits and start what is due. Raises ``GiveUp``."""
        with self._lock:
            self._tick()

    def hold(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Stop a child on purpose (``sig``, then wait): no crash is counted, nothing restarts it
        until ``release``. Callable from any thread."""
        with self._lock:
            child = self.children.get(name)
            if child is None:
                return
            child.held = True
            child.restart_at = None
            if child.handle is not None:
                child.handle.proc.send_signal(sig)
                child.handle.proc.wait(30)
                child.handle = None

    def release(self, name: str) -> None:
        """Let ``tick`` start a held child again (on the main thread, within a tick)."""
        with self._lock:
            child = self.children.get(name)
            if child is not None and child.held:
                child.held = False
                child.planned_start = True
                child.restart_at = self.clock()

    def _tick(self) -> None:
        now = self.clock()
        for child in list(self.children.values()):
            if child.finished or child.held:
                continue
            if child.handle is not None:
                code = child.handle.proc.poll()
                if code is None:
                    if now - child.started_at >= self.stable_after_s:
                        child.crashes_in_a_row = 0
                    continue
                self._exited(child, code, now)
            if child.restart_at is not None and now >= child.restart_at:
                self._restart(child)

    def _exited(self, child: Child, code: int, now: float) -> None:
        child.handle = None
        child.last_exit = describe_exit(code)
        if child.restart == "on_failure" and code == 0:
            child.finished = True
            self.print_fn(f"driftline: {child.name} finished")
            return
        if now - child.started_at >= self.stable_after_s:
            child.crashes_in_a_row = 0
        child.crashes_in_a_row += 1
        where = f"; see {child.log_path}" if child.log_path else ""
        said = log_ending(child.log_path, child.log_from) if code != 0 else ""
        if said:
            where += f" (it ends: {said})"
        if child.crashes_in_a_row > self.max_crashes_in_a_row:
            raise GiveUp(f"{child.name} exited with {child.last_exit} {child.crashes_in_a_row} times in a row "
                         f"within {self.stable_after_s:g} s of starting; not restarting it{where}")
        delay = min(self.backoff_max_s, self.backoff_min_s * 2 ** (child.crashes_in_a_row - 1))
        child.restart_at = now + delay
        msg = (f"driftline: {child.name} exited with {child.last_exit}; restarting it in {delay:g} s "
               f"(restart {child.restarts + 1}){where}")
        self.print_fn(msg)
        logger.warning("%s", msg)

    def _restart(self, child: Child) -> None:
        child.restart_at = None
        planned, child.planned_start = child.planned_start, False
        if not planned:
            child.restarts += 1
            self.restarts[child.name] = child.restarts
        child.log_from = log_size(child.log_path)
        try:
            child.handle = child.launch()
        except Exception as exc:  # noqa: BLE001 - a failed start is one more crash, with backoff
            child.handle = None
            child.started_at = self.clock()
            child.last_exit = f"a failed start ({exc})"
            if child.crashes_in_a_row >= self.max_crashes_in_a_row:
                raise GiveUp(f"{child.name} could not be restarted: {exc}") from exc
            child.crashes_in_a_row += 1
            delay = min(self.backoff_max_s, self.backoff_min_s * 2 ** (child.crashes_in_a_row - 1))
            child.restart_at = self.clock() + delay
            self.print_fn(f"driftline: {child.name} did not start ({exc}); trying again in {delay:g} s")
            return
        child.started_at = self.clock()
        if planned:
            logger.info("%s started again (pid %d)", child.name, child.handle.proc.pid)
            return
        self.print_fn(f"driftline: {child.name} restarted (pid {child.handle.proc.pid}, restart {child.restarts})")
        if child.on_restart is not None:
            child.on_restart(child)

    # -- stop --------------------------------------------------------------------------------
    def stop(self, name: str) -> None:
        """Stop one child (no restart afterwards) and forget it."""
        with self._lock:
            child = self.children.pop(name, None)
        if child is None or child.handle is None:
            return
        try:
            child.handle.stop(child.stop_timeout_s)
        except Exception as exc:  # noqa: BLE001 - keep stopping the others
            logger.warning("stopping %s failed: %s", name, exc)

    def stop_all(self, order: list[str]) -> None:
        for name in order + [n for n in list(self.children) if n not in order]:
            self.stop(name)
