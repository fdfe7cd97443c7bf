"""What a suite's workloads recorded, gathered for its aggregate verdicts (harness.inference.aggregate): per
workload, each arm's counted test accuracies by seed, the workload's own decisions, and each counted
confirmation run's time to the workload's target, read back from the per-epoch curves MLflow holds."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from harness.analysis.findings import Findings, decision_word, findings
from harness.analysis.records import StudyRecord, confirm_frame, history_frame, load_record
from harness.inference.aggregate import (
    Heterogeneity,
    Improvement,
    Interval,
    heterogeneity,
    iqm_interval,
    normalised,
    performance_profile,
    probability_of_improvement,
    time_to_target,
)
from harness.inference.stats import ALPHA, holm_multipliers
from harness.spec import StudySpec, split_unit
from harness.stores import Stores
from harness.suite_spec import Workload

GENERAL = 10  # clusters (workloads that share no task) below which a suite describes its workloads, claims nothing
TAUS = np.geomspace(1, 100, 200)  # the performance profiles' factors of the fastest arm's time


@dataclass
class WorkloadResult:
    workload: Workload
    record: StudyRecord
    found: Findings
    target: float  # the validation accuracy time-to-target counts to
    times: pd.DataFrame  # one row per counted confirmation run: arm, seed, run_id, test_acc, epochs, seconds

    @property
    def name(self) -> str:
        return self.record.spec.name

    @property
    def chance(self) -> float:
        return 1 / self.record.n_classes if self.record.n_classes else 0.0

    def test_acc(self, arm: str) -> list[float]:
        """The arm's counted test accuracies in search and seed order (a run that left no model at chance, as the
        study's endpoint "all" scores it)."""
        units = [u.name for u in self.record.spec.units() if u.family == arm and u.name in self.record.arms]
        return [acc for u in units for _, acc in sorted(self.record.arms[u].test_acc().items())]  # by search, seed

    def times_of(self, arm: str) -> pd.DataFrame:
        """The arm's rows of `times`, every search of it."""
        return self.times[self.times["arm"].map(lambda name: split_unit(name)[0]) == arm]

    def median_time(self, arm: str, column: str = "seconds") -> float:
        """The median over the arm's seeds of its time-to-target (inf when most runs never reached it)."""
        values = self.times_of(arm)[column].to_numpy(dtype=float)
        return float(np.median(values)) if values.size else float("inf")


def report_markers(specs: list[StudySpec], stores: Stores) -> dict[str, str | None]:
    """Each workload's mark of the records its report was built from (set when it publishes): the suite's report
    is current while these are what it was built from."""
    import optuna

    from harness.schema import StudyAttr
    from harness.stores import open_storage

    storage = open_storage(stores)
    marks = {}
    for spec in specs:
        try:
            marks[spec.name] = optuna.load_study(study_name=spec.name, storage=storage).user_attrs.get(
                StudyAttr.REPORT_RECORDS)
        except KeyError:
            marks[spec.name] = None
    return marks


def load_workload(workload: Workload, spec: StudySpec, stores: Stores, fraction: float) -> WorkloadResult:
    """One workload's study from the stores, with each counted confirmation run's time to target: the declared
    target, else `fraction` of the best arm's mean best validation accuracy."""
    record = load_record(spec, stores)
    confirm = confirm_frame(record)
    curves = history_frame(record, confirm, ("val_acc", "epoch_seconds"))
    best = curves.groupby(["arm", "run_id"])["val_acc"].max().groupby("arm").mean()
    target = workload.target if workload.target is not None else fraction * float(best.max() if len(best) else 1.0)
    rows = []
    for (arm, seed, run_id), run in curves.groupby(["arm", "seed", "run_id"], sort=False):
        epochs, seconds = time_to_target(run["val_acc"], run["epoch_seconds"].fillna(0.0), target)
        rows.append({"arm": arm, "seed": int(seed), "run_id": run_id, "epochs": epochs, "seconds": seconds})
    times = pd.DataFrame(rows, columns=["arm", "seed", "run_id", "epochs", "seconds"])
    times = times.merge(confirm[["run_id", "test_acc"]], on="run_id", how="left")
    return WorkloadResult(workload, record, findings(record), target, times)


