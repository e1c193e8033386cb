"""Consumer CPU per Kafka record: the collector's ``BatchConsumer`` beside raw aiokafka and faust.

Run: python bench/bench_consume.py [--records 100000] [--size 400] [--rounds 3]

A fleet of quiet models sends small records (the SDK packs one model's events per record: one or
two events each at a thousand models), so the consumer's cost per *record* becomes cost per event.
Each round produces ``--records`` records of ``--size`` bytes, keyed over 1,000 model names, to fresh
topics on the embedded broker (Tansu), then reads them with each consumer in a process of its own
(``consume_peer.py``): aiokafka's ``getmany`` with a commit per batch (the floor), the collector's
``BatchConsumer`` (records handed to a pipeline stand-in on the storage thread, committed after it
returns), and faust-streaming 0.15.3 with ``take_events`` (what the collector ran on until 3 Dec
2026; its own venv under ``.cache/bench-venvs/faust``). CPU per record from the first batch to
the last; medians over the rounds, ratios to aiokafka in the same round.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PEER = Path(__file__).resolve().parent / "consume_peer.py"
FAUST = "faust-streaming==0.15.3"


def faust_python(venvs: Path) -> Path:
    d = venvs / "faust"
    py = d / "bin" / "python"
    if not (d / ".ready").exists():
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(d)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", FAUST, "aiokafka==0.14.0"], check=True)
        (d / ".ready").write_text(FAUST)
    return py


def produce(bootstrap: str, topics: object, n: int, size: int) -> None:
    from kafka import KafkaProducer

    from driftline.collector.topics import ensure_topics

    ensure_topics(bootstrap, [*topics.event_topics(), topics.deadletter], partitions=4)  # type: ignore[attr-defined]
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, batch_size=1 << 20)
    value = b"x" * size
    for i in range(n):
        producer.send(topics.predictions, key=f"fleet-{i % 1000:04d}".encode(), value=value)  # type: ignore[attr-defined]
    producer.flush(120)
    producer.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--size", type=int, default=400)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--venv-dir", type=Path, default=ROOT / ".cache" / "bench-venvs")
    args = ap.parse_args()
    from driftline.collector.embedded.broker import start_broker
    from driftline.sdk.contract import Topics

    runners = {"aiokafka": Path(sys.executable), "driftline": Path(sys.executable),
               "faust": faust_python(args.venv_dir)}
    results: dict[str, list[float]] = {k: [] for k in runners}
    ratios: dict[str, list[float]] = {k: [] for k in runners}
    names: dict[str, str] = {}
    with start_broker() as broker:
        for rnd in range(args.rounds):
            got = {}
            order = list(runners) if rnd % 2 == 0 else list(reversed(runners))
            for impl in order:
                topics = Topics.with_prefix(f"bc{uuid.uuid4().hex[:8]}")
                produce(broker.bootstrap, topics, args.records, args.size)
                out = subprocess.run([str(runners[impl]), str(PEER), impl, broker.bootstrap, topics.predictions,
                                      str(args.records)], capture_output=True, text=True, timeout=600)
                line = [ln[ln.index("{"):] for ln in out.stdout.splitlines() if "{" in ln]  # faust's console codes
                if not line:
                    raise SystemExit(f"{impl} printed no result:\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}")
                r = json.loads(line[-1])
                got[impl] = r["cpu_us_per_record"]
                names[impl] = r["impl"]
                print(f"round {rnd + 1} {r['impl']}: {r['cpu_us_per_record']:.2f} µs/record "
                      f"({r['records']} records, {r['wall_s']:.2f} s)", flush=True)
            for impl, v in got.items():
                results[impl].append(v)
                ratios[impl].append(v / got["aiokafka"])
    print(f"\n{args.records:,} records of {args.size} B, keys over 1,000 models, {args.rounds} rounds\n")
    print("| consumer | CPU µs/record (median) | × aiokafka (median, range) |\n|---|---|---|")
    for impl in runners:
        r = ratios[impl]
        print(f"| {names[impl]} | {statistics.median(results[impl]):.2f} | {statistics.median(r):.2f}× "
              f"({min(r):.2f}–{max(r):.2f}) |")


if __name__ == "__main__":
    main()
