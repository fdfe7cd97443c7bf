"""A suite's report: the aggregate verdicts over its workloads, a table of each workload's own decisions,
time-to-target and performance profiles, links to each workload's report; logged to the suite's own MLflow
experiment (its report, the time-to-target table and the aggregate numbers as metrics)."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd

from harness.analysis.findings import level_text
from harness.analysis.mlflow_log import suite_runs
from harness.analysis.workloads import GENERAL, TAUS, Aggregate, WorkloadResult, aggregate, profiles
from harness.reporting.figures_base import (
    ACC,
    PERCENT,
    _figure,
    _legend_outside,
    arm_palette,
    log_scale,
    seeded_jitter,
)
from harness.reporting.html import render_html
from harness.reporting.staleness import head_commit
from harness.schema import Phase, Tag
from harness.stores import Stores, experiment_id, use_tracking
from harness.suite_spec import SuiteSpec, flags

LINES = ("-", "--", "-.", ":")
TALLY = {"a better": "{a} better", "a not worse": "{a} not worse", "b better": "{b} better",
         "equivalent": "equivalent", "not equivalent": "not equivalent", "undecided": "undecided"}


def _pct(x: float) -> str:
    return f"{PERCENT * x:.1f}" if np.isfinite(x) else "n/a"


def _p(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def _interval(x: float, low: float, high: float, digits: int = 2) -> str:
    if not np.isfinite(low):
        return f"{x:.{digits}f} (too few runs for an interval)"
    return f"{x:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def verdict_sentence(agg: Aggregate, n: int) -> str:
    """The aggregate verdict of one comparison, with its uncertainty, in words."""
    imp = agg.improvement
    if not np.isfinite(imp.estimate):
        return f"{agg.label}: no workload has runs of both arms."
    k = len(imp.per_workload)
    scope = "over workloads like these"
    side = agg.a if imp.low > 0.5 else agg.b if imp.high < 0.5 else None
    said = (f"{side} is better {scope}" if side else f"undecided {scope} (the interval includes 0.5)")
    tally = "; ".join(f"{kind} " + ", ".join(f"{v} {TALLY[k].format(a=agg.a, b=agg.b)}" for k, v in counts.items())
                      for kind, counts in ((key.split(":")[0], c) for key, c in agg.tally.items()))
    het = agg.heterogeneity
    depends = "" if het is None else (
        f" The answer depends on the workload (Alexander-Govern {_p(het.p_value)}, I² = {100 * het.i_squared:.0f}%"
        f"{'; furthest out: ' + '; '.join(het.outliers) if het.outliers else ''})." if het.p_value < 0.05 else
        f" No evidence at the 5% level that it depends on the workload (Alexander-Govern p = {het.p_value:.2f}; "
        f"I² = {100 * het.i_squared:.0f}%, from variances estimated on few seeds).")
    if not np.isfinite(imp.low):  # too few independent tasks for an interval that keeps its level
        return (f"**{agg.label}**: P({agg.a} > {agg.b}) = {imp.estimate:.2f} on these {k} of {n} workloads "
                f"({imp.clusters} {'cluster' if imp.clusters == 1 else 'clusters'} of shared tasks; an interval "
                f"needs {GENERAL}): a description of these workloads, no verdict beyond them. Each workload's own "
                f"verdict: {tally}.{depends}")
    return (f"**{agg.label}**: P({agg.a} > {agg.b}) = {imp.estimate:.2f} ({level_text(agg.confidence)}% CI "
            f"{imp.low:.2f} to {imp.high:.2f}, {_p(imp.p_value)}, Holm over {agg.family}; {k} of {n} workloads in "
            f"{imp.clusters} clusters of shared tasks, the interval's unit): {said}. Each workload's own verdict: "
            f"{tally}.{depends}")



def _aggregate_table(aggs: list[Aggregate]) -> str:
    rows = [("| comparison | P(A > B) [CI at its Holm level] | IQM normalised A [95% CI] | IQM normalised B [95% CI] | "
            "heterogeneity p, I² |"), "|---|---|---|---|---|"]
    for g in aggs:
        het = "n/a" if g.heterogeneity is None else \
            f"{g.heterogeneity.p_value:.3f}, {100 * g.heterogeneity.i_squared:.0f}%"
        ia, ib = g.iqm[g.a], g.iqm[g.b]
        imp = g.improvement
        p_ab = (_interval(imp.estimate, imp.low, imp.high) if np.isfinite(imp.low) else
                f"{imp.estimate:.2f} ({imp.clusters} cluster{'s' * (imp.clusters != 1)}: no interval below {GENERAL})")
        rows.append(f"| {g.label} | {p_ab} | "
                    f"{g.a}: {_interval(ia.estimate, ia.low, ia.high)} | "
                    f"{g.b}: {_interval(ib.estimate, ib.low, ib.high)}"
                    f" | {het} |")
    return "\n".join(rows)


def _workload_table(results: list[WorkloadResult], aggs: list[Aggregate]) -> str:
    arms = [a.name for a in results[0].record.spec.arms]
    columns = [(g, key) for g in aggs for key in g.decided]
    head = ["workload", "study (its report)", "chance, target (val)", *(key for _, key in columns), "seeds per arm"]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        seeds = ", ".join(f"{arm} {len(r.test_acc(arm))}" for arm in arms)
        cells = [r.workload.label, f"[{r.name}](../{r.name}/README.md)", f"{_pct(r.chance)}%, {_pct(r.target)}%",
                 *(g.decided[key][r.workload.label] for g, key in columns), seeds]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def time_table(results: list[WorkloadResult]) -> pd.DataFrame:
    """Per workload and arm: mean test accuracy, and median epochs and seconds to the target over the seeds."""
    rows = [{"workload": r.workload.label, "arm": arm, "test_acc": float(np.mean(r.test_acc(arm))),
             "epochs": r.median_time(arm, "epochs"), "seconds": r.median_time(arm, "seconds"),
             "reached": f"{int(np.isfinite(r.times_of(arm)['epochs']).sum())}/{len(r.times_of(arm))}"}
            for r in results for arm in (a.name for a in r.record.spec.arms) if r.test_acc(arm)]
    return pd.DataFrame(rows, columns=["workload", "arm", "test_acc", "epochs", "seconds", "reached"])


def _time_md(table: pd.DataFrame) -> str:
    rows = [("| workload | arm | mean test acc (%) | median epochs to target | median seconds to target | "
            "seeds that reached it |"), "|---|---|---|---|---|---|"]
    for t in table.itertuples(index=False):
        epochs = f"{t.epochs:.0f}" if np.isfinite(t.epochs) else "never"
        seconds = f"{t.seconds:.2f}" if np.isfinite(t.seconds) else "never"
        rows.append(f"| {t.workload} | {t.arm} | {_pct(t.test_acc)} | {epochs} | {seconds} | {t.reached} |")
    return "\n".join(rows)


def draw_profiles(results: list[WorkloadResult], palette: dict, path: Path) -> Path:
    """Each arm's performance profile, by epochs and by seconds to the target."""
    with _figure(path, width=9.0, height=3.6, ncols=2, sharey=True) as (_fig, axes):
        for ax, column in zip(axes, ("epochs", "seconds"), strict=True):
            for k, (arm, rho) in enumerate(profiles(results, column).items()):  # dashes: equal curves stay visible
                ax.step(TAUS, rho, where="post", label=arm, color=palette[arm], ls=LINES[k % len(LINES)], lw=1.6)
            log_scale(ax)
            ax.set(xlabel=f"τ: within this factor of the fastest arm's {column}", ylim=(-0.02, 1.02),
                   title=f"time to target in {column}")
        axes[0].set_ylabel("fraction of workloads")
        axes[1].legend(frameon=False, loc="lower right")
    return path


