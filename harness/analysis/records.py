"""Reading the stores for a report: one study's MLflow runs and Optuna studies -> dataclasses and pandas frames.

Nothing here writes. What the stores hold is documented in `harness.schema`; `harness.reporting.markdown` writes the
markdown and `harness.analysis.findings` draws the conclusions.
"""

from __future__ import annotations

import ast
import functools
import json
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import optuna
import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from optuna.distributions import CategoricalDistribution
from optuna.trial import FrozenTrial, TrialState

from harness.inference.stats import summarize
from harness.schema import Attr, Outcome, Phase, StudyAttr, Tag, counts, outcome_of
from harness.spec import VARIANCE_SOURCES, Arm, StudySpec, is_verdict_seed
from harness.stores import Stores, confirm_study_name, experiment_id, open_storage, optuna_study_name

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)  # RUNNING trials are ignored
COLUMNS = [  # the parts of the schema the report reads; absent ones become empty columns
    "tags.phase", "tags.arm", "tags.seed", "tags.optuna_trial", "tags.outcome", "tags.state_reason",
    "tags.checkpoint", "tags.checkpoint_run_id", "tags.model", "params.dataset", "params.epochs", "params.lr",
    "params.opt.momentum", "params.seed", "params.partition_seed", "params.pretrain_seed", "params.target_classes",
    "metrics.best_val_acc", "metrics.test_acc", "metrics.wall_seconds",
]
CHILD_PHASES = [Phase.SEARCH.value, Phase.CONFIRM.value]
VARIED_BY = {"seed": "params.seed", "partition": "params.partition_seed", "pretrain": "params.pretrain_seed"}


def diverged(outcome: Any) -> bool:
    """Whether an `outcome` tag's value says the run diverged."""
    return outcome_of(outcome if isinstance(outcome, str) else None) is Outcome.DIVERGED


@dataclass
class ArmRecord:
    """One arm as the stores hold it: its Optuna study, finished trials and counted confirmation runs."""

    arm: Arm
    study: optuna.Study | None
    trials: list[FrozenTrial]
    best: FrozenTrial | None
    # counted confirm runs of the chosen trial, one per seed: FINISHED ones, and diverged ones at test accuracy 0
    # (they left no model; selection counts them at validation accuracy 0 too)
    confirm: pd.DataFrame
    uncounted_failures: int = 0  # confirm runs that crashed or were killed: rerun on resume, not scored
    confirm_trials: list[FrozenTrial] = field(default_factory=list)  # its confirmation study: the sequential rule's

    def test_acc(self) -> dict[int, float]:
        return {int(s): float(v) for s, v in zip(self.confirm["tags.seed"], self.confirm["metrics.test_acc"])}

    @property
    def diverged(self) -> int:
        return int(self.confirm["diverged"].sum()) if "diverged" in self.confirm else 0

    def count(self, state: TrialState) -> int:
        return sum(t.state == state for t in self.trials)


@dataclass
class StudyRecord:
    """Everything a report shows, read from MLflow and Optuna."""

    spec: StudySpec
    stores: Stores
    experiment_id: str
    runs: pd.DataFrame  # every run of the experiment (mlflow.search_runs columns), newest first
    arms: dict[str, ArmRecord]
    overview: dict[str, Any]
    samples: dict[str, np.ndarray]

    @functools.cached_property
    def parents(self) -> pd.DataFrame:  # read for every parent-run tag a report shows: filtered once
        return self.runs[self.runs["tags.phase"] == Phase.STUDY]

    def setting(self, key: str) -> str:
        """A study setting as the newest invocation ran it (parent-run param; CLI overrides included),
        else as the study file declares it."""
        values = self.parents.get(f"params.{key}", pd.Series(dtype=object)).dropna()
        return str(values.iloc[0]) if len(values) else str(getattr(self.spec, key))

    @property
    def sampler(self) -> str:
        """The sampler the arms' Optuna studies record, else the recorded setting."""
        stored = [a.study.user_attrs[StudyAttr.SAMPLER] for a in self.arms.values()
                  if a.study and StudyAttr.SAMPLER in a.study.user_attrs]
        return stored[0] if stored else self.setting("sampler")

    def children(self, arm: str | None = None, phase: str | None = None) -> pd.DataFrame:
        """Trial and confirmation runs, of one arm and one phase if given."""
        runs = self.runs[self.runs["tags.phase"].isin(CHILD_PHASES if phase is None else [phase])]
        return runs if arm is None else runs[runs["tags.arm"] == arm]

    @property
    def n_classes(self) -> int | None:
        """Target classes: from the data overview, else the runs' target_classes param."""
        if self.overview.get("classes"):
            return len(self.overview["classes"])
        for text in self.children()["params.target_classes"].dropna():
            try:
                return len(ast.literal_eval(str(text)))
            except (ValueError, SyntaxError, TypeError):
                continue
        return None

    def varied(self) -> list[str]:
        """The variance sources (harness.spec.VARIANCE_SOURCES) that took more than one value across the
        counted confirmation runs."""
        counted = pd.concat([a.confirm for a in self.arms.values()]) if self.arms else pd.DataFrame()
        return [source for source, column in VARIED_BY.items()
                if column in counted and counted[column].dropna().nunique() > 1]


