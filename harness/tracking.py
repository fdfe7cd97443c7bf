"""Opening the stores: MLflow's tracking store and experiment, Optuna's storage. Shared by studies and reports.

What a study leaves in them (the report reads exactly this):

MLflow experiment = the study name, artifacts under <root>/artifacts/<study>.
- parent run (one per invocation): tags phase=study, command, git_commit, version.<package>; params n_trials,
  seeds, confirm_top, sampler, prune, arms, epochs, split.<split> (fingerprints); artifacts data/overview.json (keys
  dataset, classes, counts, sizes, fingerprints, preprocess, source_classes, target_classes, shots) and
  data/samples.npz (<split>_x as N x C x H x W in [0, 1], <split>_y); report/ (the generated report).
- pretrain runs: tags phase=pretrain, checkpoint; per-epoch metrics; the checkpoint file as an artifact.
- child runs, one per trial (phase=search) and per confirmation seed (phase=confirm): tags arm, optimizer,
  freeze, phase, optuna_study, optuna_trial, seed, config_hash, checkpoint, checkpoint_run_id,
  state (complete | pruned | failed | killed), state_reason; params TrialConfig.flat(); per-epoch metrics
  (step = epoch) train_loss, train_acc, val_loss, val_acc, lr, frozen_stages, epoch_seconds; final metrics
  best_val_acc, best_epoch, wall_seconds, and for confirm runs test_acc, test_loss plus confusion.json
  ({"classes": [...], "matrix": [[...]]}).
Optuna: one study per arm named "<study>/<arm>", maximising best validation accuracy; trial user attrs
mlflow_run_id and state_reason; study user attrs config (the arm's fixed settings as JSON) and sampler.
"""

from __future__ import annotations

import contextlib
import warnings
from pathlib import Path

import mlflow
import optuna

from harness.spec import Stores

PHASES = ("study", "pretrain", "search", "confirm")


def use_tracking(stores: Stores) -> None:
    if stores.tracking_uri is None:
        stores.root.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(stores.mlflow_uri)


def experiment_id(stores: Stores, name: str, create: bool = True) -> str | None:
    """The MLflow experiment for a study, created with its artifacts under <root>/artifacts/<name> (a tracking
    server keeps its own), shown in the UI's model-training view."""
    use_tracking(stores)
    experiment = mlflow.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    if not create:
        return None
    remote = stores.mlflow_uri.startswith(("http://", "https://"))
    location = None if remote else (stores.artifacts / name).resolve().as_uri()
    try:
        return mlflow.create_experiment(name, artifact_location=location, tags=EXPERIMENT_TAGS)
    except mlflow.exceptions.MlflowException:  # another worker created it first
        experiment = mlflow.get_experiment_by_name(name)
        if experiment is None:
            raise
        return experiment.experiment_id


EXPERIMENT_TAGS = {"mlflow.experimentKind": "custom_model_development"}  # MLflow 3 opens it on the runs


def use_wal(url: str) -> None:
    """SQLite in write-ahead-log mode: readers no longer block the one writer, so several local workers can
    share a store. The mode is a property of the file: set once, it stays."""
    if url.startswith("sqlite:///"):
        import sqlite3

        with contextlib.closing(sqlite3.connect(url.removeprefix("sqlite:///"), timeout=60)) as db:
            db.execute("PRAGMA journal_mode=WAL")


def open_storage(stores: Stores, heartbeat: bool = False) -> optuna.storages.BaseStorage | str:
    """Optuna storage: `journal:<file>`, SQLite (waiting up to a minute for another worker's write), or any RDB
    URL (PostgreSQL for many machines; with `heartbeat`, a running trial's worker proves itself alive)."""
    from harness.queue import GRACE_SECONDS, HEARTBEAT_SECONDS

    url = stores.optuna_url
    if url.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend

        path = Path(url.removeprefix("journal:"))
        path.parent.mkdir(parents=True, exist_ok=True)
        return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
    kwargs: dict = {}
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        kwargs["engine_kwargs"] = {"connect_args": {"timeout": 60}}
    elif heartbeat:
        kwargs.update(heartbeat_interval=HEARTBEAT_SECONDS, grace_period=GRACE_SECONDS)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # heartbeats: stable since 2.9
        return optuna.storages.RDBStorage(url, **kwargs)


def optuna_study_name(study: str, arm: str) -> str:
    return f"{study}/{arm}"


def start_child_run(run_name: str, tags: dict[str, str]) -> mlflow.ActiveRun:
    """A run nested under the active one, in the same experiment (fluent nesting alone picks the default one)."""
    parent = mlflow.active_run()
    experiment = parent.info.experiment_id if parent else None
    return mlflow.start_run(run_name=run_name, nested=parent is not None, experiment_id=experiment, tags=tags)
