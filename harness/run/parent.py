"""A worker's parent MLflow run: started when it takes its first slot, with the study as it ran (the file's
source and the variant's settings, so a report needs no study file), provenance and the data overview; its
heartbeat on a tracking server; and closing the runs of workers that died."""

from __future__ import annotations

import time
from dataclasses import dataclass

import mlflow
from optuna.trial import FrozenTrial

from harness.run import queue
from harness.run.tracking import end_run, log_data_overview, run_tags, worker_gone
from harness.schema import STUDY_SOURCE, STUDY_VARIANT, Attr, Outcome, Tag
from harness.spec import StudySpec
from harness.stores import Stores


def variant_record(spec: StudySpec) -> dict:
    """The settings that make `spec` what it is, beyond its file: `study_from_source(file).variant(**changes)`."""
    return {"name": spec.name, "file": spec.file or spec.name, "changes": dict(spec.changes)}


@dataclass
class ParentRun:
    spec: StudySpec
    stores: Stores
    experiment_id: str
    command: str
    run_id: str | None = None

    def start(self, task_of) -> None:
        """Start it once (`task_of(cfg)` builds the data the overview shows)."""
        if self.run_id is not None:
            return
        tags = {**run_tags(self.command), Tag.WORKER: queue.worker_id(), Tag.HEARTBEAT: str(int(time.time()))}
        run = mlflow.start_run(experiment_id=self.experiment_id, run_name=f"worker {queue.worker_id().split(':')[1]} "
                               f"{self.spec.name}", tags=tags)
        self.run_id = run.info.run_id
        spec = self.spec
        mlflow.log_params({**spec.settings(), "arms": ",".join(a.name for a in spec.arms), "epochs": spec.base.epochs})
        mlflow.log_text(spec.source, STUDY_SOURCE)
        mlflow.log_dict(variant_record(spec), STUDY_VARIANT)
        cfg = spec.arms[0].config(spec.base)
        log_data_overview(task_of(cfg), cfg)

    def beat(self) -> None:
        if self.run_id and self.stores.remote_tracking:  # locally the pid tells
            mlflow.MlflowClient().set_tag(self.run_id, Tag.HEARTBEAT, str(int(time.time())))

    def end(self, status: str) -> None:
        """End it FINISHED, FAILED or KILLED: the parent itself, never a child run left active above it."""
        if self.run_id is None:
            return
        while (active := mlflow.active_run()) is not None and active.info.run_id != self.run_id:
            # a child cut off before its own handling could end it (Ctrl-C just as it opened)
            end_run(mlflow.MlflowClient(), active.info.run_id, Outcome.INTERRUPTED, "interrupted (Ctrl-C)")
            mlflow.end_run(Outcome.INTERRUPTED.mlflow_status)
        if mlflow.active_run() is not None:
            # written first, then taken off MLflow's stack (whose end_run pops before it writes): a write that
            # fails (a store locked or full) leaves the run active, for the caller to try again
            mlflow.MlflowClient().set_terminated(self.run_id, status)
            mlflow.end_run(status)

    def close_own_runs(self, outcome: Outcome, reason: str) -> None:
        """Every run of this worker still RUNNING ends KILLED with `reason`: a Ctrl-C can land between a run
        leaving MLflow's stack of active runs and its end being written."""
        client = mlflow.MlflowClient()
        for run in client.search_runs([self.experiment_id], f"attributes.status = 'RUNNING' and "
                                      f"tags.{Tag.WORKER} = '{queue.worker_id()}'"):
            end_run(client, run.info.run_id, outcome, reason)

    def close_stale(self, trial: FrozenTrial) -> None:
        """A stale trial's MLflow run, and its worker's parent run, end KILLED with the reason."""
        client = mlflow.MlflowClient()
        for key in (Attr.MLFLOW_RUN_ID, Attr.MLFLOW_PARENT_RUN_ID):
            run_id = trial.user_attrs.get(key)
            if run_id and client.get_run(run_id).info.status == "RUNNING":
                end_run(client, run_id, Outcome.STALE, trial.user_attrs.get(Attr.REASON, "stale"))

    def close_dead_runs(self) -> None:
        """Runs of workers that died (between slots, during pretraining) end KILLED:
        a parent run whose worker's pid is gone or whose heartbeat stopped, any run whose worker's pid is gone."""
        client = mlflow.MlflowClient()
        running = client.search_runs([self.experiment_id], "attributes.status = 'RUNNING'")
        dead = set()
        for run in running:  # parents first: on another machine only a parent's heartbeat tells
            tags = run.data.tags
            worker = tags.get(Tag.WORKER, "")
            if run.info.run_id != self.run_id and worker_gone(run, self.stores.remote_tracking):
                end_run(client, run.info.run_id, Outcome.STALE, f"worker {worker} stopped without finishing")
                dead.add(run.info.run_id)
        alive = {r.info.run_id for r in running} - dead
        for run in running:  # then runs whose parent is over (a pretraining its worker died in): no slot owns them
            parent = run.data.tags.get("mlflow.parentRunId")
            if run.info.run_id in alive and parent and parent not in alive:
                worker = run.data.tags.get(Tag.WORKER, "?")
                end_run(client, run.info.run_id, Outcome.STALE, f"worker {worker} stopped without finishing "
                        "(its parent run is over)")
