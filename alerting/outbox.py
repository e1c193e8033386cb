"""The persisted outbox and incident state, in one SQLite file (WAL, synchronous=FULL).

Deciding that an incident opened, recording it, queuing its notifications and starting a
retraining cooldown happen in ONE SQLite transaction, so a crash leaves either all of it or
none of it. Every queued message has an idempotency key as its primary key (``INSERT OR
IGNORE``): deciding the same thing twice queues nothing twice. A message leaves the outbox only
when its channel acknowledged it, so a restart resends what was in flight (at-least-once on the
wire); receivers that deduplicate on the key (PagerDuty's ``dedup_key``, the webhook
``Idempotency-Key``) therefore see each message exactly once.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    key        TEXT NOT NULL UNIQUE,
    channel    TEXT NOT NULL,
    kind       TEXT NOT NULL,
    body       TEXT NOT NULL,
    status     TEXT NOT NULL DEFAULT 'pending',
    attempts   INTEGER NOT NULL DEFAULT 0,
    next_at    REAL NOT NULL,
    created_at REAL NOT NULL,
    done_at    REAL,
    last_error TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (status, next_at);
CREATE TABLE IF NOT EXISTS incidents (
    series           TEXT PRIMARY KEY,
    dedup_key        TEXT NOT NULL,
    rule             TEXT NOT NULL,
    model            TEXT NOT NULL,
    model_version    TEXT NOT NULL,
    segment          TEXT NOT NULL,
    since            TEXT NOT NULL,
    opened_at        REAL NOT NULL,
    last_notified_at REAL NOT NULL,
    repeats          INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS cooldowns (
    channel TEXT NOT NULL,
    model   TEXT NOT NULL,
    last_at REAL NOT NULL,
    PRIMARY KEY (channel, model)
);
"""


@dataclass(frozen=True)
class Entry:
    """One queued message."""

    key: str
    channel: str
    kind: str
    body: dict[str, Any]
    attempts: int
    created_at: float


@dataclass(frozen=True)
class Incident:
    """An open incident as recorded locally."""

    series: str
    dedup_key: str
    rule: str
    model: str
    model_version: str
    segment: str
    since: str
    opened_at: float
    last_notified_at: float
    repeats: int


class Outbox:
    """SQLite-backed outbox and incident state in ``path`` (created if missing)."""

    def __init__(self, path: str | Path) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE in transaction()).
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._lock = threading.RLock()
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # a committed decision survives power loss
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Group writes: all of them are committed, or none."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def enqueue(self, key: str, channel: str, kind: str, body: dict[str, Any], now: float) -> bool:
        """Queue a message; False when ``key`` was queued before (nothing changes)."""
        with self._lock:
            cur = self._db.execute(
                "INSERT OR IGNORE INTO outbox (key, channel, kind, body, next_at, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (key, channel, kind, json.dumps(body, sort_keys=True), now, now))
            return cur.rowcount == 1

    def due(self, now: float) -> list[Entry]:
        """The oldest pending message of each channel, if its time has come.

        Strictly first-in first-out per channel: a PagerDuty resolve never overtakes the
        trigger it closes while that trigger waits for a retry.
        """
        with self._lock:
            rows = self._db.execute(
                "SELECT key, channel, kind, body, attempts, created_at FROM outbox AS o "
                "WHERE seq IN (SELECT min(seq) FROM outbox WHERE status = 'pending' "
                "GROUP BY channel) AND next_at <= ? ORDER BY seq", (now,)).fetchall()
        return [Entry(k, c, kd, json.loads(b), a, t) for k, c, kd, b, a, t in rows]

    def next_due_at(self) -> float | None:
        """When the earliest pending message becomes due, or None."""
        with self._lock:
            row = self._db.execute(
                "SELECT min(next_at) FROM outbox WHERE seq IN (SELECT min(seq) FROM outbox "
                "WHERE status = 'pending' GROUP BY channel)").fetchone()
        return row[0]

    def pending(self) -> int:
        """How many messages wait to be delivered."""
        with self._lock:
            return int(self._db.execute(
                "SELECT count() FROM outbox WHERE status = 'pending'").fetchone()[0])

    def mark_sent(self, key: str, now: float) -> None:
        """The channel acknowledged ``key``."""
        self._finish(key, "sent", now, "")

    def mark_failed(self, key: str, now: float, error: str) -> None:
        """Give up on ``key`` (permanent error, or retries exhausted); it stays for inspection."""
        self._finish(key, "failed", now, error)

    def _finish(self, key: str, status: str, now: float, error: str) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE outbox SET status = ?, done_at = ?, attempts = attempts + 1, "
                "last_error = ? WHERE key = ?", (status, now, error[:500], key))

    def retry_at(self, key: str, when: float, error: str) -> None:
        """Try ``key`` again at ``when``."""
        with self._lock:
            self._db.execute(
                "UPDATE outbox SET attempts = attempts + 1, next_at = ?, last_error = ? "
                "WHERE key = ?", (when, error[:500], key))

    def messages(self, status: str | None = None) -> list[tuple[str, str, str, int, str]]:
        """(key, channel, status, attempts, last_error) of every message, oldest first."""
        q = "SELECT key, channel, status, attempts, last_error FROM outbox"
        with self._lock:
            if status:
                return self._db.execute(q + " WHERE status = ? ORDER BY seq", (status,)).fetchall()
            return self._db.execute(q + " ORDER BY seq").fetchall()

    # -- incidents -------------------------------------------------------------------------
    def open_incidents(self) -> dict[str, Incident]:
        """Open incidents by series key."""
        with self._lock:
            rows = self._db.execute(
                "SELECT series, dedup_key, rule, model, model_version, segment, since, "
                "opened_at, last_notified_at, repeats FROM incidents").fetchall()
        return {r[0]: Incident(*r) for r in rows}

    def open_incident(self, inc: Incident) -> None:
        """Record a newly opened incident."""
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO incidents VALUES (?,?,?,?,?,?,?,?,?,?)", (
                inc.series, inc.dedup_key, inc.rule, inc.model, inc.model_version, inc.segment,
                inc.since, inc.opened_at, inc.last_notified_at, inc.repeats))

    def touch_incident(self, series: str, now: float) -> None:
        """Note a repeat notification."""
        with self._lock:
            self._db.execute("UPDATE incidents SET last_notified_at = ?, repeats = repeats + 1 "
                             "WHERE series = ?", (now, series))

    def close_incident(self, series: str) -> None:
        """Forget a resolved incident (its history lives in ``driftline.alerts``)."""
        with self._lock:
            self._db.execute("DELETE FROM incidents WHERE series = ?", (series,))

    # -- retraining cooldowns --------------------------------------------------------------
    def cooldown_started(self, channel: str, model: str) -> float | None:
        """When the last retraining request for ``model`` went to ``channel``."""
        with self._lock:
            row = self._db.execute("SELECT last_at FROM cooldowns WHERE channel = ? AND model = ?",
                                   (channel, model)).fetchone()
        return None if row is None else float(row[0])

    def start_cooldown(self, channel: str, model: str, now: float) -> None:
        """Record a retraining request for ``model`` now."""
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO cooldowns VALUES (?, ?, ?)",
                             (channel, model, now))


__all__ = ["Entry", "Incident", "Outbox"]
