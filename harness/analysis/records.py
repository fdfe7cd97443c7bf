"""Reading the stores for a report: each slot's result from the ledger (Optuna, the one authority), the log's
extras (params, curves, artifacts) from MLflow by run id -> dataclasses and pandas frames.

Nothing here writes. What the stores hold is documented in `harness.schema`; `harness.reporting.markdown` writes the
markdown and `harness.analysis.findings` draws the conclusions.
"""

from __future__ import annotations

import ast
import functools
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
import pandas as pd
from optuna.distributions import CategoricalDistribution
from optuna.trial import FrozenTrial, TrialState

from harness import ledger
from harness.analysis.mlflow_log import RunLog, load_log
from harness.inference.stats import summarize
from harness.ledger import ArmLedger, Slot
from harness.spec import VARIANCE_SOURCES, Arm, StudySpec
from harness.stores import Stores, open_storage

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)  # RUNNING trials are ignored
VARIED_BY = {"seed": "seed", "partition": "partition_seed", "pretrain": "pretrain_seed"}  # source -> run param


@dataclass
class ArmRecord:
    """One arm as the ledger holds it: its search study, counted search trials and the chosen trial's counted
    verdict seeds (one per seed; a run that left no model scored at `chance`, as the endpoint "all" scores it)."""

    arm: Arm
    slots: ArmLedger
    chance: float = 0.0  # 1 / the target task's classes (ledger.chances)

    @property
    def study(self) -> optuna.Study | None:
        return self.slots.study

    @property
    def trials(self) -> list[FrozenTrial]:
        return [s.trial for s in self.slots.search]

    @property
    def best(self) -> FrozenTrial | None:
        best = self.slots.best
        return None if best is None else best.trial

    @functools.cached_property
    def verdict(self) -> list[Slot]:  # the report asks for it many times; the records it reads do not change
        return self.slots.verdict()

    @property
    def run_ids(self) -> list[str]:
        return [s.run_id for s in self.verdict if s.run_id]

    @property
    def uncounted_failures(self) -> int:
        """Verdict runs cut off (crashed, killed): rerun on resume, not scored."""
        return self.slots.cut_off()

    def test_acc(self) -> dict[int, float]:
        """Every counted verdict seed's score over all runs: its test accuracy, chance where it left no model."""
        return {s.seed: s.score(self.chance) for s in self.verdict if s.score(self.chance) is not None}

    def val_acc(self) -> list[float]:
        return [s.val_acc for s in self.verdict if s.val_acc is not None]

    @property
    def diverged(self) -> int:
        return sum(s.diverged for s in self.verdict)

    def count(self, state: TrialState) -> int:
        return self.slots.count(state)


@dataclass
class StudyRecord:
    """Everything a report shows: the ledger's results and MLflow's log."""

    spec: StudySpec
    stores: Stores
    log: RunLog
    arms: dict[str, ArmRecord]
    overview: dict[str, Any]
    samples: dict[str, np.ndarray]

    @property
    def experiment_id(self) -> str:
        return self.log.experiment_id

    def setting(self, key: str) -> str:
        """A study setting (`StudySpec.settings`) as the study its runs recorded ran it, CLI overrides included."""
        return str(self.spec.settings()[key])

    @property
    def sampler(self) -> str:
        return self.spec.sampler

    @property
    def n_classes(self) -> int | None:
        """Target classes: from the data overview, else the runs' target_classes param."""
        if self.overview.get("classes"):
            return len(self.overview["classes"])
        for text in self.log.param_values("target_classes"):
            try:
                return len(ast.literal_eval(text))
            except (ValueError, SyntaxError, TypeError):
                continue
        return None

    def verdict_params(self) -> pd.DataFrame:
        """The counted verdict runs' params, one row per run id."""
        return self.log.params([r for arm in self.arms.values() for r in arm.run_ids])

    def varied(self) -> list[str]:
        """The variance sources (harness.spec.VARIANCE_SOURCES) that took more than one value across the
        counted confirmation runs."""
        counted = self.verdict_params()
        return [source for source, column in VARIED_BY.items()
                if column in counted and counted[column].dropna().nunique() > 1]


