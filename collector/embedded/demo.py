"""The demo: a real scikit-learn model, wrapped with the SDK, serving live traffic that drifts.

* Model: gradient boosting on scikit-learn's bundled breast-cancer data set (no download),
  version ``v1``; a shadow model (logistic regression, ``v2-candidate``) scores the same requests.
* Traffic: rows drawn from the held-out split with a little noise, tagged by ``region``; 20% of
  requests go to an A/B arm (``challenger``) that logs a ``click`` outcome.
* Drift that hurts: from ``drift_after_s`` for ``drift_for_s`` seconds, in region ``eu`` only, the
  benign cases' three most important features (permutation importance on the held-out split:
  ``worst perimeter``, ``worst concave points``, ``worst radius``) move most of the way toward the
  malignant cases' means. The model then calls many benign cases malignant while their labels stay
  benign: realised accuracy in ``eu`` falls from ~0.96 to ~0.70; ``us`` and ``apac`` stay healthy.
  Then the drift stops and the incident resolves. With the guide (a store to read), the drift waits
  for the first drift verdicts and lasts until the incident has opened (at most 3 x ``drift_for_s``),
  so the story holds on a slow machine too.
* Labels: ground truth for 60% of predictions arrives ``label_delay_s`` (20 s) later.
* Detectors: the demo's own configuration (``demo_detectors.yaml``): 250-event windows, a
  first-events reference of 2,500 (``reference_size_needed(250)``), segments by region. At the
  default 50 requests/s the reference is complete after ~50 s, well before the drift at 90 s.

The guide (``demo_guide``) follows the run through the store and says what to open and look for.
"""

from __future__ import annotations

import heapq
import random
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MODEL = "breast-cancer"
REGIONS = ("eu", "us", "apac")
DRIFT_REGION = "eu"
#: the model's most important features (permutation importance, held-out split)
DRIFTED = ("worst perimeter", "worst concave points", "worst radius")
#: how far benign rows move toward the malignant means (1.0: all the way)
DRIFT_STRENGTH = 0.8
CLASSES = ("malignant", "benign")
#: seconds between the demo's batches of requests
BATCH_S = 0.1
#: seconds the model stays healthy after the first verdicts before the drift may start
HEALTHY_FIRST_S = 15.0
#: the demo model's detector settings (``driftline up --demo`` passes them to the collector)
DETECTORS_CONFIG = Path(__file__).with_name("demo_detectors.yaml")


@dataclass(frozen=True)
class DemoOptions:
    """The demo's schedule. ``drift_for_s`` 0: the drift never stops; ``duration_s`` 0: run
    until stopped. ``clickhouse_url`` / ``dashboard_url`` feed the guide (empty: no guide)."""

    rate_per_s: float = 50.0
    drift_after_s: float = 90.0
    drift_for_s: float = 180.0
    duration_s: float = 0.0
    # Labels come 20 s after the prediction: long enough that the estimated accuracy (from the
    # model's own scores, at each window's close) is seen falling before the labels confirm it.
    label_delay_s: float = 20.0
    label_share: float = 0.6
    seed: int = 7
    clickhouse_url: str = ""
    dashboard_url: str = ""


@dataclass(frozen=True)
class DemoModel:
    primary: Any
    shadow: Any
    x_test: Any
    y_test: Any
    names: list[str]
    shift: Any  # per-feature offset added to drifted benign rows

    def drift(self, row: Any, label: int) -> Any:
        """``row`` as the drift shows it: benign rows move toward malignant values."""
        return row + self.shift if CLASSES[label] == "benign" else row


def train() -> DemoModel:
    import numpy as np
    from sklearn.datasets import load_breast_cancer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    data = load_breast_cancer()
    names = [str(n) for n in data.feature_names]
    x_train, x_test, y_train, y_test = train_test_split(data.data, data.target, test_size=0.4, random_state=0)
    # One thread: on 340 rows OpenMP's threads only contend (2 s instead of 26 s on a busy machine).
    with threadpool_limits(1):
        primary = HistGradientBoostingClassifier(max_iter=60, random_state=0).fit(x_train, y_train)
        shadow = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(x_train, y_train)
    gap = x_train[y_train == 0].mean(axis=0) - x_train[y_train == 1].mean(axis=0)
    shift = np.zeros(len(names))
    for name in DRIFTED:
        j = names.index(name)
        shift[j] = DRIFT_STRENGTH * gap[j]
    return DemoModel(primary, shadow, x_test, y_test, names, shift)