def draw_normalised(results: list[WorkloadResult], palette: dict, path: Path) -> Path:
    """Every counted run's test accuracy per workload, normalised from chance (0) to the best arm's mean (1)."""
    import seaborn as sns

    from harness.inference.aggregate import normalised

    arms = list(palette)
    runs = {arm: {r.workload.label: r.test_acc(arm) for r in results if r.test_acc(arm)} for arm in arms}
    scores = normalised(runs, {r.workload.label: r.chance for r in results})
    frame = pd.DataFrame([{"arm": arm, "workload": w, "score": s} for arm, per in scores.items()
                          for w, values in per.items() for s in values])
    with _figure(path, width=8.0, height=0.7 * len(results) + 1.6) as (_fig, ax):
        with seeded_jitter():
            sns.stripplot(frame, x="score", y="workload", hue="arm", palette=palette, dodge=True, size=3.5, alpha=0.7,
                          ax=ax, order=[r.workload.label for r in results], hue_order=arms)
        ax.axvline(1.0, color="grey", lw=0.8, ls="--")
        ax.set(xlabel=f"normalised test {ACC.split(' ')[0]}: 0 chance, 1 the best arm's mean", ylabel="")
        _legend_outside(ax, "arm")
    return path


def build_suite_report(suite: SuiteSpec, results: list[WorkloadResult], reports_dir: Path,
                       marks: dict | None = None, aggs: list[Aggregate] | None = None) -> Path:
    """reports_dir/<suite>/README.md, its figures, summary.json (for the index) and time_to_target.csv."""
    out = reports_dir / suite.name
    out.mkdir(parents=True, exist_ok=True)
    aggs = aggregate(results) if aggs is None else aggs
    arms = [a.name for a in results[0].record.spec.arms]
    palette = arm_palette(arms)
    draw_profiles(results, palette, out / "profiles.png")
    draw_normalised(results, palette, out / "normalised.png")
    times = time_table(results)
    pd.concat([r.times.assign(workload=r.workload.label, study=r.name, target=r.target) for r in results]) \
        .to_csv(out / "time_to_target.csv", index=False)
    n = len(results)
    study = results[0].record.spec.file or suite.study
    sections = [
        f"# {suite.name}: {suite.question}",
        (f"{n} workloads, each a study of its own: the arms, search space, budget and declared comparisons of "
        f"`studies/{study}.py`, with the settings the table below names. The workload is the unit of every "
        "interval here, and workloads that share a task (a source, a test split or a class of one dataset) are "
        "one cluster, the unit of the P(A > B) interval; below 10 clusters the suite describes these workloads "
        "and claims nothing beyond them. Holm's correction runs over the suite's pairs."),
        "## Verdicts over the workloads", "\n\n".join(verdict_sentence(g, n) for g in aggs), _aggregate_table(aggs),
        "## Each workload's own verdicts", _workload_table(results, aggs),
        "## Time to target",
        ("The target of a workload is "
         f"{'its declared validation accuracy, else ' if any(w.target for w in suite.workloads) else ''}"
        f"{suite.target_fraction:.0%} of its best arm's mean best validation accuracy. A run's time to target is "
        "the epochs, and the training seconds, until its validation accuracy first reached it (read back from the "
        "per-epoch `val_acc` and `epoch_seconds` MLflow recorded for each confirmation run; every run in "
        "time_to_target.csv). Seconds depend on the machine and on what else ran beside it; epochs do not."),
        _time_md(times),
        ("![performance profiles](profiles.png)\n\nPerformance profiles (Dolan and Moré 2002, as AlgoPerf scores "
        "optimizers): for each arm, the fraction of workloads on which its median time to target is within a "
        "factor τ of the fastest arm's. Higher and further left is better; a curve that never reaches 1 has "
        "workloads on which the arm's median run never reached the target."),
        ("![normalised accuracy](normalised.png)\n\nEvery counted confirmation run's test accuracy, normalised per "
        "workload from chance (0) to the best arm's mean (1), so workloads of different difficulty line up."),
        "## How these numbers are made",
        ("- **P(A > B)** (Agarwal et al. 2021): per workload, the chance that a run of A beats a run of B (the "
        "Mann-Whitney statistic, ties a half); averaged within each cluster of workloads that share a task, then "
        "over the clusters, with a t interval over them and the p-value of P = 0.5, Holm-corrected over the pairs.\n"
        "- **IQM**: the interquartile mean of the normalised runs pooled over workloads, "
        "with a stratified bootstrap interval (runs resampled within each workload, scipy's `bootstrap`, "
        "widened for few seeds as Hesterberg 2015 proposes; simulated coverage 0.93-0.96, but 0.90-0.93 with 5 "
        "seeds a workload and strongly skewed seed noise).\n- **Heterogeneity**: the Alexander-Govern test "
        "that the seed-paired differences have one mean on every workload, with Cochran's I².\n"
        "- The coverage and false-positive rates of these procedures are measured in tests/test_aggregate.py."),
        ("## Reproduce\n\n```\npython -m harness.study "
         f"{shlex.join([suite.file or suite.name, *flags(suite.changes)])}\n"
        f"python -m harness.report {suite.name}\n```"),
    ]
    readme = out / "README.md"
    readme.write_text("\n\n".join(sections) + "\n")
    summary = {"name": suite.name, "question": suite.question, "verdicts": [verdict_sentence(g, n) for g in aggs],
               "workloads": {r.workload.label: r.name for r in results}, "report_commit": head_commit(),
               "records": {**(marks or {}), "suite": definition(suite)},  # what a rerun compares (is_current)
               "decisions": [{"comparison": g.label, "kind": "suite", "word": _word(g),
                              "estimate": g.improvement.estimate, "low": g.improvement.low,
                              "high": g.improvement.high} for g in aggs]}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    render_html(out)
    return readme


