"""The report's tables: the declared comparisons, the results per arm, and every seed's test accuracy."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from harness.analysis.findings import Findings, at_decision, decision_word, interval, later_seeds, power_text
from harness.analysis.records import FINISHED, ArmRecord, StudyRecord
from harness.inference.stats import summarize


def pct(x: float) -> str:
    return f"{100 * float(x):.1f}"


def _value(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def plan_table(record: StudyRecord, found: Findings) -> str:
    """The declared family, one row each: kind, margin, estimate, interval, decision, seeds, power."""
    rows = []
    overall = found.overall or [None] * len(found.decisions)
    for d, o in zip(found.decisions, overall, strict=True):
        c, e = d.declared, d.estimate
        margin = f"{pct(c.margin)}" if getattr(c, "margin", None) else "-"
        estimate = "-" if e is None else f"{100 * e.value:+.1f}"
        if later_seeds(d, o):
            estimate = f"{estimate} ({at_decision(d)}); {100 * o.value:+.1f} (all {o.n} seeds)"
        seeds = "-" if e is None else f"{e.n}{'' if e.paired else ' (Welch)'}" + (
            f" × {e.searches} searches" if e is not None and e.searches > 1 else "")
        power = "-" if e is None else power_text(d, record.spec.margin)
        rows.append(f"| {c.label} | {c.kind} | {margin} | {estimate} | {interval(d) if e else '-'} | "
                    f"{decision_word(d) if e else 'no data'} | {seeds} | {power} |")
    head = ("| comparison | kind | margin (points) | estimate (points) | interval | decision | seeds | power |\n"
            + "|---" * 8 + "|")
    return f"**Declared comparisons** (the study's analysis plan, margin {pct(record.spec.margin)} points unless " \
           f"stated):\n\n{head}\n" + "\n".join(rows)


def _arm_row(record: StudyRecord, name: str, arm: ArmRecord, found: Findings) -> str:
    wall = pd.to_numeric(record.log.children(name)["wall_seconds"], errors="coerce").sum()
    best = "-" if arm.best is None else f"{pct(arm.best.value)} (trial {arm.best.number})" \
        if arm.best.value is not None else f"none trained (trial {arm.best.number} confirmed)"
    val = pd.Series(arm.val_acc(), dtype=float)
    seeds_val = f"{pct(val.mean())}" if len(val) else "-"
    test = ci = "no confirmation runs" if not arm.test_acc() else "no run trained"
    values = found.outcomes.values[name]  # the study's endpoint: what its comparisons are decided on
    if values:
        s = summarize(list(values.values()))
        ci = f"{pct(s.ci_low)} to {pct(s.ci_high)}" if np.isfinite(s.ci_low) else "too few seeds"
        if np.isfinite(s.ci_low) and s.ci_low <= 0 and s.ci_high >= 1:  # cut to every accuracy there is
            ci += " (too few seeds to mean anything)"
        test = f"{pct(s.mean)} ± {pct(s.sd)} (n={s.n})"
    r = found.rates[name]
    failures = "-" if not r.n else f"{r.failed}/{r.n} ({pct(r.low)} to {pct(r.high)})"
    failures += f" (+{arm.uncounted_failures} crashed, not counted)" if arm.uncounted_failures else ""
    counts = " / ".join(str(arm.count(s)) for s in FINISHED)
    params = ", ".join(f"{k}={_value(v)}" for k, v in arm.best.params.items()) if arm.best else "-"
    return f"| {name} | {best} | {seeds_val} | {test} | {ci} | {failures} | {counts} | {_duration(wall)} | {params} |"


def arm_table(record: StudyRecord, found: Findings) -> str:
    runs = "runs that trained" if found.outcomes.endpoint == "trained" else "all verdict runs"
    head = (f"| arm | chosen trial: search val acc (%) | its val acc over seeds (%) | test acc of {runs} "
            "(%), mean ± sd | its 95% CI (t) | failed seeds (exact 95% CI, %) | trials complete / pruned / failed "
            "| wall time | hyperparameters |\n" + "|---" * 9 + "|")
    rows = "\n".join(_arm_row(record, name, arm, found) for name, arm in record.arms.items())
    return f"## Results per arm\n\n{head}\n{rows}\n\n{_per_seed(record, found)}"


def _per_seed(record: StudyRecord, found: Findings) -> str:
    """Every counted confirmation run's test accuracy, seeds as rows; a failed run is marked."""
    seeds = sorted({s for flags in found.outcomes.failed.values() for s in flags})
    if not seeds:
        return ""
    names = list(record.arms)
    rows = []
    for seed in seeds:
        cells = []
        for name in names:
            acc = record.arms[name].test_acc().get(seed)
            mark = " (failed)" if found.outcomes.failed[name].get(seed) else ""
            cells.append("-" if acc is None else f"{pct(acc)}{mark}")
        rows.append(f"| {seed} | " + " | ".join(cells) + " |")
    head = "| seed | " + " | ".join(names) + " |\n" + "|---" * (len(names) + 1) + "|"
    return "**Per seed** (test accuracy, %):\n\n" + head + "\n" + "\n".join(rows)


