"""Source checkpoints as a study shares them: pretrained once per configuration, as an MLflow run of its own
(phase pretrain, the file as an artifact), fetched from that run by workers on other machines, and pretrained by
one worker while the others wait for it."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import mlflow

from harness.learn import pretrain
from harness.learn.pretrain import (
    FINE_TUNING_ONLY,
    Checkpoint,
    checkpoint_key,
    find_checkpoint,
    pretrain_config,
    write_meta,
)
from harness.run import queue
from harness.run.outage import PATIENCE_SECONDS, disk_full, is_outage
from harness.run.outcomes import outcome_for
from harness.run.slots import searched_fields
from harness.run.tracking import MetricBuffer, start_child_run, worker_gone
from harness.schema import Phase, Tag
from harness.spec import Arm, StudySpec, TrialConfig, confirmation_config, selection_seeds, weights_kind
from harness.stores import Stores


class _MlflowRecord:
    """Metrics buffered as a trial's are (one write per few seconds, not one per epoch); the file at once."""

    def __init__(self, run_id: str):
        self.run_id = run_id
        self.buffer = MetricBuffer(run_id)

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.buffer.log_metrics(metrics, step=step or 0)

    def log_checkpoint(self, path: Path) -> None:
        self.buffer.flush()
        mlflow.log_artifact(str(path), artifact_path="checkpoint")


@contextlib.contextmanager
def mlflow_record(key: str, pcfg: TrialConfig) -> Iterator[_MlflowRecord]:
    """A pretraining as a nested MLflow run, ended as a trial's run is: with its outcome and reason, so a Ctrl-C
    leaves it KILLED and interrupted (MLflow's own `with` would end it FAILED, saying nothing)."""
    tags = {Tag.PHASE: Phase.PRETRAIN.value, Tag.CHECKPOINT: key}
    with start_child_run(f"pretrain seed {pcfg.seed} {key}", tags) as run:
        record = _MlflowRecord(run.info.run_id)
        raised: BaseException | None = None
        try:
            record.buffer.log_params(pcfg.flat())
            record.buffer.flush()  # what it trains, at once
            yield record
        except BaseException as error:
            raised = error
            raise
        finally:
            outcome, reason = outcome_for(raised)
            try:
                record.buffer.set_tags({Tag.OUTCOME: outcome.value, Tag.REASON: reason[:500]})
                record.buffer.flush()  # the curve and how it ended, however it ends
            finally:
                active = mlflow.active_run()
                if raised is not None and active is not None and active.info.run_id == run.info.run_id:
                    mlflow.end_run(outcome.mlflow_status)  # before the `with` ends it FAILED


def source_checkpoint(cfg: TrialConfig, folder: Path) -> Checkpoint:
    """The cached checkpoint for `cfg`'s source task, pretraining it as a logged MLflow run if missing."""
    return pretrain.source_checkpoint(cfg, folder, mlflow_record)


def fetch_checkpoint(cfg: TrialConfig, stores: Stores, eid: str) -> Path | None:
    """Another machine's pretraining of the same source, downloaded from its MLflow run: workers on many
    machines share one checkpoint without a shared disk."""
    key = checkpoint_key(cfg)
    found = find_checkpoint(cfg, stores.checkpoints)
    if found is not None:
        return found.path
    runs = mlflow.MlflowClient().search_runs(
        [eid], f"tags.{Tag.PHASE} = '{Phase.PRETRAIN}' and tags.{Tag.CHECKPOINT} = '{key}' "
        "and attributes.status = 'FINISHED'")
    if not runs:
        return None
    stores.checkpoints.mkdir(parents=True, exist_ok=True)
    path = Path(mlflow.artifacts.download_artifacts(run_id=runs[0].info.run_id,
                                                    artifact_path=f"checkpoint/{key}.pt",
                                                    dst_path=str(stores.checkpoints / f".{key}")))
    path.replace(stores.checkpoints / f"{key}.pt")
    write_meta(stores.checkpoints, key, runs[0].info.run_id, pretrain_config(cfg))
    return stores.checkpoints / f"{key}.pt"


