"""The benchmarks' verdicts (bench/sidecar_verdict.py): the sign-test interval of the median and the
pooled ratio's bootstrap interval over rounds (bench_sidecar.py), and issue 17's targets read from
bench_fleet.py's rounds, each on rounds whose answer is known."""

from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from bench_sidecar import events_cost  # noqa: E402
from sidecar_verdict import POOLED_MIN_ROUNDS, interval_verdict, median_interval, pooled_interval, verdict  # noqa: E402


def _cost(p: dict[str, float]) -> float:
    return events_cost(p["on"], p["off"], p["direct"])


def _rounds(extra_on_ms: float, n: int = 20, per_round: int = 2000, seed: int = 1) -> dict[str, list[list[float]]]:
    """Latencies whose round-to-round level moves (as a shared machine's do); the sidecar adds 2 ms
    without events and 2 + ``extra_on_ms`` with them, on top of the same direct call."""
    rng = random.Random(seed)
    out: dict[str, list[list[float]]] = {"direct": [], "on": [], "off": []}
    for _ in range(n):
        level = rng.uniform(0.5, 3.0)  # this round's machine
        for name, added in (("direct", 0.0), ("off", 2.0), ("on", 2.0 + extra_on_ms)):
            out[name].append([level + added + rng.expovariate(2.0) for _ in range(per_round)])
    return out


def test_pooled_interval_covers_the_true_cost_and_decides_it() -> None:
    # events add 10 % of the sidecar's added 2 ms (+0.2 ms): the true cost is +10 %
    est, lo, hi = pooled_interval(_rounds(0.2), _cost, resamples=300)
    assert lo <= 0.10 <= hi
    assert 0.0 < est < 0.2
    assert interval_verdict(lo, hi, 0.20, 20) == "met"
    # events double it (+2 ms): +100 %, far above the target
    est, lo, hi = pooled_interval(_rounds(2.0), _cost, resamples=300)
    assert est == pytest.approx(1.0, abs=0.15) and lo > 0.20
    assert interval_verdict(lo, hi, 0.20, 20) == "not met"


def test_pooled_interval_is_undecided_when_the_rounds_cannot_tell() -> None:
    # events cost +100 % in one round and -50 % in the other: resamples of either round disagree
    a, b = _rounds(2.0, n=1, per_round=500, seed=2), _rounds(-1.0, n=1, per_round=500, seed=3)
    rounds = {k: a[k] + b[k] for k in a}
    est, lo, hi = pooled_interval(rounds, _cost, resamples=300)
    assert lo < 0.0 and hi > 0.20 and lo <= est <= hi
    assert interval_verdict(lo, hi, 0.20, 20) == "undecided at this N"
    # and too few rounds give no verdict whatever the interval
    assert interval_verdict(0.0, 0.1, 0.20, POOLED_MIN_ROUNDS - 1) == "undecided at this N"
    assert interval_verdict(0.0, 0.1, 0.20, POOLED_MIN_ROUNDS) == "met"


def test_pooled_interval_opens_to_infinity_when_the_cost_is_undefined() -> None:
    # the sidecar without events adding nothing makes the cost undefined in every resample
    rounds = {"direct": [[1.0] * 100] * 5, "off": [[1.0] * 100] * 5, "on": [[2.0] * 100] * 5}
    est, lo, hi = pooled_interval(rounds, _cost, resamples=50)
    assert est != est
    assert (lo, hi) == (float("-inf"), float("inf"))
    assert interval_verdict(lo, hi, 0.20, 20) == "undecided at this N"


def test_pooled_interval_refuses_uneven_rounds() -> None:
    with pytest.raises(ValueError, match="same, non-zero number of rounds"):
        pooled_interval({"direct": [[1.0]], "on": [[1.0], [2.0]], "off": [[1.0]]}, _cost)


def test_median_interval_and_verdict() -> None:
    lo, hi, cover = median_interval([0.3, -0.1, 0.2, 0.5, 0.1, 0.25, 0.0], 0.95)
    assert (lo, hi) == (-0.1, 0.5) and cover == pytest.approx(0.984, abs=1e-3)
    assert verdict([0.3, -0.1, 0.2, 0.5, 0.1, 0.25, 0.0], 0.20) == "undecided at this N"
    assert verdict([0.01, -0.1, 0.05, 0.12, 0.1, 0.15, 0.0], 0.20) == "met"
    assert verdict([0.5, 0.3, 0.4, 0.9, 0.6, 0.35, 0.7], 0.20) == "not met"


def test_fleet_verdicts_read_each_target_in_its_direction() -> None:
    import bench_fleet

    def run(models: int, features: int, collector: float, store: float, rate: float) -> dict[str, float]:
        return {"models": models, "features": features, "segments": 1, "collector_us": collector,
                "store_us": store, "events_per_s": rate}

    grid = [(1, 20, 1), (1000, 20, 1), (1, 1000, 1)]
    # six rounds: the collector 1.10x (<= 1.2: met), the store 1.50x (> 1.3: not met), 1,000
    # features at 0.046-0.052x of the rate (>= 0.05 is a lower bound: undecided)
    rounds = [[run(1, 20, 100, 40, 8000), run(1000, 20, 110, 60, 6000), run(1, 1000, 2000, 1000, 420 - 10 * i)]
              for i in range(6)]
    lines = bench_fleet.verdicts(rounds, grid)
    assert [line.rsplit(": ", 1)[1] for line in lines] == ["MET", "NOT MET", "UNDECIDED AT THIS N"]
    assert "median ratio 0.049x" in lines[2]
    # the rate above its bound in every round is met, not "not met" (the bound is a floor)
    for rows in rounds:
        rows[2]["events_per_s"] = 480
    assert bench_fleet.verdicts(rounds, grid)[2].rsplit(": ", 1)[1] == "MET"
    # the steady-state rate is judged too, before the whole phase's, when the rounds measured it;
    # a round whose phase had too few inserts to tell (nan) is left out of it
    for i, rows in enumerate(rounds):
        rows[0]["steady_events_per_s"] = 10_000
        rows[2]["steady_events_per_s"] = float("nan") if i == 0 else 380 + 10 * i
    lines = bench_fleet.verdicts(rounds, grid)
    assert [line.split(" at ", 1)[0] for line in lines[2:]] == ["steady_events_per_s", "events_per_s"]
    assert "median ratio 0.041x over 5 rounds" in lines[2]  # 0.039-0.043x: all below, but 5 rounds
    assert lines[2].rsplit(": ", 1)[1] == "UNDECIDED AT THIS N"  # cannot cover the median at 95 %
