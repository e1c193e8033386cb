"""An opt-in memory probe for the collector: is it the Python heap that grows, or the allocator?

Off by default. With ``memory_probe_dir`` set (``DRIFTLINE_MEMORY_PROBE_DIR``), the collector
appends one JSON line to ``<dir>/probe.jsonl`` every ``memory_probe_interval_s`` and at stop:
resident memory (VmRSS), glibc's ``mallinfo2`` (bytes malloc has handed out vs holds free in its
arenas: fragmentation shows as RSS rising while ``in_use`` stays flat), the gc-tracked objects by
type, and, with ``memory_probe_tracemalloc_frames`` > 0, the bytes tracemalloc traces plus a
snapshot file per sample (compare two with ``bench/soak_memory_diff.py``).

tracemalloc itself costs memory (a trace per live block) and CPU, so an RSS curve taken with it
on is not the production curve; the gc counts and ``mallinfo2`` cost nothing between samples.
The sampling thread holds the GIL for a moment per sample (``gc.get_objects`` walks every
container), which is why this is a diagnostic switch, not a metric.

>>> import tempfile, pathlib
>>> probe = MemoryProbe(pathlib.Path(tempfile.mkdtemp()), interval_s=60)
>>> sorted(probe.sample())[:3]
['gc_objects', 'gc_top', 'malloc']
"""

from __future__ import annotations

import ctypes
import gc
import json
import logging
import threading
import time
import tracemalloc
from collections import Counter
from pathlib import Path
from typing import Any, Callable

logger = logging.getLogger("driftline.collector")

GC_TOP_TYPES = 40  # object types per sample, most numerous first


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]


def malloc_stats() -> dict[str, int]:
    """glibc's view of the heap in bytes (empty off glibc): ``arena`` (sbrk'd and arena heaps),
    ``mmapped`` (large blocks, and pymalloc's 1 MiB arenas), ``in_use``, ``free`` (held, not in use)."""
    try:
        fn = ctypes.CDLL(None).mallinfo2
    except (OSError, AttributeError):
        return {}
    fn.restype = _MallInfo2
    m = fn()
    return {"arena": m.arena, "mmapped": m.hblkhd, "in_use": m.uordblks, "free": m.fordblks}


#: free heap below which :func:`release_free_heap` does not trim (a trim walks every free chunk)
TRIM_MIN_FREE_BYTES = 64 * 1024 * 1024


def release_free_heap(min_free: int = TRIM_MIN_FREE_BYTES) -> int:
    """Give the memory glibc holds free back to the system (``malloc_trim(0)``) when it holds at
    least ``min_free`` bytes; returns the resident bytes that went (0 off glibc, or nothing to do).

    A burst leaves the collector's heap at its peak: the decoded batches are freed, but malloc
    keeps their pages (1.5 GiB after 400,000 events sent at once, ``bench/fleet.md``); the
    collector calls this when it falls idle after storing.
    """
    try:
        libc = ctypes.CDLL(None)
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return 0
    if malloc_stats().get("free", 0) < min_free:
        return 0
    before = rss_bytes()
    trim.argtypes = [ctypes.c_size_t]
    trim(0)
    return max(0, before - rss_bytes())


def rss_bytes() -> int:
    """This process's resident memory (VmRSS), 0 where /proc is missing."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class MemoryProbe:
    """Samples memory every ``interval_s`` on a daemon thread, into ``out_dir``.

    ``tracemalloc_frames``: frames kept per traced allocation (0: tracemalloc off). ``clock`` is
    the elapsed-time source written with each sample (injected by tests).
    """

    def __init__(self, out_dir: Path, *, interval_s: float, tracemalloc_frames: int = 0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not interval_s > 0:
            raise ValueError(f"interval_s must be > 0, not {interval_s}")
        self.out_dir = Path(out_dir)
        self.interval_s = interval_s
        self.tracemalloc_frames = tracemalloc_frames
        self._clock = clock
        self._t0 = clock()
        self._n = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        if self.tracemalloc_frames and not tracemalloc.is_tracing():
            tracemalloc.start(self.tracemalloc_frames)
        self._thread = threading.Thread(target=self._run, name="driftline-memprobe", daemon=True)
        self._thread.start()
        logger.info("memory probe on: %s every %.0f s (tracemalloc frames %d)", self.out_dir,
                    self.interval_s, self.tracemalloc_frames)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample_logged()

    def _sample_logged(self) -> None:
        try:
            self.sample()
        except Exception:  # noqa: BLE001 - a diagnostic must never take the collector down
            logger.exception("memory probe sample failed")

    def sample(self) -> dict[str, Any]:
        """Take one sample now: append it to ``probe.jsonl`` (and dump a tracemalloc snapshot)."""
        self._n += 1
        counts = Counter(type(o).__qualname__ for o in gc.get_objects())
        row: dict[str, Any] = {
            "n": self._n, "t_s": round(self._clock() - self._t0, 1), "rss": rss_bytes(),
            "malloc": malloc_stats(), "gc_objects": sum(counts.values()),
            "gc_top": dict(counts.most_common(GC_TOP_TYPES)),
        }
        if tracemalloc.is_tracing():
            current, peak = tracemalloc.get_traced_memory()
            row["traced"] = {"current": current, "peak": peak}
            path = self.out_dir / f"snapshot-{self._n:03d}.tracemalloc"
            tracemalloc.take_snapshot().dump(str(path))
            row["snapshot"] = path.name
        with open(self.out_dir / "probe.jsonl", "a") as out:
            out.write(json.dumps(row, sort_keys=True) + "\n")
        return row

    def stop(self) -> None:
        """Stop sampling and take a last sample."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)
            self._thread = None
            self._sample_logged()
