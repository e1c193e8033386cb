"""The windows of performance estimation and the bounded store of those awaiting their labels.

:class:`Window` is one window of one version and segment (:mod:`~driftline.detectors.estimate_stream`):
a uniform sample of its predictions (reservoir, deterministic: the slot of the i-th row is a
hash of i and the seed), its estimates, and later a sample of its labelled rows.

:class:`GradingWindows` keeps the closed windows that may still get labels, so that each can be
graded (its realised metric over the labelled rows) as they arrive. What it holds is bounded
three ways: at most ``grade_windows`` windows per version and segment (the newest), labelled
rows dropped once no label can join a window any more (``concept.label_horizon_s`` after its
end), and at most ``grade_max_rows`` labelled rows in all of one model's windows together
(:class:`~driftline.detectors.config.PerformanceEstimationSettings`). Past that cap the window
that closed first stops awaiting labels: its realised values are computed over the labels it has
(``settle``; the window is written with them at the next close), its rows are freed, and it is
counted in :attr:`GradingWindows.evicted`
(``driftline_estimation_grading_evicted_total{model}``). A window that stopped awaiting labels
keeps its estimates and realised values (a few numbers per metric) for the estimation error.

>>> g = GradingWindows(per_key=4, max_rows=3)
>>> for end in (10.0, 20.0):
...     w = Window(); w.start, w.end = end - 10.0, end; g.close("v|", w)
>>> for ts in (5.0, 6.0, 15.0, 16.0):
...     g.add_label(g.find("v|", ts), [0.7], "1", cap=100, salt=0, settle=lambda key, w: None)
>>> g.rows, g.evicted, [len(w.lab_rows) for w in g.by_key["v|"]]
(2, 1, [0, 2])
>>> first = g.find("v|", 5.0); first.add_label([0.6], "0", 100, 0), first.labelled  # done: not counted
(0, 2)
"""

from __future__ import annotations

from collections import deque
from typing import Any, Callable, Iterator

__all__ = ["Window", "GradingWindows"]

_MASK = (1 << 64) - 1


def _slot(i: int, salt: int) -> int:
    """A uniform draw in [0, i) from i alone (splitmix64): the reservoir needs no saved RNG."""
    z = (i * 0x9E3779B97F4A7C15 + salt) & _MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    return (z ^ (z >> 31)) % i


class Window:
    """One window of one version and segment: its sample, and later its labelled rows."""

    __slots__ = ("n", "rows", "start", "end", "labelled", "lab_rows", "labels", "est", "real", "dirty", "done")

    def __init__(self) -> None:
        self.n = 0
        self.rows: list[Any] = []  # a row: [scores] or [prediction, features], a binary model's P(positive)
        self.start = self.end = 0.0
        self.labelled = 0
        self.lab_rows: list[Any] = []
        self.labels: list[Any] = []
        self.est: dict[str, list[Any]] = {}  # metric -> [value, lower, upper, threshold, verdict]
        self.real: dict[str, float | None] = {}  # metric -> realised over the labelled rows
        self.dirty = False
        self.done = False  # graded for good: takes no more labels (label horizon passed, or evicted)

    def add(self, row: Any, cap: int, salt: int) -> None:
        self.n += 1
        if len(self.rows) < cap:
            self.rows.append(row)
        elif (j := _slot(self.n, salt)) < cap:
            self.rows[j] = row

    def add_label(self, row: Any, label: Any, cap: int, salt: int) -> int:
        """Count a label and sample its row; returns the labelled rows added (0 or 1)."""
        if self.done:
            return 0
        self.labelled += 1
        self.dirty = True
        if len(self.lab_rows) < cap:
            self.lab_rows.append(row)
            self.labels.append(label)
            return 1
        if (j := _slot(self.labelled, salt)) < cap:
            self.lab_rows[j], self.labels[j] = row, label
        return 0

    def add_many(self, rows: list[Any], cap: int, salt: int) -> None:
        """:meth:`add` of each row in turn: the rows below the cap in one ``extend``."""
        take = min(len(rows), cap - len(self.rows))
        if take > 0:
            self.rows.extend(rows if take == len(rows) else rows[:take])
            self.n += take
        else:
            take = 0
        for row in rows[take:]:
            self.add(row, cap, salt)

    def add_labels(self, rows: list[Any], labels: list[Any], cap: int, salt: int) -> int:
        """:meth:`add_label` of each row and label in turn; returns the labelled rows added."""
        if self.done or not rows:
            return 0
        take = min(len(rows), cap - len(self.lab_rows))
        if take > 0:
            whole = take == len(rows)
            self.lab_rows.extend(rows if whole else rows[:take])
            self.labels.extend(labels if whole else labels[:take])
            self.labelled += take
            self.dirty = True
        else:
            take = 0
        for row, label in zip(rows[take:], labels[take:]):
            self.add_label(row, label, cap, salt)
        return take

    def finish(self) -> int:
        """No more labels for this window: free its labelled rows; returns how many."""
        n = len(self.lab_rows)
        self.lab_rows, self.labels = [], []
        self.done = True
        return n

    def get_state(self) -> list[Any]:
        return [self.n, self.rows, self.start, self.end, self.labelled, self.lab_rows, self.labels,
                self.est, self.real, self.dirty, self.done]

    @classmethod
    def of(cls, s: list[Any]) -> "Window":
        w = cls()
        (w.n, w.rows, w.start, w.end, w.labelled, w.lab_rows, w.labels, w.est, w.real, w.dirty) = s[:10]
        w.done = bool(s[10]) if len(s) > 10 else False  # states saved before the cap had no flag
        return w