@dataclass
class Aggregate:
    """One pair of arms over the workloads, and each declared comparison of the pair as each workload decided it."""

    a: str
    b: str
    improvement: Improvement
    iqm: dict[str, Interval]  # arm -> IQM of normalised accuracy, stratified bootstrap interval
    heterogeneity: Heterogeneity | None
    decided: dict[str, dict[str, str]]  # declared comparison ("kind: a - b") -> workload -> its decision in words
    tally: dict[str, dict[str, int]]  # declared comparison -> "a better" | "b better" | ... -> workloads
    confidence: float = 1 - ALPHA  # the interval's level: Holm's over the suite's pairs
    family: int = 1  # the pairs Holm corrects over

    @property
    def label(self) -> str:
        return f"{self.a} vs {self.b}"


def tally_word(outcome: str, kind: str) -> str:
    """A workload's decision of a pair as the suite counts it."""
    if outcome == "a > b":
        return "a better"
    if outcome == "a < b" or (kind in ("non-inferiority", "equivalence") and outcome == "refuted"):
        return "b better" if kind != "equivalence" else "not equivalent"
    if outcome == "shown":
        return "a not worse" if kind == "non-inferiority" else "equivalent"
    return "undecided"


def task_clusters(results: list[WorkloadResult]) -> dict[str, str]:
    """Workload -> its cluster: workloads that share a source (dataset and classes), a test split, or any class of
    one dataset are one cluster, joined transitively. Their results move together (the same images, the same
    source model), so they are one unit of evidence, not several."""
    def touches(r: WorkloadResult) -> set[tuple]:
        cfg = r.record.spec.base
        source = cfg.source_dataset or cfg.dataset
        marks = {("source", source, cfg.source_classes), ("test", cfg.dataset, cfg.split_seed, cfg.test_fraction)}
        for dataset, classes in ((source, cfg.source_classes), (cfg.dataset, cfg.target_classes)):
            marks |= {("class", dataset, c) for c in classes} if classes else {("class", dataset, "all")}
        return marks

    label = {r.workload.label: r.workload.label for r in results}
    seen: dict[tuple, str] = {}

    def root(w: str) -> str:
        while label[w] != w:
            w = label[w]
        return w

    for r in results:
        for mark in touches(r):
            if mark in seen:
                label[root(r.workload.label)] = root(seen[mark])
            else:
                seen[mark] = r.workload.label
    return {w: root(w) for w in label}


def aggregate(results: list[WorkloadResult]) -> list[Aggregate]:
    """Every pair of arms the suite's study declares a comparison of (difference, non-inferiority, equivalence),
    over the workloads."""
    spec = results[0].record.spec
    arms = [a.name for a in spec.arms]
    runs = {arm: {r.workload.label: r.test_acc(arm) for r in results if r.test_acc(arm)} for arm in arms}
    scores = normalised(runs, {r.workload.label: r.chance for r in results})
    pairs: dict[tuple[str, str], list[int]] = {}
    for i, declared in enumerate(spec.family):
        if hasattr(declared, "b"):  # trends and interactions have no one pair to aggregate
            pairs.setdefault((declared.a, declared.b), []).append(i)
    clusters = task_clusters(results)
    raw = [probability_of_improvement(runs[a], runs[b], clusters=clusters, min_units=GENERAL).p_value for a, b in pairs]
    factors = holm_multipliers([p if np.isfinite(p) else 1.0 for p in raw])  # Holm over the suite's pairs
    out = []
    for ((a, b), indices), factor in zip(pairs.items(), factors, strict=True):
        decided, tally = {}, {}
        for i in indices:
            declared = spec.family[i]
            key = f"{declared.kind}: {declared.label}"
            decided[key], tally[key] = {}, {}
            for r in results:
                d = r.found.decisions[i]
                decided[key][r.workload.label] = decision_word(d) if d.estimate else "no data"
                word = tally_word(d.outcome, declared.kind)
                tally[key][word] = tally[key].get(word, 0) + 1
        improvement = probability_of_improvement(runs[a], runs[b], 1 - ALPHA / factor, clusters, GENERAL)
        out.append(Aggregate(a, b, improvement,
                             {arm: iqm_interval(scores[arm]) for arm in (a, b)},
                             heterogeneity(runs[a], runs[b]), decided, tally, 1 - ALPHA / factor, len(pairs)))
    return out


def profiles(results: list[WorkloadResult], column: str = "seconds") -> dict[str, np.ndarray]:
    """Each arm's performance profile over TAUS, from its median time-to-target per workload."""
    arms = [a.name for a in results[0].record.spec.arms]
    times = {arm: {r.workload.label: r.median_time(arm, column) for r in results} for arm in arms}
    return performance_profile(times, TAUS)