def is_current(suite: SuiteSpec, specs: list, stores: Stores, reports_dir: Path) -> bool:
    """Whether the suite's report in `reports_dir` was built from the records its workloads hold now."""
    from harness.analysis.workloads import report_markers

    summary = reports_dir / suite.name / "summary.json"
    if not summary.is_file() or not (reports_dir / suite.name / "README.md").is_file():
        return False
    recorded = json.loads(summary.read_text()).get("records")
    return bool(recorded) and recorded == {**report_markers(specs, stores), "suite": definition(suite)}


def definition(suite: SuiteSpec) -> str:
    """A digest of what the suite's report depends on beyond the records: its question, workloads and target."""
    from harness.naming import digest

    workloads = [(w.label, sorted(w.changes.items()), w.target) for w in suite.workloads]
    return digest({"question": suite.question, "target_fraction": suite.target_fraction, "workloads": workloads,
                   "changes": sorted(suite.changes.items())})


def _word(g: Aggregate) -> str:
    imp = g.improvement
    side = g.a if imp.low > 0.5 else g.b if imp.high < 0.5 else None
    return f"P = {imp.estimate:.2f} [{imp.low:.2f}, {imp.high:.2f}]: " + (f"{side} better" if side else "undecided")


def publish_suite(suite: SuiteSpec, specs: list, stores: Stores, reports_dir: Path) -> Path:
    """The suite's report from its workloads' records, logged to MLflow, and the index; returns the README."""
    from harness.analysis.workloads import load_workload, report_markers
    from harness.reporting.markdown import build_index

    marks = report_markers(specs, stores)
    results = [load_workload(w, s, stores, suite.target_fraction) for w, s in zip(suite.workloads, specs, strict=True)]
    aggs = aggregate(results)  # bootstraps: once, for the report and for MLflow
    readme = build_suite_report(suite, results, reports_dir, marks, aggs)
    log_suite(suite, results, aggs, stores, readme.parent)
    build_index(reports_dir)
    return readme