def load_record(spec: StudySpec, stores: Stores) -> StudyRecord:
    """Read one study's ledger and MLflow log; ValueError when the stores hold none."""
    log = load_log(stores, spec.name)
    slots = ledger.read(spec, open_storage(stores))
    chance = ledger.chances(spec, {name: arm.confirm for name, arm in slots.items()})
    arms = {arm.name: ArmRecord(arm, slots[arm.name], chance[arm.name]) for arm in spec.units()}  # each search
    parents = list(log.parents["run_id"])
    overview = log.artifact(parents, "data/overview.json") or {}
    samples = log.artifact(parents, "data/samples.npz") or {}
    return StudyRecord(spec, stores, log, arms, overview, samples)


# --- frames ----------------------------------------------------------------------------------------


def trial_frame(record: StudyRecord) -> pd.DataFrame:
    """One row per finished search trial: the ledger's result joined with its MLflow run's params and wall time."""
    rows = []
    for name, arm in record.arms.items():
        slots = arm.slots.search
        params = record.log.params(s.run_id for s in slots)
        wall = record.log.runs.set_index("run_id")["wall_seconds"]
        for s in slots:
            run = params.loc[s.run_id] if s.run_id in params.index else pd.Series(dtype=object)
            rows.append({
                "arm": name, "number": s.number, "state": s.state.name, "run_id": s.run_id,
                "lr": run.get("lr"), "momentum": run.get("opt.momentum"), "best_val_acc": s.val_acc,
                "wall_seconds": wall.get(s.run_id, np.nan), "budget_value": s.budget_value,
                "epochs_run": len(s.trial.intermediate_values) or np.nan,
            })
    numeric = ["lr", "momentum", "best_val_acc", "wall_seconds", "budget_value", "epochs_run"]
    frame = pd.DataFrame(rows, columns=["arm", "number", "state", "run_id", *numeric])
    for column in numeric:
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    scored = frame["state"].isin(["COMPLETE", "PRUNED"])  # a pruned run has no final score: its best before pruning
    frame.loc[scored, "best_val_acc"] = frame.loc[scored, "best_val_acc"].fillna(frame.loc[scored, "budget_value"])
    frame["momentum"] = frame["momentum"].fillna(0.0)  # SGD without a momentum param runs with 0 (optim.py)
    frame["effective_lr"] = frame["lr"] / (1 - frame["momentum"])
    return frame


def param_frame(record: StudyRecord) -> pd.DataFrame:
    """One row per (scored search trial, searched parameter): arm, number, state, param, value, log, val_acc.

    val_acc is what the trial reached (pruned: before pruning); value is numeric, categoricals as strings."""
    rows = []
    for name, arm in record.arms.items():
        for s in arm.slots.search:
            t, score = s.trial, s.budget_value if s.state != TrialState.FAIL else np.nan
            if not np.isfinite(score):
                continue
            for param, value in t.params.items():
                d = t.distributions[param]
                categorical = isinstance(d, CategoricalDistribution)
                rows.append({"arm": name, "number": t.number, "state": t.state.name, "param": param,
                             "value": str(value) if categorical else float(value), "categorical": categorical,
                             "log": bool(getattr(d, "log", False)), "val_acc": score})
    return pd.DataFrame(rows, columns=["arm", "number", "state", "param", "value", "categorical", "log", "val_acc"])


def confirm_frame(record: StudyRecord) -> pd.DataFrame:
    """One row per counted verdict run: arm, seed, run id, test accuracy (chance where it left no model), diverged."""
    rows = [{"arm": name, "seed": s.seed, "run_id": s.run_id, "test_acc": s.score(arm.chance), "diverged": s.diverged}
            for name, arm in record.arms.items() for s in arm.verdict if s.score(arm.chance) is not None]
    return pd.DataFrame(rows, columns=["arm", "seed", "run_id", "test_acc", "diverged"])


