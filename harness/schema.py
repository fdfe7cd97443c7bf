"""The names of everything a study writes into its stores, and the one vocabulary of how a run ended.

The report reads exactly this; nothing else in the stores is part of the contract.

MLflow experiment = the study name, artifacts under <root>/artifacts/<study>.

- parent run (one per worker that took work), `Tag.PHASE` = study: tags command, git_commit, worker, heartbeat,
  version.<package>; params n_trials, seeds, confirm_top, sampler, prune, arms, epochs, split.<split>
  (fingerprints); artifacts `STUDY_SOURCE` (the study file as it ran), `STUDY_VARIANT` (the settings that made it
  a variant, as JSON: the report rebuilds the study from these two alone), data/overview.json (dataset, classes,
  counts, sizes, fingerprints, preprocess, source_classes, target_classes, shots), data/samples.npz (<split>_x as
  N x C x H x W in [0, 1], <split>_y) and report/ (the generated report).
- pretrain runs, phase pretrain: tags checkpoint, worker; per-epoch metrics; the checkpoint file as an artifact.
- child runs, one per trial (phase search) and per confirmation seed (phase confirm): tags arm, optimizer, freeze,
  optuna_study, optuna_trial, seed, config_hash, checkpoint, checkpoint_run_id, outcome (an `Outcome`) and
  state_reason (for people); params `TrialConfig.flat()`; per-epoch metrics (step = epoch) train_loss, train_acc,
  val_loss, val_acc, lr, frozen_stages, epoch_seconds; final metrics best_val_acc, best_epoch, wall_seconds and,
  for confirm runs, test_acc, test_loss plus confusion.json ({"classes": [...], "matrix": [[...]]}).

Optuna: one study per arm, "<study>/<arm>", and one for its confirmation seeds, "<study>/<arm>/confirm", each
maximising best validation accuracy; one more, "<study>", holds what belongs to the study as a whole
(`StudyAttr.REPORT_*`). Trial user attrs are `Attr`; study user attrs `StudyAttr`.
"""

from __future__ import annotations

import re
from enum import StrEnum


class Outcome(StrEnum):
    """How a run ended. Written as the `outcome` tag of every run, and as a trial attribute where the trial's
    Optuna state alone does not tell it (FAIL: diverged, failed, interrupted or stale); control flow reads only
    this (`trial_outcome`)."""

    COMPLETE = "complete"
    PRUNED = "pruned"  # stopped early by the pruner: a result
    DIVERGED = "diverged"  # the loss left the finite numbers: a result (no model; verdict: chance), never retried
    FAILED = "failed"  # the run raised: a result, since rerunning the same configuration would repeat it
    INTERRUPTED = "interrupted"  # cut off (Ctrl-C, an error around the run): the slot runs again
    STALE = "stale"  # its worker died: the slot runs again

    @property
    def retried(self) -> bool:
        """Whether the slot runs again: the run was cut off, so it says nothing about its configuration."""
        return self in (Outcome.INTERRUPTED, Outcome.STALE)

    @property
    def mlflow_status(self) -> str:
        return {Outcome.COMPLETE: "FINISHED", Outcome.PRUNED: "FINISHED", Outcome.DIVERGED: "FAILED",
                Outcome.FAILED: "FAILED"}.get(self, "KILLED")

    @property
    def trial_state(self) -> str:
        """The Optuna `TrialState` name it is told as."""
        return {Outcome.COMPLETE: "COMPLETE", Outcome.PRUNED: "PRUNED"}.get(self, "FAIL")


def outcome_of(value: str | None) -> Outcome | None:
    """The outcome a tag or attribute holds; None where none was written (a run still going, or killed -9)."""
    try:
        return Outcome(value) if value else None
    except ValueError:
        return None


class Phase(StrEnum):
    STUDY = "study"
    PRETRAIN = "pretrain"
    SEARCH = "search"
    CONFIRM = "confirm"
    SUITE = "suite"  # a suite's own run (harness.reporting.suite_report): its report over the workloads' studies


class Tag:
    """MLflow run tags."""

    PHASE = "phase"
    ARM = "arm"
    SEARCH = "search"  # j of the arm's search "<arm>/search-j", on a study with searches > 1
    OPTIMIZER = "optimizer"
    FREEZE = "freeze"
    SEED = "seed"
    CONFIG_HASH = "config_hash"
    DEVICE = "device"
    OPTUNA_STUDY = "optuna_study"
    OPTUNA_TRIAL = "optuna_trial"
    CONFIRM_STUDY = "confirm_study"
    CONFIRM_TRIAL = "confirm_trial"
    CHECKPOINT = "checkpoint"
    CHECKPOINT_RUN_ID = "checkpoint_run_id"
    OUTCOME = "outcome"
    REASON = "state_reason"
    WORKER = "worker"  # host:pid:start:pid-space of the process that runs it
    MODEL = "model"  # the run's logged MLflow model, by name: each arm's chosen trial at verdict seed MODEL_SEED
    MODEL_ERROR = "model_error"  # ... or why it could not be logged (the run's result stands)
    HEARTBEAT = "heartbeat"  # parent runs on a tracking server: seconds since the epoch of the last beat
    COMMAND = "command"
    GIT_COMMIT = "git_commit"
    REPORT = "report"  # the parent run that holds the report as artifacts: where they are ("report/README.md")


