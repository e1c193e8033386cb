"""The sidecar's event worker process: exchanges in on stdin, events out to Kafka, counts back on stdout.

Run as ``python -m driftline.sdk.sidecar.event_process`` by
:class:`~driftline.sdk.sidecar.event_worker.EventWorker`, never by hand. The protocol is frames of a
4-byte big-endian length and a pickle (both ends are this package, over a private pipe):

* parent -> child: one :class:`WorkerConfig`, then lists of
  :class:`~driftline.sdk.sidecar.events.Exchange` s as plain tuples (:func:`exchanges_frame`). End
  of input means "drain and exit".
* child -> parent: :class:`WorkerReport` every ``report_interval_s`` and a final one at exit: how many
  exchanges were turned into events, and the exporter's counts (exported, queued, dropped by reason).

The child ignores SIGINT and SIGTERM: a Ctrl-C or a process manager's SIGTERM reaches the whole
process group, and the child must outlive its parent's drain to flush what it holds. It exits when
its input closes -- the parent closes it after the last exchange, and the kernel closes it if the
parent dies -- after shutting its Kafka client down within ``shutdown_timeout_s``.
"""

from __future__ import annotations

import io
import logging
import os
import pickle
import signal
import struct
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import IO, Any, Callable, Literal, Mapping

from driftline.sdk.config import SdkSettings
from driftline.sdk.export.batch import Exporter, ExporterStats
from driftline.sdk.export.client import Client
from driftline.sdk.monitor import Monitor
from driftline.sdk.sidecar.config import SidecarSettings
from driftline.sdk.sidecar.events import EventBuilder, Exchange
from driftline.sdk.sidecar.extraction import ExtractSpec

logger = logging.getLogger("driftline.sidecar")

_LEN = struct.Struct(">I")
WorkerScheduling = Literal["batch", "yield", "idle"]
MAX_FRAME_BYTES = 1 << 30


@dataclass(frozen=True)
class WorkerConfig:
    """What the worker process needs: the model, extraction, tags, body limits and the SDK's settings.

    ``exporter_factory`` (a module-level callable, pickled by reference) replaces the Kafka transport,
    e.g. :class:`~driftline.sdk.export.InMemoryExporter` in ``bench/bench_sidecar.py``.
    ``scheduling``: how the worker yields the CPU to the proxy (:func:`_batch_scheduling`).
    """

    model: str
    sdk: SdkSettings
    version: str = ""
    extract: ExtractSpec = field(default_factory=ExtractSpec)
    tags: Mapping[str, str] = field(default_factory=dict)
    max_body_bytes: int = 10 * 1024 * 1024
    capture_bytes: int = 1024 * 1024
    shutdown_timeout_s: float = 5.0
    report_interval_s: float = 0.25
    exporter_factory: Callable[[], Exporter] | None = None
    log_level: int = logging.WARNING
    scheduling: WorkerScheduling = "yield"

    @classmethod
    def from_settings(cls, settings: SidecarSettings, sdk: SdkSettings, **overrides: Any) -> WorkerConfig:
        """The worker's part of the sidecar's settings."""
        return cls(model=settings.model, sdk=sdk, version=settings.version, extract=settings.extract,
                   tags=dict(settings.tags), max_body_bytes=settings.max_body_bytes,
                   capture_bytes=settings.capture_bytes, log_level=logging.getLogger().getEffectiveLevel(),
                   **overrides)


@dataclass(frozen=True)
class WorkerReport:
    """The child's counts: ``done`` exchanges turned into events; ``stats`` of its exporter."""

    done: int
    stats: ExporterStats
    final: bool = False


def frame_parts(obj: Any) -> tuple[bytes, bytes]:
    """A frame as its length header and its pickle, to be written one after the other.

    Not joined: joining copies the pickle into a new object; for 1 MiB hand-offs that took the
    proxy's event loop 1.4 ms per MiB instead of 0.43 (``bench/bench_sidecar_handoff.py``)."""
    data = pickle.dumps(obj, protocol=5)
    return _LEN.pack(len(data)), data