def _serve_batch(m: DemoModel, mon: Any, n: int, drifting: bool, rng: random.Random, nprng: Any,
                 options: DemoOptions, pending_labels: list[tuple[float, str, str]], now: float) -> int:
    """Score ``n`` requests, log them (primary or challenger, the shadow's twin, a click outcome)
    and schedule the labels of ``label_share`` of them."""
    idx = [rng.randrange(len(m.x_test)) for _ in range(n)]
    rows = m.x_test[idx] * nprng.normal(1.0, 0.03, size=(n, m.x_test.shape[1]))
    regions = [rng.choice(REGIONS) for _ in range(n)]
    if drifting:
        for k, (i, region) in enumerate(zip(idx, regions)):
            if region == DRIFT_REGION:
                rows[k] = m.drift(rows[k], int(m.y_test[i]))
    t0 = time.perf_counter()
    proba = m.primary.predict_proba(rows)
    per_row_ms = (time.perf_counter() - t0) * 1000 / n
    shadow_proba = m.shadow.predict_proba(rows)
    for k in range(n):
        features = {name: round(float(v), 5) for name, v in zip(m.names, rows[k])}
        features["referrer"] = rng.choice(("search", "ads", "direct", "partner"))
        tags = {"region": regions[k]}
        arm = "challenger" if rng.random() < 0.2 else "primary"
        latency_ms = per_row_ms + rng.uniform(2, 8)
        pid = mon.log(features, {c: round(float(p), 6) for c, p in zip(CLASSES, proba[k])},
                      latency_ms=latency_ms, variant=arm, tags=tags)
        if arm == "primary":
            mon.log(features, {c: round(float(p), 6) for c, p in zip(CLASSES, shadow_proba[k])},
                    latency_ms=latency_ms * 0.7, variant="shadow", request_id=pid, tags=tags)
        click_p = 0.12 if arm == "challenger" else 0.08
        mon.log_outcome("click", rng.random() < click_p, prediction_id=pid, tags=tags)
        if rng.random() < options.label_share:
            heapq.heappush(pending_labels, (now + options.label_delay_s, pid, CLASSES[int(m.y_test[idx[k]])]))
    return n


def _drift_ends(options: DemoOptions, drifted_s: float, guide: Any) -> bool:
    """After ``drift_for_s`` (0: never); with the guide, not before the incident has opened, so the
    story reaches its alert on a slow machine too, but at the latest after three times as long."""
    if not options.drift_for_s or drifted_s < options.drift_for_s:
        return False
    return guide is None or bool(guide.incident) or drifted_s >= 3 * options.drift_for_s


def run_demo(options: DemoOptions, *, stop: threading.Event | None = None, monitor: Any = None,
             print_fn: Any = print) -> int:
    import numpy as np

    from driftline.collector.embedded.demo_guide import Guide
    from driftline.sdk import Monitor

    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)  # batches of a few rows: OpenMP threads would only spin and contend
    m = train()
    mon = monitor or Monitor(model=MODEL, version="v1")
    rng = random.Random(options.seed)
    nprng = np.random.default_rng(options.seed)
    pending_labels: list[tuple[float, str, str]] = []
    guide = Guide(options, print_fn=print_fn) if options.clickhouse_url else None
    started = time.monotonic()
    next_report = started + 10
    sent = labels = 0
    drifting = waiting = False
    ready_at: float | None = None  # when the guide first saw verdicts and estimates
    drift_started: float | None = None
    print_fn(f"demo: serving {MODEL} v1 (shadow v2-candidate, A/B arm 'challenger') at {options.rate_per_s:g} req/s; "
             f"drift in region {DRIFT_REGION} from {options.drift_after_s:g}s"
             + (f" for {options.drift_for_s:g}s" if options.drift_for_s else ""))
    if guide is not None:
        guide.start()
    # Requests are scored in small batches: one predict_proba call per model per tick costs about
    # what one row does (sklearn's per-call validation and thread pool dominate a single row).
    while not stop.is_set():
        now = time.monotonic()
        elapsed = now - started
        if options.duration_s and elapsed >= options.duration_s:
            break
        if guide is not None and ready_at is None and guide.ready():
            ready_at = elapsed
        if not drifting and drift_started is None and elapsed >= options.drift_after_s:
            # The story needs verdicts before the drift: with the guide, the drift waits until the
            # reference is complete and the first verdicts are stored (on a busy machine, later),
            # and the model stays healthy for HEALTHY_FIRST_S after them, so a visitor (and the
            # whole-story test) sees it healthy on the Overview before it drifts.
            if guide is None or (ready_at is not None and elapsed - ready_at >= HEALTHY_FIRST_S):
                drift_started, drifting = elapsed, True
                print_fn(f"demo: injecting drift now: in region {DRIFT_REGION}, benign cases' {', '.join(DRIFTED)} "
                         "move toward malignant values; the model will call them malignant and realised accuracy "
                         f"in {DRIFT_REGION} will fall (the other regions stay healthy)")
                if guide is not None:
                    guide.drift_changed(True)
            elif not waiting:
                waiting = True
                print_fn("demo: waiting for the first drift verdicts and performance estimates (and "
                         f"{HEALTHY_FIRST_S:g} s of a healthy model after them) before injecting drift")
        elif drifting and _drift_ends(options, elapsed - drift_started, guide):  # type: ignore[operator]
            drifting = False
            print_fn(f"demo: drift stopped: region {DRIFT_REGION} is back to normal traffic; the incident "
                     "resolves once healthy windows follow")
            if guide is not None:
                guide.drift_changed(False)
        due = min(int(elapsed * options.rate_per_s) - sent, max(1, int(options.rate_per_s)))
        if due > 0:
            sent += _serve_batch(m, mon, due, drifting, rng, nprng, options, pending_labels, now)
        while pending_labels and pending_labels[0][0] <= now:
            _, lpid, label = heapq.heappop(pending_labels)
            mon.log_label(lpid, label)
            labels += 1
        if now >= next_report:
            stats = mon.stats()
            print_fn(f"demo: {sent} predictions, {labels} labels sent; drift {'ON' if drifting else 'off'}; "
                     f"queue {stats.queued}, dropped {stats.dropped_total}")
            next_report = now + 10
        stop.wait(BATCH_S)
    mon.flush(10)
    if monitor is None:
        mon.close(10)
    if guide is not None:
        guide.stop()
        if drift_started is not None:
            guide.summary()
    print_fn(f"demo: stopped after {sent} predictions and {labels} labels")
    return 0
