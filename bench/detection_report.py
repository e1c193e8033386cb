"""Figures and the markdown table of the detection benchmark (``bench_detection.py``).

>>> s = _case_figures([False, True, False, True, True], change=2, window=1000)
>>> s["false"], s["share_after"], s["delay"]
(1, 0.6666666666666666, 2)
"""

from __future__ import annotations

from typing import Any

__all__ = ["summarise", "table_markdown"]

NAMES = {"driftline": "driftline (defaults)", "evidently": "Evidently 0.7", "alibi": "alibi-detect 0.13",
         "nannyml": "NannyML 0.13"}


def _case_figures(flags: list[bool], change: int | None, window: int) -> dict[str, Any]:
    before = flags if change is None else flags[:change]
    after = [] if change is None else flags[change:]
    false = sum(before)
    first = next((i for i, f in enumerate(after) if f), None)
    return {"windows_before": len(before), "false": false,
            "false_per_m": false * 1e6 / (len(before) * window) if before else None,
            "windows_after": len(after), "flagged_after": sum(after),
            "share_after": sum(after) / len(after) if after else None,
            "delay": None if first is None else first + 1}


def summarise(results: dict, setup: dict, systems: list[str]) -> dict:
    """Per system and case: false verdicts, share flagged after the change, delay; pooled rates.

    Also turns every raw ``flagged`` list into a compact "0101" string (in place)."""
    window, out = setup["window"], {}
    for system in systems:
        res = results.get(system, {})
        if "cases" not in res:
            out[system] = {"error": res.get("error", "not run")}
            continue
        per_case, pooled = {}, {"stationary": [0, 0], "prefixes": [0, 0]}
        for name, r in res["cases"].items():
            flags = [bool(f) for f in r["flagged"]]
            change = setup["prefix_windows"] if name in setup["shifted"] else None
            fig = _case_figures(flags, change, window)
            per_case[name] = fig
            key = "stationary" if change is None else "prefixes"
            pooled[key][0] += fig["false"]
            pooled[key][1] += fig["windows_before"]
            r["flagged"] = "".join("1" if f else "0" for f in flags)
        out[system] = {"cases": per_case, **{
            f"false_per_m_{k}": (f * 1e6 / (n * window) if n else None) for k, (f, n) in pooled.items()}}
    return out


def _rate(v: float | None) -> str:
    if v is None:
        return "–"
    return f"{v:.0f}" if v >= 10 or v == 0 else f"{v:.1f}"


def table_markdown(summary: dict, setup: dict, systems: list[str]) -> str:
    cols = [s for s in systems if "cases" in summary.get(s, {})]
    head = "| case | " + " | ".join(NAMES[s] for s in cols) + " |\n|---|" + "---|" * len(cols) + "\n"
    w, per_shape = setup["window"], setup["events_per_shape"]
    lines = [f"False verdicts per million feature-events on stationary streams ({per_shape:,} evaluated "
             f"events per shape, {w:,}-event windows; in brackets: flagged windows / windows)", "", head.rstrip("\n")]
    for name in setup["stationary"]:
        cells = []
        for s in cols:
            f = summary[s]["cases"].get(name)
            cells.append("–" if f is None else f"{_rate(f['false_per_m'])} ({f['false']}/{f['windows_before']})")
        lines.append(f"| {name}: {setup['cases'][name]} | " + " | ".join(cells) + " |")
    lines.append("| **all stationary shapes** | " + " | ".join(
        f"**{_rate(summary[s]['false_per_m_stationary'])}**" for s in cols) + " |")
    lines.append("| pre-change prefixes of the shifts | " + " | ".join(
        _rate(summary[s]["false_per_m_prefixes"]) for s in cols) + " |")
    lines += ["", f"Shifts after {setup['prefix_windows']} stationary windows: share of the {setup['post_windows']} "
              "windows after the change flagged / delay in windows to the first flag (1 = the first changed "
              "window) / false verdicts per million feature-events in the prefix", "", head.rstrip("\n")]
    for name in setup["shifted"]:
        cells = []
        for s in cols:
            f = summary[s]["cases"].get(name)
            if f is None:
                cells.append("–")
                continue
            delay = "never" if f["delay"] is None else str(f["delay"])
            cells.append(f"{f['share_after'] * 100:.0f} % / {delay} / {_rate(f['false_per_m'])}")
        lines.append(f"| {name}: {setup['cases'][name]} | " + " | ".join(cells) + " |")
    lines += ["", f"References: driftline {setup['driftline_reference']}; Evidently and alibi-detect the same "
              f"{setup['reference_events']:,} events; NannyML the first {setup['nannyml_reference_events']:,} "
              f"(thresholds from its reference chunks). Evaluated windows start at event {setup['eval_start']:,}. "
              f"Whole run {setup['wall_s']:.0f} s.", ""]
    return "\n".join(lines)
