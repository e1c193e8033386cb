"""Run every benchmark in turn and print its figures: `make bench` or `python bench/run_all.py`.

Each script compares against a baseline measured in the same run and prints its own table; the
latest figures are recorded in bench/README.md. `--quick` skips the long ones (Evidently on
1M x 50 rows, the detection-quality comparison, seeding 10M predictions for the dashboard, ...).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHES = [
    ("SDK log() cost", ["bench_sdk.py"], False),
    ("SDK -> Kafka -> collector -> ClickHouse throughput", ["bench_pipeline.py"], False),
    ("embedded ClickHouse store", ["bench_chstore.py"], False),
    ("PII scrubbing", ["bench_scrub.py"], False),
    ("PII recall on a Faker corpus in 9 locales (Faker in its own venv)", ["bench_pii_recall.py"], True),
    ("detector cost, delay, false alarms", ["bench_detectors.py"], False),
    ("collector detector stage per event, with state saves", ["bench_detect_stage.py"], False),
    ("collector CPU per event at 1,000 features (without --baseline: this code only)",
     ["bench_wide_collector.py", "--rounds", "1"], False),
    ("detector state save per event, 1 to 1,000 models", ["bench_state_save.py"], False),
    ("a detector-state record's codec: collector and store CPU", ["bench_state_codec.py"], False),
    ("a data-drift window close at 3 to 1,000 features: matrices vs one feature at a time",
     ["bench_window_close.py"], False),
    ("multivariate (PCA) detector cost and calibration", ["bench_multivariate.py"], False),
    ("calibrated verdicts: false alarms and power", ["bench_calibration.py"], True),
    ("performance estimation vs NannyML's CBPE and DLE", ["bench_estimation.py"], True),
    ("performance estimation's cost in the stream", ["bench_estimation_stream.py"], False),
    ("performance estimation's grading state, capped vs uncapped", ["bench_estimation_grading.py"], True),
    ("fleet: 1 to 1,000 models, 1,000 features, 50 segments through driftline up", ["bench_fleet.py"], True),
    ("feature rollup size and cost per feature value", ["bench_rollup_sizing.py"], True),
    ("feature rollup roll: cost, rows and histogram accuracy, equi-depth vs fine bins", ["bench_feature_roll.py"], True),
    ("store CPU per event by rollup view, 1 and 1,000 models", ["bench_store_views.py"], False),
    ("store CPU per label with and without the sentinel views on labels", ["bench_label_views.py"], False),
    ("collector consumer CPU per Kafka record vs aiokafka and faust (faust in its own venv)", ["bench_consume.py"], False),
    ("sidecar latency vs direct and nginx (rounds of events on/off)", ["bench_sidecar.py"], True),
    ("sidecar event hand-off CPU", ["bench_sidecar_handoff.py"], False),
    ("sidecar event worker: a proxy's wake-up beside it, per scheduling policy", ["bench_worker_sched.py"], False),
    ("sidecar child CPU per exchange, this tree vs main", ["bench_event_cpu.py"], False),
    ("sidecar and serve against tritonclient, MLServer and KServe", ["bench_sidecar_peers.py"], True),
    ("alerting evaluation and delivery", ["alerting_bench.py"], False),
    ("driftline up: stop with 100,000 events in the broker", ["bench_stop.py"], False),
    ("embedded broker memory: what frees it", ["bench_broker_retention.py"], True),
    ("soak: 5M events through driftline up, memory per process", ["bench_soak.py", "--up-arg=--broker-max-mib=64"], True),
    ("make demo on a clean clone: dashboard and first drift row", ["bench_demo_start.py"], True),
    ("storage per million predictions", ["bench_storage.py"], True),
    ("detectors vs Evidently DataDriftPreset", ["bench_vs_evidently.py"], True),
    ("detection quality vs Evidently, NannyML, alibi-detect", ["bench_detection.py"], True),
    ("dashboard pages at 10M predictions", ["bench_dashboard.py"], True),
    ("the redesign (issue 13): this tree vs the commit before it", ["bench_before_after.py", "--base", "6f8f29f"], True),
    ("embedded store memory under the storage and detector path", ["bench_store_memory.py"], True),
]


def main() -> int:
    quick = "--quick" in sys.argv
    failed = []
    for title, args, long in BENCHES:
        if quick and long:
            print(f"\n### {title}: skipped (--quick)")
            continue
        print(f"\n### {title}: python bench/{' '.join(args)}", flush=True)
        start = time.monotonic()
        code = subprocess.call([sys.executable, str(HERE / args[0]), *args[1:]])
        print(f"--- {title}: exit {code} after {time.monotonic() - start:.0f} s", flush=True)
        if code:
            failed.append(title)
    if failed:
        print("\nfailed: " + ", ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