class Attr:
    """Optuna trial user attributes."""

    SLOT = "slot"  # which planned slot the trial fills: "<i>" for search, "<trial>/<seed>" for confirmation
    WORKER = "worker"
    OUTCOME = "outcome"
    REASON = "state_reason"
    MLFLOW_RUN_ID = "mlflow_run_id"
    MLFLOW_RUN_URL = "mlflow_run_url"
    MLFLOW_PARENT_RUN_ID = "mlflow_parent_run_id"
    CONFIG_HASH = "config_hash"
    SEARCH_TRIAL = "search_trial"  # confirmation slots: the search trial they rerun
    SEED = "seed"
    TEST = "test"  # verdict seeds: {"acc": test accuracy, "classes": target classes}, for the sequential rule
    CLASSES = "classes"  # selection seeds: the target task's classes (they never see the test split)


SCHEMA_VERSION = 2  # 2: every confirmation trial holds its test accuracy and MLflow run id (the ledger's fields)


class StudyAttr:
    """Optuna study user attributes."""

    SCHEMA = "schema_version"  # on the study's own Optuna study: the SCHEMA_VERSION of the harness that made it
    CONFIG = "config"  # the arm's fixed settings as JSON, searched ones marked "searched"
    SAMPLER = "sampler"
    BUDGET = "budget"
    SELECTED_TRIAL = "selected_trial"  # the search trial the arm's confirmation chose
    CONFIRM_VAL_ACC = "confirm_val_acc"  # search trial -> mean validation accuracy over its seeds
    REPORT_RECORDS = "report_records"  # on the study's own Optuna study: the records the report was built from
    REPORT_CLAIM = "report_claim"  # ... and which worker is writing it
    PAIRING = "pairing"  # on the study's own Optuna study: the token its MLflow experiment holds too
    ANNOUNCED = "announced_batch"  # ... and the sequential rule's last batch a worker printed (printed once)
    PLANNED = "planned"  # ... and how many plans have added slots: each worker asks its drained studies again


PAIRING_TAG = "harness.pairing"  # MLflow experiment tag: the token the study's own Optuna study holds too
STUDY_SOURCE = "study/study.py"  # parent-run artifacts: the study as it ran
STUDY_VARIANT = "study/variant.json"
METRIC_NAME = "best validation accuracy"  # what every Optuna study maximises


def schema_problem(study: str, found: int | None) -> str | None:
    """Why a harness of this release cannot read stores of schema `found`, and what to do; None when it can."""
    if found == SCHEMA_VERSION:
        return None
    if found is None:
        return (f"the stores of study {study!r} were written by an older harness (no schema version; this one "
                f"reads schema {SCHEMA_VERSION}): run `python -m harness.report {study} --migrate` (with the same "
                "--root, --storage and --tracking-uri) once, then run or report as before")
    return (f"the stores of study {study!r} hold schema {found}, written by a newer harness than this one (schema "
            f"{SCHEMA_VERSION}): upgrade harness (pip install -U -e .) to read them")


def phase_filter(phase: Phase) -> str:
    """MLflow's search filter for the runs of one phase."""
    return f"tags.{Tag.PHASE} = '{phase}'"


def trial_outcome(state: str, user_attrs: dict) -> Outcome | None:
    """A finished trial's outcome: the recorded one, else what its Optuna state alone tells."""
    recorded = outcome_of(user_attrs.get(Attr.OUTCOME))
    if recorded is not None:
        return recorded
    return {"COMPLETE": Outcome.COMPLETE, "PRUNED": Outcome.PRUNED, "FAIL": Outcome.FAILED}.get(state)


def counts(trial) -> bool:
    """Whether a trial (an Optuna `FrozenTrial`) is a result that counts toward the budget: finished complete,
    pruned, diverged, or failed for a reason rerunning would repeat. One cut off (interrupted, stale) does not;
    its slot runs again."""
    if not trial.state.is_finished():
        return False
    found = trial_outcome(trial.state.name, trial.user_attrs)
    return found is not None and not found.retried


RENAMED = {"harness.plan": "harness.analysis_plan", "harness.suite": "harness.suite_spec",
           "harness.run.plan": "harness.run.slots"}  # schema 2: modules a recorded study file may import


def renamed(source: str) -> str:
    """A recorded study file with the modules schema 2 renamed imported by their new names.

    >>> renamed("from harness.plan import Difference\\nfrom harness.planner import x")
    'from harness.analysis_plan import Difference\\nfrom harness.planner import x'
    """
    for old, new in RENAMED.items():
        source = re.sub(rf"\b{re.escape(old)}\b(?![\w.])", new, source)
    return source
