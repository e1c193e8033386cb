"""The embedded store's own accounting during a soak (used by bench_soak.py).

Per sample: the store process's threads and anonymous vs file-backed memory
(/proc/PID/status, /proc/PID/smaps_rollup), ClickHouse's ``MemoryTracking``, active and outdated
parts, merges running, the ``system`` tables that hold rows (chDB starts with no query_log,
part_log, metric_log or trace_log, so this should stay empty: checked, not assumed), and disk:
bytes of active and outdated parts per table plus ``du`` of the data dir's top-level folders and of
every log file `up` writes.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def du_bytes(path: Path) -> int:
    """Bytes allocated under ``path`` (files only; like ``du -s --apparent-size``)."""
    if path.is_file():
        return path.stat().st_size
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                continue  # a part removed while we walk
    return total


def proc_memory(pid: int) -> dict[str, float]:
    """Threads, and anonymous / file-backed resident MiB of ``pid`` (empty when it is gone)."""
    out: dict[str, float] = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("Threads:"):
                out["threads"] = float(line.split()[1])
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("Anonymous", "Rss"):
                out[key.lower() + "_mib"] = int(rest.split()[0]) / 1024
    except OSError:
        return {}
    if "rss_mib" in out and "anonymous_mib" in out:
        out["file_mib"] = out["rss_mib"] - out["anonymous_mib"]
    return out


def store_accounting(client: Any) -> dict[str, float]:
    """ClickHouse's view of itself: tracked memory, parts, merges, rows kept in system tables."""
    q = lambda sql: client.query(sql).result_rows  # noqa: E731
    out: dict[str, float] = {}
    out["tracked_mib"] = q("SELECT value FROM system.metrics WHERE metric = 'MemoryTracking'")[0][0] / 2**20
    active, outdated = q("SELECT countIf(active), countIf(NOT active) FROM system.parts")[0]
    out["parts_active"], out["parts_outdated"] = float(active), float(outdated)
    out["merges"] = float(q("SELECT count() FROM system.merges")[0][0])
    logs = q("SELECT name, total_rows FROM system.tables WHERE database = 'system' AND total_rows > 0 "
             "AND engine NOT LIKE 'System%'")
    out["system_log_rows"] = float(sum(r[1] or 0 for r in logs))
    return out


def disk_by_table(client: Any) -> dict[str, tuple[int, int]]:
    """(active bytes, outdated bytes) on disk per ``database.table`` with parts."""
    rows = client.query("SELECT database || '.' || table, sumIf(bytes_on_disk, active), "
                        "sumIf(bytes_on_disk, NOT active) FROM system.parts GROUP BY 1 ORDER BY 2 DESC").result_rows
    return {r[0]: (int(r[1]), int(r[2])) for r in rows}


def disk_by_dir(data_dir: Path) -> dict[str, int]:
    """du of the store's top-level folders and of each log file under a stack's data dir."""
    out: dict[str, int] = {}
    store = data_dir / "clickhouse"
    if store.is_dir():
        for child in sorted(store.iterdir()):
            out[f"clickhouse/{child.name}"] = du_bytes(child)
    logs = data_dir / "logs"
    if logs.is_dir():
        for child in sorted(logs.iterdir()):
            out[f"logs/{child.name}"] = du_bytes(child)
    return out


def line(pid: int | None, client: Any, data_dir: Path) -> tuple[str, dict[str, float]]:
    """One printable line and its figures for a sample."""
    row: dict[str, float] = {}
    if pid is not None:
        row.update(proc_memory(pid))
    try:
        row.update(store_accounting(client))
    except Exception as exc:  # noqa: BLE001 - a bench line, the store may be restarting
        return f"store: accounting unavailable ({type(exc).__name__})", row
    dirs = disk_by_dir(data_dir)
    row["disk_store_mib"] = sum(v for k, v in dirs.items() if k.startswith("clickhouse/")) / 2**20
    row["disk_logs_mib"] = sum(v for k, v in dirs.items() if k.startswith("logs/")) / 2**20
    text = (f"store: anon {row.get('anonymous_mib', float('nan')):6.1f} file {row.get('file_mib', float('nan')):6.1f} MiB"
            f" threads {row.get('threads', float('nan')):4.0f} | tracked {row['tracked_mib']:6.1f} MiB"
            f" | parts {row['parts_active']:4.0f} active {row['parts_outdated']:5.0f} outdated, merges {row['merges']:.0f}"
            f" | system log rows {row['system_log_rows']:.0f} | disk: store {row['disk_store_mib']:7.1f} MiB"
            f" logs {row['disk_logs_mib']:6.2f} MiB")
    return text, row


def report_disk(client: Any, data_dir: Path) -> str:
    """Disk per table and per folder / log file, for the end of a soak."""
    lines = ["disk per table (active / outdated parts, MiB):"]
    for table, (active, outdated) in disk_by_table(client).items():
        lines.append(f"  {table:44s} {active / 2**20:9.2f} / {outdated / 2**20:7.2f}")
    lines.append("du per folder and log file (MiB):")
    for name, size in disk_by_dir(data_dir).items():
        lines.append(f"  {name:44s} {size / 2**20:9.2f}")
    return "\n".join(lines)