def exchanges_frame(batch: list[Exchange]) -> tuple[bytes, bytes]:
    """A hand-off's frame (header, pickle): the exchanges as plain tuples, rebuilt by the child.

    Pickling a NamedTuple calls back into Python for every item (its ``__getnewargs__`` here, its
    ``__new__`` in the child); plain tuples stay in C: for 25 exchanges 5.7x less CPU on the
    proxy's loop and 2.5x less in the child (``bench/sidecar.md``)."""
    return frame_parts([tuple(x) for x in batch])


def encode_frame(obj: Any) -> bytes:
    head, data = frame_parts(obj)
    return head + data


def _read_exactly(stream: IO[bytes], n: int) -> bytes:
    """``n`` bytes, or fewer only at end of input (an unbuffered pipe returns what it holds)."""
    parts: list[bytes] = []
    got = 0
    while got < n and (more := stream.read(n - got)):
        parts.append(more)
        got += len(more)
    return parts[0] if len(parts) == 1 else b"".join(parts)


def read_frame(stream: IO[bytes]) -> Any:
    """The next frame from a blocking stream, or None at end of input."""
    head = _read_exactly(stream, 4)
    if len(head) < 4:
        return None
    (n,) = _LEN.unpack(head)
    if n > MAX_FRAME_BYTES:
        raise ValueError(f"frame of {n} bytes is larger than {MAX_FRAME_BYTES}")
    data = _read_exactly(stream, n)
    if len(data) < n:
        return None
    return pickle.loads(data)


def pending_bytes(stream: IO[bytes]) -> int:
    """Bytes waiting in ``stream``'s pipe (0 where the platform cannot tell): the hand-offs not read yet."""
    try:
        import fcntl
        import termios

        return int(struct.unpack("i", fcntl.ioctl(stream.fileno(), termios.FIONREAD, b"\0\0\0\0"))[0])
    except (ImportError, OSError, ValueError, AttributeError, io.UnsupportedOperation):
        return 0


class _Reporter:
    """Writes reports to the parent; the main loop and the periodic thread share one pipe."""

    def __init__(self, out: IO[bytes], client: Client, interval_s: float) -> None:
        self._out = out
        self._client = client
        self._lock = threading.Lock()
        self.interval_s = interval_s
        self.done = 0
        self._sent_s = time.monotonic()

    def send(self, final: bool = False) -> None:
        frame = encode_frame(WorkerReport(self.done, self._client.stats(), final))
        with self._lock:
            self._sent_s = time.monotonic()
            try:
                self._out.write(frame)
                self._out.flush()
            except (BrokenPipeError, ValueError):  # the parent is gone; the counts go to the log
                pass

    def due(self) -> None:
        """Send a report if one is due: the main loop calls this after each batch, with warm caches
        (a report from the sleeping thread cost ~0.2 ms of CPU at 500 req/s, measured)."""
        if time.monotonic() - self._sent_s >= self.interval_s:
            self.send()

    def every(self, stop: threading.Event) -> None:
        """Reports while no batch comes in (the main loop then sleeps in its read)."""
        while not stop.wait(self.interval_s):
            self.due()


def run(config: WorkerConfig, inp: IO[bytes], out: IO[bytes]) -> int:
    """Turn every exchange read from ``inp`` into events until end of input; then flush and report."""
    exporter = config.exporter_factory() if config.exporter_factory is not None else None
    # Events are encoded on this thread, each batch in one pass; the exporter's thread only exports.
    client = Client(config.sdk, exporter=exporter, encode_on_submit=True)
    builder = EventBuilder(config.model, config.extract, lambda v: Monitor(config.model, v, client=client),
                           tags=config.tags, default_version=config.version, max_body_bytes=config.max_body_bytes,
                           capture_bytes=config.capture_bytes)
    reporter = _Reporter(out, client, config.report_interval_s)
    stop = threading.Event()
    ticker = threading.Thread(target=reporter.every, args=(stop,),
                              name="driftline-worker-report", daemon=True)
    ticker.start()
    sched_yield = getattr(os, "sched_yield", None) if config.scheduling == "yield" else None
    try:
        while (batch := read_frame(inp)) is not None:
            # Give way after each exchange only while keeping up: with a hand-off already waiting
            # (the CPU is contended), a yielding worker would get almost none of it (~2 % of a CPU
            # against one busy task: bench_worker_sched.py), so it works at its niceness's share
            # (~11 %) until caught up.
            give_way = sched_yield if sched_yield is not None and not pending_bytes(inp) else None
            for fields in batch:
                try:
                    builder.handle(Exchange._make(fields))
                except Exception:  # noqa: BLE001 - one bad exchange must not stop the others
                    logger.warning("driftline event worker: could not log an exchange", exc_info=True)
                reporter.done += 1
                if give_way is not None:
                    give_way()
            reporter.due()
    finally:
        stop.set()
        client.shutdown(config.shutdown_timeout_s)
        reporter.send(final=True)
        stats = client.stats()
        if stats.dropped_total:
            logger.warning("driftline event worker: %d events were dropped (%s)", stats.dropped_total,
                           stats.dropped)
    return 0


