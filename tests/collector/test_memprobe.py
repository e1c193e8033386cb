"""collector/memprobe.py: the opt-in memory probe writes what it promises; settings turn it on."""

from __future__ import annotations

import gc
import json
import platform
import tracemalloc
from pathlib import Path

import pytest

from driftline.collector.config import CollectorSettings
from driftline.collector.memprobe import MemoryProbe, malloc_stats, release_free_heap, rss_bytes


def test_samples_are_json_lines_with_rss_malloc_and_gc_counts(tmp_path: Path) -> None:
    now = [100.0]
    probe = MemoryProbe(tmp_path, interval_s=60, clock=lambda: now[0])
    keep = [[i] for i in range(5000)]  # noqa: F841 - 5,000 more lists between the samples
    # Garbage left by earlier tests would be freed by an automatic collection between the two
    # samples and cancel some of the 5,000 (CI saw 4,847): collect it first, none in between.
    gc.collect()
    gc.disable()
    try:
        probe.sample()
        more = [[i] for i in range(5000)]  # noqa: F841
        now[0] = 160.0
        probe.sample()
    finally:
        gc.enable()
    rows = [json.loads(line) for line in (tmp_path / "probe.jsonl").read_text().splitlines()]
    assert [r["t_s"] for r in rows] == [0.0, 60.0]
    assert rows[0]["rss"] > 0 and rows[0]["malloc"]["in_use"] > 0  # Linux, glibc
    assert rows[1]["gc_top"]["list"] - rows[0]["gc_top"]["list"] >= 5000
    assert "traced" not in rows[0] and not list(tmp_path.glob("*.tracemalloc"))


def test_tracemalloc_frames_add_snapshots_that_load(tmp_path: Path) -> None:
    if tracemalloc.is_tracing():
        pytest.fail("tracemalloc already on: this test turns it on and off itself")
    probe = MemoryProbe(tmp_path, interval_s=3600, tracemalloc_frames=2)
    probe.start()
    try:
        keep = [bytearray(1000) for _ in range(1000)]  # noqa: F841 - ~1 MB traced
        probe.stop()  # the last sample
    finally:
        tracemalloc.stop()
    (row,) = [json.loads(line) for line in (tmp_path / "probe.jsonl").read_text().splitlines()]
    assert row["traced"]["current"] >= 1_000_000
    snapshot = tracemalloc.Snapshot.load(str(tmp_path / row["snapshot"]))
    assert sum(s.size for s in snapshot.statistics("filename")) >= 1_000_000


def test_settings_turn_the_probe_on_and_check_it(tmp_path: Path) -> None:
    from driftline.sdk.errors import ConfigError

    off = CollectorSettings.build(env={})
    assert (off.memory_probe_dir, off.memory_probe_tracemalloc_frames) == (None, 0)
    on = CollectorSettings.build(env={"DRIFTLINE_MEMORY_PROBE_DIR": str(tmp_path),
                                      "DRIFTLINE_MEMORY_PROBE_INTERVAL_S": "30",
                                      "DRIFTLINE_MEMORY_PROBE_TRACEMALLOC_FRAMES": "8"})
    assert (on.memory_probe_dir, on.memory_probe_interval_s, on.memory_probe_tracemalloc_frames) == (tmp_path, 30.0, 8)
    assert CollectorSettings.from_json(on.to_json()) == on  # what `up` hands its collector
    with pytest.raises(ConfigError, match="DRIFTLINE_MEMORY_PROBE_INTERVAL_S"):
        CollectorSettings.build(env={"DRIFTLINE_MEMORY_PROBE_INTERVAL_S": "0"})


def test_the_free_heap_goes_back_to_the_system() -> None:
    """What a burst allocated and freed stays resident until released: 320 MB of freed blocks (too
    large for Python's own allocator, so malloc's), each between two that live on (so that malloc
    cannot shrink its heap from the top by itself), leave resident memory when released."""
    if platform.libc_ver()[0] != "glibc":  # on glibc, a malloc_stats() that finds nothing fails below
        pytest.skip("not glibc: no mallinfo2 / malloc_trim here")
    release_free_heap(0)  # what earlier tests left
    blocks, kept = [], []
    for i in range(10_000):  # 32 KiB blocks: pages malloc can give back (below its 128 KiB mmap threshold)
        blocks.append(bytes(32_000) + i.to_bytes(4, "little"))
        kept.append(bytes(600) + i.to_bytes(4, "little"))
    held = rss_bytes()
    del blocks
    assert malloc_stats()["free"] > 250e6  # freed, still held by malloc ...
    assert rss_bytes() > held - 50e6  # ... and resident
    assert release_free_heap(10**12) == 0  # under the threshold: nothing done
    freed = release_free_heap()
    assert freed > 250e6 and rss_bytes() < held - 250e6
    assert len(kept) == 10_000
