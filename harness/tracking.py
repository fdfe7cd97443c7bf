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
import os
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
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

        path = Path(url.removeprefix("sqlite:///").split("?")[0])
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.closing(sqlite3.connect(path, timeout=60)) as db:
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
    from harness.queue import worker_id

    parent = mlflow.active_run()
    experiment = parent.info.experiment_id if parent else None
    tags = {"worker": worker_id(), **tags}  # who runs it: a run whose worker died is closed by the next one
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


STORAGE_SCHEMES = ("sqlite:///FILE", "journal:FILE", "postgresql://USER@HOST:PORT/DB")
TRACKING_SCHEMES = ("sqlite:///FILE", "http://HOST:PORT")


def check_stores(stores: Stores) -> None:
    """Fail before anything is written when a store cannot be used: a --root below a file, an unknown URL,
    an unwritable or corrupted SQLite file, a server that does not answer. Each message names the store."""
    for folder in (stores.root, *stores.root.parents):
        if folder.exists() and not folder.is_dir():
            raise ValueError(f"--root {stores.root}: {folder} is a file, not a folder; choose another --root")
    url = stores.optuna_url
    if url.startswith(("sqlite:///", "journal:")):
        _check_file(Path(url.split(":", 1)[1].removeprefix("///")), "Optuna storage", url.startswith("sqlite"))
    elif url.startswith("postgresql"):
        _check_postgres(url)
    else:
        raise ValueError(f"--storage {url!r}: unknown kind of storage; choices: {', '.join(STORAGE_SCHEMES)}")
    uri = stores.mlflow_uri
    if uri.startswith("sqlite:///"):
        _check_file(Path(uri.removeprefix("sqlite:///")), "MLflow store", True)
    elif uri.startswith(("http://", "https://")):
        _check_server(uri)
    else:
        raise ValueError(f"--tracking-uri {uri!r}: unknown kind of tracking store; choices: "
                         f"{', '.join(TRACKING_SCHEMES)}")


def _check_file(path: Path, what: str, sqlite: bool) -> None:
    existing = next((p for p in (path.parent, *path.parent.parents) if p.exists()), Path("/"))
    if not existing.is_dir():
        raise ValueError(f"{what} {path}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise ValueError(f"{what} {path}: not writable here; choose another --root or fix the permissions")
    if sqlite and path.is_file() and path.stat().st_size:
        import sqlite3

        try:
            with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
                db.execute("SELECT name FROM sqlite_master").fetchall()
        except sqlite3.DatabaseError as error:
            raise ValueError(f"{what} {path} is not a readable SQLite database ({error}); move it away to "
                             "start afresh, or use another --root") from None


def _check_postgres(url: str) -> None:
    import sqlalchemy

    try:
        engine = sqlalchemy.create_engine(url, connect_args={"connect_timeout": 10})
        with engine.connect():
            pass
        engine.dispose()
    except Exception as error:  # noqa: BLE001 - the driver's many errors all mean: not usable
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(f"--storage {url}: cannot use this PostgreSQL database ({first}); is the server "
                         "running, and does the database exist (createdb)?") from None


def _check_server(uri: str) -> None:
    import urllib.request

    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=10) as response:
            response.read()
    except OSError as error:
        raise ValueError(f"--tracking-uri {uri}: no MLflow server answers there ({error}); start one with "
                         "`mlflow server` (see the README) or check the address") from None
