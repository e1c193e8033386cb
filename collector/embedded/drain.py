"""What the embedded broker still holds: the stop's drain into the collector, and the backlog
sampled while the stack runs.

The embedded broker (Tansu, memory storage) loses what it holds when it stops or crashes. So
``up``'s stop first lets the collector store and commit every record (:func:`drain_broker`),
saying how much is left when that takes long and what was dropped when the stop is forced; and
:class:`BacklogWatch` samples the uncommitted backlog every few seconds, so that a crash of the
broker can be reported with what it may have held.
"""

from __future__ import annotations

import logging
import threading
import time
import urllib.request
from typing import TYPE_CHECKING

from driftline.collector.metrics import HELD_GAUGE, UNWRITTEN_GAUGE
from driftline.collector.topics import BrokerBacklog
from driftline.collector.embedded.supervisor import GiveUp

if TYPE_CHECKING:
    from driftline.collector.embedded.stack import Stack

logger = logging.getLogger("driftline.collector")

__all__ = ["BacklogWatch", "drain_broker"]


def drain_broker(stack: Stack) -> None:
    """Keep supervising (a crashed collector or store is restarted) until the collector has
    committed every record the broker holds, or the stop is forced; what is left then is dropped
    and counted in ``stack.dropped``. ``stack.stop_requests`` is read on every round: a signal
    handler raises it while this waits."""
    o, p = stack.options, stack.options.print_fn
    force_at_requests = stack.stop_requests + 1
    deadline = time.monotonic() + o.drain_timeout_s
    reported_at = time.monotonic()
    backlog: BrokerBacklog | None = None
    left: int | None = None
    try:
        while True:
            try:
                stack.supervisor.tick()
            except GiveUp as exc:
                p(f"driftline: {exc}")
            try:
                backlog = backlog or BrokerBacklog(stack.kafka_bootstrap, stack.settings.group_id, stack.topics)
                left = backlog.total()
            except Exception as exc:  # noqa: BLE001 - cannot count: assume records are left
                logger.warning("could not read the collector's progress: %s: %s", type(exc).__name__, exc)
                if backlog is not None:
                    backlog.close()
                backlog, left = None, None
            if left == 0:
                return
            collector = stack.supervisor.get("collector")
            now = time.monotonic()
            if (collector is None or collector.handle is None and collector.restart_at is None  # given up on
                    or o.force and now >= deadline or stack.stop_requests >= force_at_requests):
                break
            if now >= deadline and now - reported_at >= 10:
                reported_at = now
                held, unwritten_s = detector_hold(stack)
                if held:
                    p(f"driftline: {_left(backlog, left)} not acknowledged yet: the collector's detectors hold "
                      f"{held} stored events because their models' saved state cannot be read (see its log); "
                      "they are acknowledged once observed, or at the latest "
                      f"{stack.settings.detector_held_ack_after_s:g} s after the hold began (Ctrl-C or SIGTERM "
                      "again to stop now: the detectors then miss them and anything not yet stored is dropped)")
                elif unwritten_s:
                    p(f"driftline: {_left(backlog, left)} not acknowledged yet: the store has refused the collector's "
                      f"detector output (drift rows, state) for {unwritten_s:.0f} s (see its log); the events are "
                      "stored, and acknowledged once that output is written, or at the latest "
                      f"{stack.settings.detector_held_ack_after_s:g} s after the first refusal (Ctrl-C or SIGTERM "
                      "again to stop now: the detectors' unwritten drift rows and state are then lost)")
                else:
                    p(f"driftline: {_left(backlog, left)} still only in the embedded broker; waiting for the "
                      "collector to store them (Ctrl-C or SIGTERM again to stop anyway and drop them)")
            time.sleep(0.25)
        what = _left(backlog, left)
        stack.dropped += max(1, left or 0)
        held, unwritten_s = detector_hold(stack)
        if held:
            p(f"driftline: stopping with {what} not acknowledged by the collector; they are dropped from the "
              f"embedded broker: {held} events of them are stored but held by the detectors, so drift and "
              "performance windows miss them, and any not stored yet are lost")
        elif unwritten_s:
            p(f"driftline: stopping with {what} not acknowledged by the collector; they are dropped from the "
              "embedded broker: the store refused the detectors' output, so their drift rows and state of "
              f"the last {unwritten_s:.0f} s are lost, and any events not stored yet")
        else:
            p(f"driftline: stopping with {what} still only in the embedded broker; they are dropped")
    finally:
        if backlog is not None:
            backlog.close()


def detector_hold(stack: Stack) -> tuple[int, float]:
    """What the collector's detectors hold back, from its ``/metrics``: stored events they hold
    unacknowledged (``driftline_detector_events_held``) and for how many seconds the store has
    refused their output (``driftline_detector_output_unwritten_seconds``); zeros when none or
    when it cannot be read."""
    port = stack.settings.metrics_port
    if not port:
        return 0, 0.0
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            text = r.read().decode("utf-8", "replace")
    except (OSError, ValueError):
        return 0, 0.0
    values = {HELD_GAUGE: 0.0, UNWRITTEN_GAUGE: 0.0}
    for line in text.splitlines():
        name, _, rest = line.partition(" ")
        if name in values:
            try:
                values[name] = float(rest.split()[0])
            except (IndexError, ValueError):
                pass
    return int(values[HELD_GAUGE]), values[UNWRITTEN_GAUGE]


def _left(backlog: BrokerBacklog | None, records: int | None) -> str:
    """"N events (M records)": an SDK record carries many events."""
    if backlog is None or records is None:
        return "an unknown number of records"
    try:
        return f"{backlog.events_behind()} events ({records} records)"
    except Exception:  # noqa: BLE001 - a report; the record count is known
        return f"{records} records"


class BacklogWatch:
    """Samples, every few seconds, how many records the collector has not committed yet, so that a
    crash of the in-memory broker can be reported with what it may have held."""

    def __init__(self, stack: Stack, interval_s: float = 5.0) -> None:
        self.stack = stack
        self.interval_s = interval_s
        self.last_total: int | None = None
        self._stop = threading.Event()
        self._reset = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="driftline-backlog", daemon=True)
        self._thread.start()

    def reset(self) -> None:
        self.last_total = None
        self._reset.set()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def _run(self) -> None:
        s = self.stack
        backlog: BrokerBacklog | None = None
        while not self._stop.wait(self.interval_s):
            try:
                if backlog is None or self._reset.is_set():
                    self._reset.clear()
                    if backlog is not None:
                        backlog.close()
                    backlog = BrokerBacklog(s.kafka_bootstrap, s.settings.group_id, s.topics)
                self.last_total = backlog.total()
            except Exception:  # noqa: BLE001 - the broker may be restarting; sample again later
                if backlog is not None:
                    backlog.close()
                backlog = None
        if backlog is not None:
            backlog.close()
