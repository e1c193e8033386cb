"""Alerting benchmark: rule evaluation over drift_metrics, and outbox delivery throughput.

Run: ``python bench/alerting_bench.py`` (starts its own embedded ClickHouse store, collector/embedded/chstore.py, and a
local fake Slack; nothing leaves 127.0.0.1). Baselines are measured in the same run:
* evaluation vs. a bare fetch of the same rows (the cost of grouping + hysteresis + SQL);
* outbox delivery vs. bare HTTP POSTs of the same bodies (the cost of durability: SQLite WAL
  with synchronous=FULL, one commit per state change).
"""

from __future__ import annotations

import datetime as dt
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "alerting"))

from driftline.alerting.receivers import LocalSlack as FakeSlack  # noqa: E402
from prometheus_client import CollectorRegistry  # noqa: E402

from driftline.alerting.delivery import Deliverer, http_post  # noqa: E402
from driftline.alerting.evaluate import Evaluator  # noqa: E402
from driftline.alerting.incidents import hysteresis  # noqa: E402
from driftline.alerting.metrics import AlertMetrics  # noqa: E402
from driftline.alerting.outbox import Outbox  # noqa: E402
from driftline.alerting.rules import ChannelConfig, Secret, parse_rules  # noqa: E402
from driftline.alerting.ssrf import check_url  # noqa: E402
from driftline.collector.embedded.chstore import start_chstore  # noqa: E402
from driftline.collector.store import connect, migrate  # noqa: E402

MODELS, WINDOWS, FEATURES, MESSAGES = 100, 48, 10, 300


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="bench-alerting-"))
    server = start_chstore(tmp / "ch")
    client = connect(server.url)  # as `driftline alerts run` does
    migrate(client)
    t0 = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    rng = random.Random(0)
    rows = []
    for m in range(MODELS):
        for w in range(WINDOWS):
            s = t0 + dt.timedelta(minutes=10 * w)
            for f in range(FEATURES):
                v = rng.random() * 0.3
                rows.append([f"model{m}", "v1", "psi", f"f{f}", "", s, s + dt.timedelta(minutes=10),
                             "psi", v, None, 0.2, v > 0.2, 5000, 1000, "{}"])
    client.insert("driftline.drift_metrics", rows, column_names=[
        "model", "model_version", "detector", "feature", "segment", "window_start", "window_end",
        "statistic", "value", "p_value", "threshold", "drift", "reference_size", "current_size",
        "details"])
    rule = parse_rules({"rules": [{"name": "psi", "kind": "drift", "statistic": "psi",
                                   "threshold": 0.2, "fire_after": 3, "min_samples": 500}]},
                       env={}).rules[0]
    now = t0 + dt.timedelta(minutes=10 * WINDOWS)
    ev = Evaluator(client, history_windows=WINDOWS, lookback_s=30 * 86400)

    def timed(fn, n=5):
        fn()
        best = float("inf")
        for _ in range(n):
            t = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - t)
        return best

    base = timed(lambda: client.query(
        "SELECT * FROM driftline.drift_metrics WHERE statistic = 'psi'").result_rows)
    full = timed(lambda: [hysteresis(s.windows, 3, 1) for s in ev.evaluate(rule, now)])
    print(f"evaluation: {MODELS} series x {WINDOWS} windows x {FEATURES} features "
          f"({len(rows)} rows)")
    print(f"  bare fetch of the rows     {base * 1000:8.1f} ms")
    print(f"  evaluate + hysteresis      {full * 1000:8.1f} ms   ratio {full / base:.2f}x")

    slack = FakeSlack()
    body = {"text": "bench", "blocks": [{"type": "section",
                                         "text": {"type": "mrkdwn", "text": "x" * 500}}]}
    import json
    raw = json.dumps(body).encode()
    target = check_url(slack.url, allow_local=True)
    t = time.perf_counter()
    for _ in range(MESSAGES):
        http_post(target, raw, {"Content-Type": "application/json"}, 5.0)
    bare = time.perf_counter() - t
    outbox = Outbox(tmp / "o.sqlite3")
    d = Deliverer(outbox, {"s": ChannelConfig(name="s", type="slack", url=Secret(slack.url),
                                        rate_per_s=0)},
                  AlertMetrics(CollectorRegistry()), allow_local=True)
    t = time.perf_counter()
    for i in range(MESSAGES):
        outbox.enqueue(f"k{i}", "s", "slack", body, time.time())
    d.deliver_due()
    durable = time.perf_counter() - t
    assert len(slack.messages) == 2 * MESSAGES
    print(f"delivery: {MESSAGES} Slack messages to a local fake (rate limit off)")
    print(f"  bare HTTP POSTs            {MESSAGES / bare:8.0f} msg/s")
    print(f"  outbox (enqueue+deliver)   {MESSAGES / durable:8.0f} msg/s   "
          f"ratio {durable / bare:.2f}x time")
    slack.close()
    outbox.close()
    server.stop()
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
