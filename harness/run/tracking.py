"""MLflow as a worker writes it: child runs under the worker's parent run, buffered metrics, the parent run's
content (its tags, the study as it ran, the data overview), and closing a dead worker's runs.

What is written, by name, is `harness.schema`.
"""

from __future__ import annotations

import dataclasses
import platform
import subprocess
import tempfile
import time
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

import mlflow
from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

from harness.schema import Outcome, Phase, Tag
from harness.spec import STUDIES_DIR, TrialConfig

FLUSH_SECONDS = 5.0  # a run's buffered metrics reach the store at most this often (and when the run ends)
PACKAGES = ("torch", "torchvision", "optuna", "mlflow", "numpy", "pandas", "scipy", "seaborn", "scikit-learn")


def start_child_run(run_name: str, tags: dict[str, str]) -> mlflow.ActiveRun:
    """A run nested under the active one, in the same experiment (fluent nesting alone picks the default one)."""
    from harness.run.queue import worker_id

    parent = mlflow.active_run()
    experiment = parent.info.experiment_id if parent else None
    tags = {Tag.WORKER: worker_id(), **tags}  # who runs it: a run whose worker died is closed by the next one
    return mlflow.start_run(run_name=run_name, nested=parent is not None, experiment_id=experiment, tags=tags)


def worker_gone(run: Any, remote: bool) -> bool:
    """Whether the worker of MLflow `run` is gone: its pid on this machine is, or (on a tracking server, where
    another machine's pid cannot be asked) the run is a worker's parent run whose heartbeat stopped."""
    from harness.run.queue import worker_dead
    from harness.stores import GRACE_SECONDS

    tags = run.data.tags
    if worker_dead(tags.get(Tag.WORKER, "")):
        return True
    beats = remote and tags.get(Tag.PHASE) == Phase.STUDY  # only parent runs beat
    return beats and time.time() - float(tags.get(Tag.HEARTBEAT, "0")) > GRACE_SECONDS


def end_run(client: MlflowClient, run_id: str, outcome: Outcome, reason: str) -> None:
    """End a run with its outcome and the reason, as every run ends, whoever closes it."""
    client.set_tag(run_id, Tag.OUTCOME, outcome.value)
    client.set_tag(run_id, Tag.REASON, reason[:500])
    client.set_terminated(run_id, outcome.mlflow_status)


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


def run_tags(command: str) -> dict[str, str]:
    """The parent run's provenance: the command, the commit, the versions of what ran it."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=STUDIES_DIR.parent, capture_output=True,
                                text=True, timeout=10, check=False).stdout.strip() or "unknown"
    except OSError:
        commit = "unknown"
    tags = {Tag.PHASE: Phase.STUDY.value, Tag.COMMAND: command, Tag.GIT_COMMIT: commit,
            "version.python": platform.python_version()}
    for package in PACKAGES:
        try:
            tags[f"version.{package}"] = metadata.version(package)
        except metadata.PackageNotFoundError:
            tags[f"version.{package}"] = "not installed"
    return tags


def log_data_overview(task: Any, cfg: TrialConfig) -> None:
    """The 'import, split, visualise the dataset' steps, as parent-run artifacts the report reads."""
    import numpy as np

    from harness.learn.data import class_counts, sample_images

    overview = {
        "dataset": task.dataset, "classes": task.classes, "counts": class_counts(task),
        "sizes": {name: len(s) for name, s in task.splits().items()}, "fingerprints": task.fingerprints(),
        "preprocess": dataclasses.asdict(task.pre), "source_dataset": cfg.source_dataset or cfg.dataset,
        "source_classes": cfg.source_classes,
        "target_classes": cfg.target_classes, "shots": cfg.shots,
    }
    mlflow.log_dict(overview, "data/overview.json")
    mlflow.log_params({f"split.{k}": v for k, v in task.fingerprints().items()})
    arrays = {}
    for name, (images, labels) in sample_images(task).items():
        arrays[f"{name}_x"], arrays[f"{name}_y"] = images, labels
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "samples.npz"
        np.savez_compressed(path, **arrays)
        mlflow.log_artifact(str(path), artifact_path="data")