#: computes a window's realised values from its labelled rows before they are freed: (key, window)
Settle = Callable[[str, Window], None]


class GradingWindows:
    """Closed windows per ``"version|segment"`` key, bounded (see the module notes)."""

    def __init__(self, per_key: int, max_rows: int) -> None:
        self.per_key, self.max_rows = per_key, max_rows
        self.by_key: dict[str, deque[Window]] = {}
        self.rows = 0  # labelled rows held by the windows still awaiting labels
        self.evicted = 0  # windows that stopped awaiting labels to keep max_rows (cumulative)

    def items(self) -> Iterator[tuple[str, deque[Window]]]:
        return iter(self.by_key.items())

    def close(self, key: str, w: Window, settle: Settle | None = None) -> None:
        """Keep a window that has just closed (with the labels it got while open)."""
        done = self.by_key.get(key)
        if done is None:
            done = self.by_key[key] = deque(maxlen=self.per_key)
        if len(done) == self.per_key:
            self.rows -= len(done[0].lab_rows)  # the oldest goes out of the deque
        done.append(w)
        self.rows += len(w.lab_rows)
        if settle is not None:
            self._shrink(settle)

    def find(self, key: str, pred_ts: float) -> Window | None:
        """The closed window of ``key`` that holds ``pred_ts``; None: none kept holds it."""
        done = self.by_key.get(key)
        if done:
            for w in reversed(done):
                if w.start <= pred_ts <= w.end:
                    return w
        return None

    def label(self, key: str, pred_ts: float, row: Any, label: Any, cap: int, salt: int, settle: Settle) -> bool:
        """A label of ``key`` made at ``pred_ts``, to the closed window that holds it (none kept
        does: not graded); False when no closed window is that recent (the open window's).
        :meth:`newest_end`, :meth:`find` and :meth:`add_label` in one call (it runs per label)."""
        done = self.by_key.get(key)
        if not done or pred_ts > done[-1].end:
            return False
        for w in reversed(done):
            if w.start <= pred_ts <= w.end:
                rows = w.lab_rows
                if w.done or len(rows) >= cap:
                    self.rows += w.add_label(row, label, cap, salt)
                else:  # Window.add_label below the cap, inlined (it runs per label)
                    w.labelled += 1
                    w.dirty = True
                    rows.append(row)
                    w.labels.append(label)
                    self.rows += 1
                if self.rows > self.max_rows:
                    self._shrink(settle)
                break
        return True

    def newest_end(self, key: str) -> float | None:
        done = self.by_key.get(key)
        return done[-1].end if done else None

    def add_label(self, w: Window, row: Any, label: Any, *, cap: int, salt: int, settle: Settle) -> None:
        """A label for closed window ``w``; over ``max_rows``, the oldest windows stop awaiting."""
        self.rows += w.add_label(row, label, cap, salt)
        if self.rows > self.max_rows:
            self._shrink(settle)

    def finish(self, w: Window) -> None:
        """``w`` gets no more labels (its label horizon has passed)."""
        self.rows -= w.finish()

    def _shrink(self, settle: Settle) -> None:
        while self.rows > self.max_rows:
            oldest: tuple[float, str, Window] | None = None
            for key, done in self.by_key.items():
                for w in done:  # oldest first: the first one still holding rows
                    if w.lab_rows:
                        if oldest is None or w.end < oldest[0]:
                            oldest = (w.end, key, w)
                        break
            if oldest is None:
                return
            _, key, w = oldest
            if w.dirty:
                settle(key, w)
            self.rows -= w.finish()
            self.evicted += 1

    def drop(self, prefix: str) -> None:
        """Forget the windows of every key starting with ``prefix`` (a retired version's)."""
        for key in [k for k in self.by_key if k.startswith(prefix)]:
            self.rows -= sum(len(w.lab_rows) for w in self.by_key.pop(key))

    def get_state(self) -> dict[str, Any]:
        """The windows by key (:attr:`evicted` is the caller's to save beside them)."""
        return {k: [w.get_state() for w in d] for k, d in self.by_key.items()}

    def set_state(self, windows: dict[str, Any], evicted: int = 0) -> None:
        # Over a cap lowered since the save, the oldest stop awaiting at the next label or close
        # (settled then, with the estimators of that moment).
        self.by_key = {k: deque((Window.of(s) for s in v), maxlen=self.per_key) for k, v in windows.items()}
        self.evicted = int(evicted)
        self.rows = sum(len(w.lab_rows) for d in self.by_key.values() for w in d)