# --- reading the stores ----------------------------------------------------------------------------


def artifact(client: MlflowClient, run_ids: Iterable[str], path: str) -> Any:
    """The artifact at `path` of the first run that has it: a dict (.json), arrays (.npz), else None."""
    for run_id in run_ids:
        with tempfile.TemporaryDirectory() as tmp:  # quiet: stores.use_tracking
            try:
                local = Path(client.download_artifacts(run_id, path, tmp))
            except (MlflowException, OSError):  # not logged by this run: the next one may have it
                continue
            if local.suffix == ".npz":
                with np.load(local) as npz:
                    return {k: npz[k] for k in npz.files}
            return json.loads(local.read_text())
    return None


def _best(study: optuna.Study) -> FrozenTrial | None:
    """The trial the study chose after its confirmation runs (best mean validation accuracy over seeds), else
    the search's best while confirmation has not run."""
    selected = study.user_attrs.get(StudyAttr.SELECTED_TRIAL)
    if selected is not None:
        return next(t for t in study.get_trials(deepcopy=False) if t.number == selected)
    try:
        return study.best_trial
    except ValueError:  # no complete trial yet
        return None


def _counted(mine: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """One confirm run per seed, as selection counts them: a finished run wins; else a diverged one scores 0."""
    reasons = mine[f"tags.{Tag.OUTCOME}"]
    finished = mine[mine["status"] == "FINISHED"].dropna(subset=["metrics.test_acc", "tags.seed"])
    blew_up = mine[(mine["status"] == "FAILED") & reasons.map(diverged)].dropna(subset=["tags.seed"])
    blew_up = blew_up.assign(**{"metrics.test_acc": 0.0})
    counted = pd.concat([finished.assign(diverged=False), blew_up.assign(diverged=True)]).drop_duplicates("tags.seed")
    other = mine[(mine["status"] != "FINISHED") & ~reasons.map(diverged)]
    return counted, int(other["tags.seed"].nunique())


def _load_arm(spec: StudySpec, arm: Arm, storage: Any, runs: pd.DataFrame) -> ArmRecord:
    empty = runs.iloc[0:0].assign(diverged=pd.Series(dtype=bool))
    try:
        study = optuna.load_study(study_name=optuna_study_name(spec.name, arm.name), storage=storage)
    except KeyError:  # this arm has not started
        return ArmRecord(arm, None, [], None, empty)
    best = _best(study)
    # the budget's trials: one cut off (interrupted, stale worker) was run again and is not a result
    trials = [t for t in study.get_trials(deepcopy=False) if t.state in FINISHED and counts(t)]
    if best is None:
        return ArmRecord(arm, study, trials, None, empty)
    confirm = runs[(runs["tags.phase"] == Phase.CONFIRM) & (runs["tags.arm"] == arm.name)]
    confirm = confirm[confirm["tags.optuna_trial"] == str(best.number)]
    # the verdict seeds only: the selection seeds chose this trial, so their scores must not judge it
    verdict = pd.to_numeric(confirm["tags.seed"], errors="coerce").map(lambda s: bool(np.isfinite(s)) and is_verdict_seed(s))
    confirm, failures = _counted(confirm[verdict.astype(bool)])
    try:
        confirm_trials = optuna.load_study(study_name=confirm_study_name(spec.name, arm.name),
                                           storage=storage).get_trials(deepcopy=False)
    except KeyError:
        confirm_trials = []
    return ArmRecord(arm, study, trials, best, confirm, failures, confirm_trials)


def load_record(spec: StudySpec, stores: Stores) -> StudyRecord:
    """Read one study's MLflow runs and Optuna studies; ValueError when the stores hold none."""
    eid = experiment_id(stores, spec.name, create=False)
    newest_first = ["attributes.start_time DESC"]
    runs = pd.DataFrame() if eid is None else mlflow.search_runs([eid], order_by=newest_first)
    if runs.empty:
        raise ValueError(f"no MLflow runs of study {spec.name!r} in {stores.mlflow_uri}; "
                         f"run `python -m harness.study {spec.name}` first")
    runs = runs.reindex(columns=list(runs.columns) + [c for c in COLUMNS if c not in runs.columns])
    storage = open_storage(stores)
    arms = {arm.name: _load_arm(spec, arm, storage, runs) for arm in spec.arms}
    client = MlflowClient(stores.mlflow_uri)
    parents = runs.loc[runs["tags.phase"] == Phase.STUDY, "run_id"]
    overview = artifact(client, parents, "data/overview.json") or {}
    samples = artifact(client, parents, "data/samples.npz") or {}
    return StudyRecord(spec, stores, eid, runs, arms, overview, samples)


# --- frames ----------------------------------------------------------------------------------------


def budget_value(t: FrozenTrial) -> float:
    """What a trial the budget paid for scored: a complete trial its value, a pruned one the best validation
    accuracy it reached before pruning, a diverged one 0 (no model); nan for a crash (redone, not paid for)."""
    if t.state == TrialState.COMPLETE:
        return float(t.value)
    if t.state == TrialState.PRUNED:
        return max(t.intermediate_values.values(), default=0.0)
    return 0.0 if diverged(t.user_attrs.get(Attr.OUTCOME)) else np.nan


def trial_frame(record: StudyRecord) -> pd.DataFrame:
    """One row per finished search trial: Optuna's state joined with its MLflow run's params and metrics."""
    rows = []
    for name, arm in record.arms.items():
        runs = record.children(name, "search").drop_duplicates("tags.optuna_trial")
        runs = runs.set_index("tags.optuna_trial")
        for t in arm.trials:
            run = runs.loc[str(t.number)] if str(t.number) in runs.index else pd.Series(dtype=object)
            rows.append({
                "arm": name, "number": t.number, "state": t.state.name, "run_id": run.get("run_id"),
                "lr": run.get("params.lr"), "momentum": run.get("params.opt.momentum"),
                "best_val_acc": run.get("metrics.best_val_acc"), "wall_seconds": run.get("metrics.wall_seconds"),
                "budget_value": budget_value(t), "epochs_run": len(t.intermediate_values) or np.nan,
            })
    numeric = ["lr", "momentum", "best_val_acc", "wall_seconds", "budget_value", "epochs_run"]
    frame = pd.DataFrame(rows, columns=["arm", "number", "state", "run_id", *numeric])
    for column in numeric:
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    scored = frame["state"].isin(["COMPLETE", "PRUNED"])  # a pruned run logs no best_val_acc: Optuna has it
    frame.loc[scored, "best_val_acc"] = frame.loc[scored, "best_val_acc"].fillna(frame.loc[scored, "budget_value"])
    frame["momentum"] = frame["momentum"].fillna(0.0)  # SGD without a momentum param runs with 0 (optim.py)
    frame["effective_lr"] = frame["lr"] / (1 - frame["momentum"])
    return frame


def param_frame(record: StudyRecord) -> pd.DataFrame:
    """One row per (scored search trial, searched parameter): arm, number, state, param, value, log, val_acc.

    val_acc is what the trial reached (pruned: before pruning); value is numeric, categoricals as strings."""
    rows = []
    for name, arm in record.arms.items():
        for t in arm.trials:
            score = budget_value(t) if t.state != TrialState.FAIL else np.nan
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
    """One row per counted confirmation run: arm, seed, run id, test accuracy, diverged."""
    frames = [arm.confirm.assign(arm=name) for name, arm in record.arms.items()]
    frame = pd.concat(frames) if frames else pd.DataFrame(columns=["tags.seed", "metrics.test_acc", "run_id"])
    frame = frame.rename(columns={"tags.seed": "seed", "metrics.test_acc": "test_acc"})
    keep = ["arm", "seed", "run_id", "test_acc", "diverged"]
    return frame.reindex(columns=keep + [c for c in frame.columns if c.startswith("params.")])


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
        if arm.confirm.empty or name in set(excluded):
            continue
        x = arm.confirm.get(f"params.{setting}", pd.Series([arm.arm.fixed.get(setting)])).iloc[0]
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
    client = MlflowClient(record.stores.mlflow_uri)
    rows: dict[tuple, dict] = {}
    for arm, seed, run_id in confirm[["arm", "seed", "run_id"]].itertuples(index=False):
        for metric in metrics:
            for m in client.get_metric_history(run_id, metric):
                rows.setdefault((run_id, m.step), {"arm": arm, "seed": seed, "run_id": run_id,
                                                   "epoch": m.step})[metric] = m.value
    frame = pd.DataFrame(list(rows.values()), columns=["arm", "seed", "run_id", "epoch", *metrics])
    return frame.sort_values(["run_id", "epoch"], ignore_index=True)


def varied_text(record: StudyRecord) -> str:
    """What the confirmation seeds varied, and what they held fixed, in words."""
    varied = record.varied()
    fixed = [s for s in VARIANCE_SOURCES if s not in varied]
    said = "; ".join(VARIANCE_SOURCES[s] for s in varied) or "nothing (one seed, or no confirmation runs)"
    held = "; ".join(VARIANCE_SOURCES[s] for s in fixed)
    return f"varied {said}" + (f"; held fixed {held}" if held else "")