def pretraining_elsewhere(key: str, eid: str, remote: bool) -> str | None:
    """The worker of a live pretraining of `key` under way in another process, if any. A PostgreSQL restart
    drops the advisory lock its pretrainer held without telling it, so the lock alone would let a second worker
    pretrain the same checkpoint; its RUNNING MLflow run still tells. Alive: its pid is here (one machine), or
    its parent run beats (a tracking server: another machine's pid cannot be asked)."""
    client = mlflow.MlflowClient()
    for run in client.search_runs([eid], f"attributes.status = 'RUNNING' and tags.{Tag.PHASE} = "
                                  f"'{Phase.PRETRAIN}' and tags.{Tag.CHECKPOINT} = '{key}'"):
        worker = run.data.tags.get(Tag.WORKER, "")
        if worker == queue.worker_id() or worker_gone(run, remote):
            continue  # our own, cut off earlier in this process; or a dead worker's, closed by the next recovery
        parent_id = run.data.tags.get("mlflow.parentRunId")
        parent = client.get_run(parent_id) if remote and parent_id else None
        if remote and (parent is None or parent.info.status != "RUNNING" or worker_gone(parent, remote)):
            continue
        return worker
    return None


def _missing(cfg: TrialConfig, stores: Stores) -> bool:
    """Whether `cfg` starts from a source checkpoint that is not (or no longer readably) on this disk."""
    return weights_kind(cfg.weights) == "source" and find_checkpoint(cfg, stores.checkpoints) is None


def ensure_source(cfg: TrialConfig, stores: Stores, eid: str, poll: float = 1.0,
                  meanwhile: Callable[[], None] | None = None) -> None:
    """The source checkpoint a run needs, pretrained by one worker while the others wait for it (under the
    checkpoint's own lock, so two different sources pretrain side by side; a pretraining whose lock a database
    restart took away is still waited for, by its run). Found being pretrained by another worker, `meanwhile`
    runs first, once: this core's wait put to use (`pretrain_ahead`)."""
    if not _missing(cfg, stores):
        return
    key, told, since = checkpoint_key(cfg), False, time.monotonic()
    while True:
        with queue.store_lock(stores.optuna_url, stores.root, f"pretrain-{key}", wait=meanwhile is None) as held:
            if held:
                if fetch_checkpoint(cfg, stores, eid) is not None:
                    return
                other = pretraining_elsewhere(key, eid, stores.remote_tracking)
                if other is None or time.monotonic() - since > PATIENCE_SECONDS:  # a run its live worker left
                    source_checkpoint(cfg, stores.checkpoints)
                    return
        if not held:  # another worker pretrains it: this wait is put to use, once
            put_to_use, meanwhile = meanwhile, None
            put_to_use()
            since = time.monotonic()  # the patience is for the other's pretraining, not for this one's
            continue
        if not told:
            print(f"waiting for worker {other} to finish pretraining {key} (its lock went with a database restart)",
                  flush=True)
            told = True
        time.sleep(poll)


def pretrain_ahead(cfgs: Iterable[TrialConfig], stores: Stores, eid: str) -> None:
    """Pretrain the first of `cfgs`' source checkpoints that is neither there nor under way: what a worker does
    while another pretrains the one it needs now. At a study's start both workers need seed 0's checkpoint, and
    the second waited 0.7 s doing nothing; now it pretrains a seed the confirmations will need."""
    for cfg in filter(lambda c: _missing(c, stores), cfgs):
        key = checkpoint_key(cfg)
        with queue.store_lock(stores.optuna_url, stores.root, f"pretrain-{key}", wait=False) as held:
            if (held and fetch_checkpoint(cfg, stores, eid) is None
                    and pretraining_elsewhere(key, eid, stores.remote_tracking) is None):
                try:
                    source_checkpoint(cfg, stores.checkpoints)
                except Exception as error:  # optional work: the run that needs this source meets the error itself
                    if is_outage(error) or disk_full(error):
                        raise
                    print(f"warning: pretraining {key} ahead failed ({type(error).__name__}: {error}); the run "
                          "that needs it pretrains it", file=sys.stderr, flush=True)
                return


def sure_sources(spec: StudySpec, arm: Arm, cfg: TrialConfig) -> list[TrialConfig]:
    """The configs of the source checkpoints `arm` will surely need beyond `cfg`'s own: its selection seeds'
    (when it has two trials to choose from) and its first batch of verdict seeds' (later batches are the
    sequential rule's to ask for). None where the arm's search sets what the source depends on (its batch size,
    say): which configuration the confirmations use is not known yet."""
    if {f for f in searched_fields(spec, arm) if not f.startswith("opt.")} - FINE_TUNING_ONLY:
        return []
    selection = selection_seeds(spec) if min(spec.n_trials, spec.confirm_top) > 1 else []
    return [confirmation_config(spec, cfg, seed) for seed in [*selection, *range(1, spec.seeds + 1)]]
