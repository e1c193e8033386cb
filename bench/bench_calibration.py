"""False verdicts and power of the calibrated data-drift verdict (``calibration: budget``).

    python bench/bench_calibration.py [--null] [--power] [--quick]

Streams of 1,000-event windows, one feature judged by a real ``DataDriftDetector`` (histogram
counting in numpy, see tests/detectors/calibration_streams.py), fixed seeds.

* ``--null``: false verdicts per million feature-events on stationary streams of each shape,
  many references x many windows, at the per-test level of the default budget (1 false verdict
  per 1,000 windows) for a one-feature model and for a 20-feature model (data + prediction drift).
* ``--power``: share of windows flagged after a change, and the windows until the first verdict,
  per reference size (1k, 5k, 10k, 20k events), at the 20-feature model's per-test level.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from driftline.detectors.calibration import feature_test_count  # noqa: E402
from driftline.detectors.config import DataDriftSettings  # noqa: E402
from driftline.detectors.histogram import profile_numeric  # noqa: E402
from tests.detectors.calibration_streams import SHAPES, SHIFTS, run  # noqa: E402

SETTINGS = DataDriftSettings()
ALPHA_WINDOW = SETTINGS.alarm_budget.false_verdicts / SETTINGS.alarm_budget.windows
_NUM_TESTS = feature_test_count(profile_numeric("x", [0.0, 1.0], bins=2), SETTINGS)
#: per-test level of a model with 20 numeric features and 3 model outputs (data + prediction)
ALPHA_20 = ALPHA_WINDOW / (23 * _NUM_TESTS)
ALPHA_1 = ALPHA_WINDOW / _NUM_TESTS


def null(refs: int, windows: int, ref_size: int) -> None:
    loose = 1e-3  # a loose level where false verdicts are frequent enough to count: validity
    print(f"| shape | windows | false verdicts per million feature-events, 1-feature level "
          f"({ALPHA_1:.1e}) | at the 20-feature level ({ALPHA_20:.1e}) | windows flagged at per-test "
          f"{loose:g} / Bonferroni bound {loose * _NUM_TESTS:g} |")
    print("|---|---|---|---|---|")
    for name, (draw, cat) in SHAPES.items():
        t0 = time.perf_counter()
        got = {a: 0 for a in (ALPHA_1, ALPHA_20, loose)}
        for alpha in got:
            for r in range(refs):
                got[alpha] += sum(run(draw, draw, cat, seed=1000 + r, ref_size=ref_size, windows=windows,
                                      per_test_alpha=alpha))
        total = refs * windows
        print(f"| {name} | {total} | {got[ALPHA_1] / total * 1000:.2f} | {got[ALPHA_20] / total * 1000:.2f} | "
              f"{got[loose] / total:.4f} ({got[loose] / total / (loose * _NUM_TESTS):.2f} of the bound) |"
              f"  <!-- {time.perf_counter() - t0:.0f} s -->", flush=True)


def power(refs: int, after: int, sizes: list[int]) -> None:
    print(f"| change | reference | windows flagged after | first verdict within (windows, median / worst) "
          f"| flagged within 5 | per-test level {ALPHA_20:.1e} |")
    print("|---|---|---|---|---|---|")
    for name, (draw_ref, draw_cur, cat) in SHIFTS.items():
        for size in sizes:
            flagged = firsts = within5 = 0
            first_list = []
            for r in range(refs):
                v = run(draw_ref, draw_cur, cat, seed=2000 + r, ref_size=size, windows=after,
                        per_test_alpha=ALPHA_20, before=8)[8:]
                flagged += sum(v)
                first = next((i + 1 for i, x in enumerate(v) if x), None)
                first_list.append(first if first is not None else after + 1)
                firsts += first is not None
                within5 += first is not None and first <= 5
            first_list.sort()
            print(f"| {name} | {size:,} | {flagged / (refs * after):.0%} | {first_list[len(first_list) // 2]} / "
                  f"{first_list[-1]} | {within5}/{refs} | |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--null", action="store_true")
    ap.add_argument("--power", action="store_true")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--ref-size", type=int, default=20_000)
    args = ap.parse_args()
    both = not (args.null or args.power)
    if args.null or both:
        null(*((4, 100) if args.quick else (20, 250)), args.ref_size)
    if args.power or both:
        power(*((3, 12) if args.quick else (20, 20)), [1000, 5000, 10_000, 20_000])


if __name__ == "__main__":
    main()