CHANGES_TAG = "suite_changes"


def recorded_changes(name: str, stores: Stores) -> dict:
    """The command line's settings a suite variant ran with, from its run (`log_suite`)."""
    use_tracking(stores)
    eid = experiment_id(stores, name, create=False)
    found = None if eid is None else suite_runs(eid)
    if found is None or found.empty:
        raise ValueError(f"no run of suite {name!r} in {stores.mlflow_uri}; run `python -m harness.study "
                         f"{name.split('--')[0]}` with the settings its name gives")
    changes = json.loads(found[CHANGES_TAG].iloc[0])
    return {k: tuple(v) if isinstance(v, list) else v for k, v in changes.items()}


def log_suite(suite: SuiteSpec, results: list[WorkloadResult], aggs: list[Aggregate], stores: Stores,
              out: Path) -> str:
    """The suite's record in MLflow: one run in the suite's own experiment, reused by every rebuild, holding the
    workloads' studies, the aggregate numbers as metrics and the report as artifacts. Returns its run id."""
    use_tracking(stores)
    eid = experiment_id(stores, suite.name)
    found = suite_runs(eid, max_results=1)
    run_id = None if found.empty else found["run_id"].iloc[0]
    with mlflow.start_run(run_id=run_id, experiment_id=eid, run_name=None if run_id else suite.name,
                          tags={Tag.PHASE: Phase.SUITE}) as run:
        mlflow.set_tags({f"workload.{i}": f"{r.workload.label}: {r.name}" for i, r in enumerate(results)})
        mlflow.set_tag(CHANGES_TAG, json.dumps(dict(suite.changes), default=list))  # a variant's rebuild reads it
        for i, g in enumerate(aggs):
            mlflow.log_metrics({f"p_improvement.{i}": g.improvement.estimate,
                                **{f"iqm.{i}.{arm}": v.estimate for arm, v in g.iqm.items()}})
        mlflow.log_artifacts(str(out), artifact_path="report")
        return run.info.run_id
