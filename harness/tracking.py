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

import time
from collections.abc import Mapping
from typing import Any

import mlflow
import optuna
from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

from harness.spec import Stores

PHASES = ("study", "pretrain", "search", "confirm")
FLUSH_SECONDS = 5.0  # a run's buffered metrics reach the store at most this often (and when the run ends)


def use_tracking(stores: Stores) -> None:
    if stores.tracking_uri is None:
        stores.root.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(stores.mlflow_uri)


def experiment_id(stores: Stores, name: str, create: bool = True) -> str | None:
    """The MLflow experiment for a study, created with its artifacts under <root>/artifacts/<name>."""
    use_tracking(stores)
    experiment = mlflow.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    if not create:
        return None
    location = (stores.artifacts / name).resolve().as_uri()
    return mlflow.create_experiment(name, artifact_location=location)


def open_storage(stores: Stores) -> optuna.storages.BaseStorage | str:
    """Optuna storage: an RDB URL as is; `journal:<file>` for many workers without a database server."""
    url = stores.optuna_url
    if url.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend

        return optuna.storages.JournalStorage(JournalFileBackend(url.removeprefix("journal:")))
    if url.startswith("sqlite:///") and stores.storage is None:
        stores.root.mkdir(parents=True, exist_ok=True)
    return url


def optuna_study_name(study: str, arm: str) -> str:
    return f"{study}/{arm}"


def start_child_run(run_name: str, tags: dict[str, str]) -> mlflow.ActiveRun:
    """A run nested under the active one, in the same experiment (fluent nesting alone picks the default one)."""
    parent = mlflow.active_run()
    experiment = parent.info.experiment_id if parent else None
    return mlflow.start_run(run_name=run_name, nested=parent is not None, experiment_id=experiment, tags=tags)


class MetricBuffer:
    """A run's metrics, params and tags, written with one `log_batch` at most every `flush_seconds`.

    One SQLite transaction costs about 10 ms: a run of fast epochs pays one write at its end instead of one
    per epoch, while a run of slow epochs still shows a live curve. Every step is kept; nothing is sampled.
    """

    def __init__(self, run_id: str, flush_seconds: float | None = None):
        self.run_id = run_id
        self.flush_seconds = FLUSH_SECONDS if flush_seconds is None else flush_seconds
        self.client = MlflowClient()
        self.metrics: list[Metric] = []
        self.params: list[Param] = []
        self.tags: list[RunTag] = []
        self.last_flush = time.monotonic()

    def log_metrics(self, metrics: Mapping[str, float], step: int = 0) -> None:
        now = int(time.time() * 1000)
        self.metrics += [Metric(key, float(value), now, step) for key, value in metrics.items()]
        if time.monotonic() - self.last_flush >= self.flush_seconds:
            self.flush()

    def log_params(self, params: Mapping[str, Any]) -> None:
        self.params += [Param(key, str(value)) for key, value in params.items()]  # as mlflow.log_params does

    def set_tags(self, tags: Mapping[str, str]) -> None:
        self.tags += [RunTag(key, str(value)) for key, value in tags.items()]

    def flush(self) -> None:
        """Write everything buffered (log_batch splits it under MLflow's per-request limits)."""
        if self.metrics or self.params or self.tags:
            self.client.log_batch(self.run_id, metrics=self.metrics, params=self.params, tags=self.tags)
        self.metrics, self.params, self.tags = [], [], []
        self.last_flush = time.monotonic()