MIN_IMPORTANCE_TRIALS = 10  # fANOVA from fewer complete trials ranks noise


def importance_frame(record: StudyRecord) -> pd.DataFrame:
    """fANOVA importances per arm with `complete` (the trials they rest on); arms with fewer than
    MIN_IMPORTANCE_TRIALS complete trials, or nothing varying, are left out."""
    rows = []
    for name, arm in record.arms.items():
        complete = arm.count(TrialState.COMPLETE)
        if arm.study is None or complete < MIN_IMPORTANCE_TRIALS:
            continue
        try:
            found = optuna.importance.get_param_importances(
                arm.study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0))
        except (ValueError, RuntimeError):
            continue
        rows += [{"arm": name, "param": p, "importance": v, "complete": complete} for p, v in found.items()]
    return pd.DataFrame(rows, columns=["arm", "param", "importance", "complete"])


def _variant_label(names: list[str]) -> str:
    """What arms that differ only in the setting share: their names' common stem (AnB-0, AnB-1 -> AnB)."""
    stem = os.path.commonprefix(names).rstrip("-_ =")
    return stem if len(names) > 1 and stem else ", ".join(names)


def setting_points(record: StudyRecord, setting: str, excluded: Iterable[str] = ()) -> pd.DataFrame:
    """Test accuracy (mean, 95% t CI) per arm at its value of `setting` (a run param), grouped into variants.

    A variant is the arms with equal optimizer, strategy and other fixed settings, so they differ only in
    `setting`; it is labelled by their names' common stem. An arm without the setting (x is NaN, e.g. a
    baseline) is its own variant, drawn as a reference line. `excluded` arms (at chance) are left out."""
    rows = []
    for name, arm in record.arms.items():
        if not arm.test_acc() or name in set(excluded):
            continue
        params = record.log.params(arm.run_ids)
        x = params[setting].iloc[0] if setting in params and len(params) else arm.arm.fixed.get(setting)
        others = [f"{k}={v}" for k, v in sorted(arm.arm.fixed.items()) if k != setting]
        s = summarize(list(arm.test_acc().values()))
        rows.append({"key": " ".join([arm.arm.optimizer, arm.arm.strategy, *others]), "arm": name,
                     "x": pd.to_numeric(x, errors="coerce"), "mean": s.mean,
                     # too few seeds for an interval: no error bar rather than an infinite one
                     "ci_low": s.ci_low if np.isfinite(s.ci_low) else s.mean,
                     "ci_high": s.ci_high if np.isfinite(s.ci_high) else s.mean})
    if not rows:
        return pd.DataFrame()
    points = pd.DataFrame(rows)
    points.loc[points["x"].isna(), "key"] = points["arm"]
    labels = points.groupby("key", sort=False)["arm"].agg(lambda names: _variant_label(list(names)))
    return points.assign(variant=points["key"].map(labels)).drop(columns="key")


def history_frame(record: StudyRecord, confirm: pd.DataFrame, metrics: tuple[str, ...] = ("val_acc",)) -> pd.DataFrame:
    """Per-epoch `metrics` of the counted confirmation runs, as MLflow recorded them: arm, seed, run_id, epoch,
    one column per metric."""
    return record.log.history(confirm, metrics)


def varied_text(record: StudyRecord) -> str:
    """What the confirmation seeds varied, and what they held fixed, in words."""
    varied = record.varied()
    fixed = [s for s in VARIANCE_SOURCES if s not in varied]
    said = "; ".join(VARIANCE_SOURCES[s] for s in varied) or "nothing (one seed, or no confirmation runs)"
    held = "; ".join(VARIANCE_SOURCES[s] for s in fixed)
    return f"varied {said}" + (f"; held fixed {held}" if held else "")