#: the worker's niceness: when it and the proxy want the same CPU, the proxy gets ~90 % of it
WORKER_NICENESS = 10


def _batch_scheduling(policy: WorkerScheduling = "yield") -> None:
    """Ask Linux to treat this process as background work, so that it never delays the proxy.

    ``batch``: SCHED_BATCH at niceness +10 (:data:`WORKER_NICENESS`). A pipe write wakes the reader
    with a *sync* wake-up, which places it on the writer's CPU, where a normal task would preempt
    the writer -- the proxy's event loop, with requests in flight -- and run its batch first
    (profiled: the hand-off's pipe write showed ~0.5 ms per call on a busy machine). A SCHED_BATCH
    task gets no wake-up preemption; the niceness gives the proxy ~90 % of a CPU they both want.
    But the reverse holds too: a proxy woken on the CPU where the worker runs waits for the worker's
    slice to end (``bench/bench_worker_sched.py``: a normal task's wake-up p99 went from 96 µs to
    1.6 ms beside such a worker working in 2 ms bursts).
    ``yield`` (the default): the same, and the worker calls ``sched_yield`` after each exchange
    while it keeps up (:func:`run`), so the proxy waits for one exchange (~50 µs) at most: wake-up
    p99 106 µs in the same test.
    ``idle``: SCHED_IDLE, which any normal task preempts at once, whatever the processes' niceness
    (``nice +10`` is capped at 19, so it separates nothing when the sidecar already runs at nice 10
    or more); but it gets ~2 % of a CPU that a busy task wants, so under load what the worker
    cannot take in time is counted ``buffer_full``. ``bench/bench_sidecar.py --extra-sidecar
    batch="--worker-sched batch"`` compares them.
    """
    setter = getattr(os, "sched_setscheduler", None)
    if setter is None:
        return
    if policy == "idle":
        try:
            setter(0, os.SCHED_IDLE, os.sched_param(0))
            return
        except OSError as exc:  # fall back to batch below
            logger.info("driftline event worker: SCHED_IDLE refused (%s)", exc)
    try:
        setter(0, os.SCHED_BATCH, os.sched_param(0))
    except OSError as exc:  # not allowed in some sandboxes: correct either way, only less smooth
        logger.info("driftline event worker: SCHED_BATCH refused (%s)", exc)
    try:
        os.nice(WORKER_NICENESS)
    except OSError as exc:
        logger.info("driftline event worker: nice refused (%s)", exc)


def main() -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # Reports travel on the original stdout; anything else printed goes to stderr.
    out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    # Unbuffered: what is read ahead would hide the backlog from pending_bytes.
    inp = os.fdopen(os.dup(sys.stdin.fileno()), "rb", buffering=0)
    config = read_frame(inp)
    logging.basicConfig(level=config.log_level if isinstance(config, WorkerConfig) else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s[event worker]: %(message)s")
    if not isinstance(config, WorkerConfig):
        logger.error("driftline event worker: expected a WorkerConfig first, got %s", type(config).__name__)
        return 2
    _batch_scheduling(config.scheduling)
    return run(config, inp, out)


if __name__ == "__main__":
    # Run the module under its own name, so the classes unpickled are the ones the parent pickled
    # (not copies defined in ``__main__``).
    from driftline.sdk.sidecar.event_process import main as _main

    sys.exit(_main())
