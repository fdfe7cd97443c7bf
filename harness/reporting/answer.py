"""The report's first screen: the answer in plain sentences, the key figure, and one paste-ready table, written
also as results.csv and results.tex, with every run in runs.csv. Detail follows in the rest of the report."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from harness.analysis.findings import Findings, level_text
from harness.analysis.records import StudyRecord
from harness.analysis_plan import Equivalent, Interaction, NonInferior, Trend
from harness.inference.decide import Decision
from harness.inference.stats import TIE, summarize
from harness.spec import split_unit


def _pts(x: float) -> str:
    return f"{100 * x:.1f}"


def _ci(d: Decision) -> str:
    return f"{level_text(d.confidence)}% CI {100 * d.low:+.1f} to {100 * d.high:+.1f}"


def plain(d: Decision) -> str:
    """One declared comparison as a sentence a student can act on."""
    c, e = d.declared, d.estimate
    if e is None:
        return f"{c.label}: no result yet (an arm has no run to compare)."
    if e.se <= TIE and abs(e.value) <= TIE:
        return f"{c.label}: the arms gave identical results on every seed: no difference to test."
    if not isinstance(c, Interaction) and d.low <= -1 + TIE and d.high >= 1 - TIE:
        return f"{c.label}: too few seeds to say (the interval spans every possible accuracy)."
    size = f"{_pts(abs(e.value))} points"
    if isinstance(c, Trend):
        way = {"shown": f"moves {c.direction[:-3]}es as declared", "refuted": "moves the other way"}.get(
            d.outcome, "shows no clear trend")
        return f"Accuracy along {' -> '.join(c.arms)} {way} ({100 * e.value:+.1f} points per step, {_ci(d)})."
    if isinstance(c, Interaction):
        said = "depends on the setting" if d.decided else "may or may not depend on the setting"
        return f"The effect {said}: {c.label} = {100 * e.value:+.1f} points ({_ci(d)})."
    if isinstance(c, NonInferior):
        said = {"shown": f"is no worse than {c.b} within {_pts(c.margin)} points",
                "refuted": f"is worse than {c.b} by more than {_pts(c.margin)} points"}.get(
            d.outcome, f"within {_pts(c.margin)} points of {c.b}: undecided")
        return f"{c.a} {said} ({100 * e.value:+.1f} points, {_ci(d)})."
    if isinstance(c, Equivalent):
        said = {"shown": "equivalent", "refuted": "not equivalent"}.get(d.outcome, "undecided whether equivalent")
        return f"{c.a} and {c.b}: {said} within {_pts(c.margin)} points ({100 * e.value:+.1f} points, {_ci(d)})."
    if d.outcome == "a > b":
        return f"{c.a} beats {c.b} by {size} ({_ci(d)})."
    if d.outcome == "a < b":
        return f"{c.b} beats {c.a} by {size} ({_ci(d)})."
    return f"{c.a} vs {c.b}: no clear difference ({100 * e.value:+.1f} points, {_ci(d)})."


def arm_results(record: StudyRecord, found: Findings) -> pd.DataFrame:
    """One row per arm (per search with several): test accuracy of its verdict runs, failures, its choice."""
    rows = []
    for name, arm in record.arms.items():
        family, search = split_unit(name)
        acc = [v for _, v in sorted(arm.test_acc().items())]
        s = summarize(acc) if acc else None
        rate = found.rates.get(name)
        rows.append({
            "arm": family, "search": search or 1, "runs": len(acc),
            "test_acc": s.mean if s else np.nan,
            "ci_low": s.ci_low if s and np.isfinite(s.ci_low) else np.nan,
            "ci_high": s.ci_high if s and np.isfinite(s.ci_high) else np.nan,
            "failed": rate.failed if rate else 0, "finished": rate.n if rate else 0,
            "failure_rate": rate.rate if rate and rate.n else np.nan,
            "hyperparameters": ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                                         for k, v in (arm.best.params.items() if arm.best else ())),
        })
    return pd.DataFrame(rows)


def runs_frame(record: StudyRecord) -> pd.DataFrame:
    """Every counted run, search and confirmation, as a tidy frame: test accuracy for verdict runs only (a
    selection seed is validation only)."""
    rows = []
    for name, arm in record.arms.items():
        family, search = split_unit(name)
        for s in (*arm.slots.search, *arm.slots.confirm):
            if not s.counted:
                continue
            rows.append({"arm": family, "search": search or 1, "phase": s.phase.value,
                         "trial": s.search_trial if s.search_trial is not None else s.number,
                         "seed": s.seed if s.seed is not None else 0, "verdict": s.is_verdict,
                         "val_acc": s.val_acc, "test_acc": s.test_acc if s.is_verdict else None,
                         "outcome": s.outcome.value if s.outcome else s.state.name.lower(), "run_id": s.run_id,
                         **{f"param.{k}": v for k, v in s.params.items()}})
    return pd.DataFrame(rows)


def _contrast(table: pd.DataFrame, found: Findings) -> str | None:
    """The largest gap between arms' mean test accuracy, as a description (no new test), unless a declared
    comparison already names that pair."""
    means = table.groupby("arm", sort=False)["test_acc"].mean().dropna()
    if len(means) < 3:
        return None
    top, bottom = means.idxmax(), means.idxmin()
    if any({top, bottom} == set(getattr(d.declared, "arms", ())) for d in found.decisions):
        return None
    return (f"Largest difference between arms: {top} {_pts(means[top])}% against {bottom} {_pts(means[bottom])}% "
            "mean test accuracy (a description of these runs, not a tested claim).")


def answer_md(record: StudyRecord, found: Findings, out: Path) -> str:
    """The Answer section; writes results.csv, results.tex and runs.csv beside the report."""
    table = arm_results(record, found)
    table.to_csv(out / "results.csv", index=False)
    runs_frame(record).to_csv(out / "runs.csv", index=False)
    shown = table.assign(**{
        "test accuracy (%)": [f"{_pts(m)} ({_pts(lo)} to {_pts(hi)})" if np.isfinite(lo) else
                              (_pts(m) if np.isfinite(m) else "-")
                              for m, lo, hi in zip(table["test_acc"], table["ci_low"], table["ci_high"], strict=True)],
        "failed": [f"{f}/{n}" for f, n in zip(table["failed"], table["finished"], strict=True)],
    })
    columns = ["arm", *(["search"] if record.spec.searches > 1 else []), "test accuracy (%)", "failed",
               "hyperparameters"]
    (out / "results.tex").write_text(shown[columns].to_latex(index=False, escape=True))
    lines = [line for line in dict.fromkeys((_contrast(table, found), *(plain(d) for d in found.decisions))) if line]
    head = "| " + " | ".join(columns) + " |\n" + "|---" * len(columns) + "|"
    body = "\n".join("| " + " | ".join(str(row[c]) for c in columns) + " |" for _, row in shown.iterrows())
    figure = ("\n\n![test accuracy per arm](test_acc.png)\n\nTest accuracy of every verdict run (points), per arm."
              if (out / "test_acc.png").is_file() else "")
    return ("## Answer\n\n" + "\n".join(f"- {line}" for line in lines) + figure
            + "\n\n**Results** (test accuracy of the verdict runs, mean and 95% t interval over seeds; also "
            "`results.csv`, `results.tex`, and every run in `runs.csv`):\n\n" + head + "\n" + body)
