"""Performance estimation's per-event work, buffered and applied in batches (issue 18).

:class:`~driftline.detectors.estimate_stream.EstimationStreams` keeps each primary prediction and
each joined label of a version whose estimator it already holds in a buffer, and :func:`apply`
puts them in their windows at the next window close, state save, change of a reference, or
every ``EstimationStreams.batch`` events: a binary model's scores are checked as arrays
(:meth:`~driftline.detectors.estimate_fit.Fitted.score_many`), rows go to a window's sample in
one ``extend``, and labels find their window by comparing arrays of prediction times. Per event
this leaves a tuple appended to a list: in the engine's leanest configuration (concept drift
only) the estimation's per-event Python cost more than a third of the engine's own.

The windows come out as they would one event at a time, field for field and in the same order:

* a prediction touches only an open window's sample (``n``, ``rows``), a label only labelled
  rows (an open or closed window's ``labelled``, ``lab_rows``, ``labels``) and the grading
  store's row count, so a batch's predictions go first and its labels after, each in their order;
* what that could change is the order in which windows are opened (a label may open one before a
  later prediction of the batch would have): each event's position restores it;
* labels that could take the grading store past ``grade_max_rows`` (closed windows then stop
  awaiting labels, in the middle of the batch) go one at a time, as before;
* a prediction that cannot be estimated (not class probabilities) is told
  (:meth:`~driftline.detectors.estimate_stream.EstimationStreams.note`) in the order of the
  first such event of each version.

Whatever is not buffered (a version whose estimator is not known yet, or has just changed)
applies the buffer before it runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from driftline.detectors.estimate_windows import Window

if TYPE_CHECKING:  # pragma: no cover
    from driftline.detectors.estimate_stream import EstimationStreams

__all__ = ["apply"]



def apply(streams: EstimationStreams, preds: list[Any], labels: list[Any]) -> None:
    """Put the buffered predictions and labels (in arrival order each) in their windows.

    ``preds``: 3 items a prediction (version, segments, the logged prediction); ``labels``: 7 a
    label (the length of ``preds`` before it, version, segments, prediction, its time, label,
    the model's references). Flat lists: no tuple per event for the garbage collector."""
    # The position each window was opened at, of those opened here: prediction i at (2i + 1, 0),
    # a label after i predictions (its j-th) at (2i, j).
    opened: dict[str, tuple[int, int]] = {}
    if preds:
        _predictions(streams, preds, opened)
    if labels:
        _labels(streams, labels, opened)
    if len(opened) > 1:
        keys = list(streams.open)
        new = keys[len(keys) - len(opened):]
        order = sorted(new, key=opened.__getitem__)  # stable: one event's segments in their order
        if order != new:
            old = streams.open
            streams.open = {k: old[k] for k in keys[:len(keys) - len(opened)] + order}


def _by_key(versions: list[str], segs: list[list[str]], keep: list[int] | None,
            one: bool) -> dict[str, list[int] | None]:
    """The events (of ``keep``, None: all, in order) of each ``"version|segment"``, keys in order
    of first use; None: all of them. ``one``: every event is of ``versions[0]``."""
    if keep is None and segs.count(segs[0]) == len(segs) and len(set(segs[0])) == len(segs[0]):
        if one or versions.count(versions[0]) == len(versions):
            v = versions[0]
            return {v + "|" + seg: None for seg in segs[0]}  # one version, the same segments
    out: dict[str, list[int] | None] = {}
    for i in range(len(versions)) if keep is None else keep:
        v = versions[i]
        for seg in segs[i]:
            out.setdefault(v + "|" + seg, []).append(i)  # type: ignore[union-attr]
    return out


def _by_version(versions: list[str], one: bool) -> dict[str, list[int] | None]:
    """Each version's events (None: all of them), versions in order of first use."""
    if one or versions.count(versions[0]) == len(versions):
        return {versions[0]: None}
    out: dict[str, list[int] | None] = {}
    for i, v in enumerate(versions):
        out.setdefault(v, []).append(i)  # type: ignore[union-attr]
    return out


def _scored(streams: EstimationStreams, versions: list[str], logged: list[Any],
            one: bool) -> tuple[list[Any], list[int] | None, list[tuple[int, str]]]:
    """Each logged prediction's row (None: not scores), the events with one (None: all) and the
    first event of each version without one."""
    rows: list[Any] = [None] * len(logged)
    bad: list[tuple[int, str]] = []
    for version, idx in _by_version(versions, one).items():
        est = streams._hot[version][1]  # CBPE: only its events are buffered
        got, complete = est.score_many(logged if idx is None else [logged[i] for i in idx])
        if idx is None:
            rows = got
        else:
            for i, r in zip(idx, got):
                rows[i] = r
        if not complete:
            bad.append((got.index(None) if idx is None else idx[got.index(None)], version))
    keep = None if not bad else [i for i, r in enumerate(rows) if r is not None]
    return rows, keep, sorted(bad)


def _predictions(streams: EstimationStreams, preds: list[Any], opened: dict[str, tuple[int, int]]) -> None:
    s = streams.settings
    cap, salt = s.sample, s.seed
    versions, segs, logged = preds[0::3], preds[1::3], preds[2::3]
    one = len(streams._hot) == 1  # what is buffered is of versions in _hot
    rows, keep, bad = _scored(streams, versions, logged, one)
    for _, version in bad:  # told at the first such event of each version, in their order
        streams.note(version, "the logged predictions are not class probabilities")
    windows = streams.open
    for key, idx in _by_key(versions, segs, keep, one).items():
        w = windows.get(key)
        if w is None:
            w = windows[key] = Window()
            opened[key] = (1 if idx is None else 2 * idx[0] + 1, 0)
        w.add_many(rows if idx is None else [rows[i] for i in idx], cap, salt)


def _labels(streams: EstimationStreams, labels: list[Any], opened: dict[str, tuple[int, int]]) -> None:
    s = streams.settings
    cap, salt = s.sample, s.seed
    versions, segs, preds, times, ys, refs = (labels[i::7] for i in range(1, 7))
    n = len(versions)
    one = len(streams._hot) == 1
    rows, keep, _ = _scored(streams, versions, preds, one)
    classes: list[Any] = [None] * n
    for version, idx in _by_version(versions, one).items():
        y = streams._hot[version][1].labels_many(ys if idx is None else [ys[i] for i in idx])
        if idx is None:
            classes = y
        else:
            for i, c in zip(idx, y):
                classes[i] = c
    if keep is not None or None in classes:
        keep = [i for i in (range(n) if keep is None else keep) if classes[i] is not None and rows[i] is not None]

    def rank(i: int) -> tuple[int, int]:  # where label i came among the events (see apply)
        return 2 * (labels[7 * i] // 3), i

    grading, windows = streams.grading, streams.open
    if grading.rows + (n if keep is None else len(keep)) * max(map(len, segs)) > grading.max_rows:
        # Closed windows may stop awaiting labels on the way: one label at a time, as they came.
        for i in range(n) if keep is None else keep:
            streams._refs = refs[i]
            version, row, y, t = versions[i], rows[i], classes[i], times[i]
            for seg in segs[i]:
                key = version + "|" + seg
                if not grading.label(key, t, row, y, cap, salt, streams._settle):
                    w = windows.get(key)
                    if w is None:
                        w = windows[key] = Window()
                        opened[key] = rank(i)
                    elif key in opened and rank(i) < opened[key]:
                        opened[key] = rank(i)  # a label opened it, before the prediction
                    w.add_label(row, y, cap, salt)
        return
    ts = np.fromiter(times, float, n)
    for key, idx in _by_key(versions, segs, keep, one).items():
        at = np.arange(n) if idx is None else np.array(idx)
        done = grading.by_key.get(key)
        if done:
            later = ts[at] > done[-1].end  # GradingWindows.label: newer than every closed window
            rest = at[~later]
            for w in reversed(done):
                if not len(rest):
                    break
                t = ts[rest]
                hit = (w.start <= t) & (t <= w.end)
                if hit.any():
                    mine = rest[hit].tolist()
                    rest = rest[~hit]
                    grading.rows += w.add_labels([rows[i] for i in mine], [classes[i] for i in mine], cap, salt)
            mine = at[later].tolist()  # the rest, in no window kept: not graded
        elif idx is None:
            mine = list(range(n))
        else:
            mine = idx
        if not mine:
            continue
        w = windows.get(key)
        if w is None:
            w = windows[key] = Window()
            opened[key] = rank(mine[0])
        elif key in opened and rank(mine[0]) < opened[key]:
            opened[key] = rank(mine[0])  # a label opened it, before the prediction
        if idx is None and len(mine) == n:
            w.add_labels(rows, classes, cap, salt)
        else:
            w.add_labels([rows[i] for i in mine], [classes[i] for i in mine], cap, salt)
