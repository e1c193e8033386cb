"""The demo: a real scikit-learn model, wrapped with the SDK, serving live traffic that drifts.

* Model: gradient boosting on scikit-learn's bundled breast-cancer data set (no download),
  version ``v1``; a shadow model (logistic regression, ``v2-candidate``) scores the same requests.
* Traffic: rows drawn from the held-out split with a little noise, tagged by ``region``; 20% of
  requests go to an A/B arm (``challenger``) that logs a ``click`` outcome.
* Drift: after ``drift_after_s`` the inputs shift (``mean radius`` and ``mean texture`` scaled up,
  ``worst area`` noisier) for the ``eu`` region first, then everywhere; accuracy drops.
* Labels: ground truth for 60% of predictions arrives ``label_delay_s`` later.
"""

from __future__ import annotations

import heapq
import random
import signal
import threading
import time
from dataclasses import dataclass
from typing import Any

MODEL = "breast-cancer"
SHIFTED = {"mean radius": 1.35, "mean texture": 1.4, "mean perimeter": 1.3}
NOISY = "worst area"
REGIONS = ("eu", "us", "apac")


@dataclass(frozen=True)
class DemoOptions:
    rate_per_s: float = 50.0
    drift_after_s: float = 60.0
    duration_s: float = 0.0
    label_delay_s: float = 5.0
    label_share: float = 0.6
    seed: int = 7


def train() -> tuple[Any, Any, Any, Any, list[str]]:
    from sklearn.datasets import load_breast_cancer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    data = load_breast_cancer()
    names = [str(n) for n in data.feature_names]
    x_train, x_test, y_train, y_test = train_test_split(data.data, data.target, test_size=0.4, random_state=0)
    primary = HistGradientBoostingClassifier(max_iter=60, random_state=0).fit(x_train, y_train)
    shadow = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(x_train, y_train)
    return primary, shadow, x_test, y_test, names


def run_demo(options: DemoOptions, *, stop: threading.Event | None = None, monitor: Any = None,
             print_fn: Any = print) -> int:
    import numpy as np

    from driftline.sdk import Monitor

    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
    primary, shadow, x_test, y_test, names = train()
    classes = ["malignant", "benign"]
    mon = monitor or Monitor(model=MODEL, version="v1")
    rng = random.Random(options.seed)
    nprng = np.random.default_rng(options.seed)
    pending_labels: list[tuple[float, str, str]] = []
    started = time.monotonic()
    next_report = started + 10
    interval = 1.0 / options.rate_per_s
    sent = labels = 0
    drifting = False
    print_fn(f"demo: serving {MODEL} v1 (shadow v2-candidate, A/B arm 'challenger') at {options.rate_per_s:g} req/s; "
             f"drift starts after {options.drift_after_s:g}s")
    tick = started
    while not stop.is_set():
        now = time.monotonic()
        elapsed = now - started
        if options.duration_s and elapsed >= options.duration_s:
            break
        if not drifting and elapsed >= options.drift_after_s:
            drifting = True
            print_fn(f"demo: injecting drift now: {', '.join(SHIFTED)} scaled up, '{NOISY}' noisier "
                     "(region eu first); accuracy will fall")
        i = rng.randrange(len(x_test))
        row = x_test[i] * nprng.normal(1.0, 0.03, size=x_test.shape[1])
        region = rng.choice(REGIONS)
        if drifting and (region == "eu" or elapsed >= options.drift_after_s * 1.5):
            for j, name in enumerate(names):
                if name in SHIFTED:
                    row[j] *= SHIFTED[name]
                elif name == NOISY:
                    row[j] *= nprng.normal(1.0, 0.5)
        features = {name: round(float(v), 5) for name, v in zip(names, row)}
        features["referrer"] = rng.choice(("search", "ads", "direct", "partner"))
        tags = {"region": region}
        arm = "challenger" if rng.random() < 0.2 else "primary"
        t0 = time.perf_counter()
        proba = primary.predict_proba(row.reshape(1, -1))[0]
        latency_ms = (time.perf_counter() - t0) * 1000 + rng.uniform(2, 8)
        scores = {classes[k]: round(float(p), 6) for k, p in enumerate(proba)}
        pid = mon.log(features, scores, latency_ms=latency_ms, variant=arm, tags=tags)
        if arm == "primary":
            sp = shadow.predict_proba(row.reshape(1, -1))[0]
            mon.log(features, {classes[k]: round(float(p), 6) for k, p in enumerate(sp)},
                    latency_ms=latency_ms * 0.7, variant="shadow", request_id=pid, tags=tags)
        click_p = 0.12 if arm == "challenger" else 0.08
        mon.log_outcome("click", rng.random() < click_p, prediction_id=pid, tags=tags)
        if rng.random() < options.label_share:
            heapq.heappush(pending_labels, (now + options.label_delay_s, pid, classes[int(y_test[i])]))
        sent += 1
        while pending_labels and pending_labels[0][0] <= now:
            _, lpid, label = heapq.heappop(pending_labels)
            mon.log_label(lpid, label)
            labels += 1
        if now >= next_report:
            stats = mon.stats()
            print_fn(f"demo: {sent} predictions, {labels} labels sent; drift {'ON' if drifting else 'off'}; "
                     f"queue {stats.queued}, dropped {stats.dropped_total}")
            next_report = now + 10
        tick += interval
        stop.wait(max(0.0, tick - time.monotonic()))
    mon.flush(10)
    if monitor is None:
        mon.close(10)
    print_fn(f"demo: stopped after {sent} predictions and {labels} labels")
    return 0
