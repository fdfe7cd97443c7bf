"""One worker of a study, top to bottom: open the stores and plan the work; take slots (search trials, then
confirmation seeds) until none is left; the worker that sees the last one done writes the report.

Any number of workers run this on one study, on one machine or many: everything they share is in the
stores (see `harness.queue`), so a worker may die at any moment and the others, or a restart, finish its work.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlflow
import optuna
from optuna.trial import FrozenTrial, TrialState

from harness import queue
from harness.plan import confirm_slots, confirm_study_name, fixed_settings, search_points, select
from harness.spec import Arm, Stores, StudySpec, TrialConfig, digest
from harness.tracking import experiment_id, open_storage, optuna_study_name, use_wal

POLL_SECONDS = 2.0  # an idle worker looks again this often for work a dead worker left
METRIC_NAME = "best validation accuracy"


# --- the stores, as one worker holds them ----------------------------------------------------------------


@dataclass
class Stage:
    """Where the study's work stands: per arm, its search and confirmation studies."""

    search: dict[str, optuna.Study]
    confirm: dict[str, optuna.Study]
    done: bool = False
    finished: int = 0  # slots done when last planned
    planned: int = 0  # slots in all: every search slot and every confirmation slot

    def studies(self) -> list[optuna.Study]:
        return [*self.search.values(), *self.confirm.values()]


@dataclass
class Worker:
    spec: StudySpec
    stores: Stores
    reports: Path
    command: str
    storage: Any = None
    experiment_id: str = ""
    stage: Stage | None = None
    parent_run_id: str | None = None
    ctx: Any = None
    points: dict[str, list[dict]] = field(default_factory=dict)
    jobs_run: int = 0
    claimed: int = 0  # slots this worker took since it last planned

    def lock(self, name: str = ""):
        return queue.store_lock(self.stores.optuna_url, self.stores.root, name)

    # -- opening -------------------------------------------------------------------------------------

    def open(self) -> None:
        """Create or open every store and study, and plan the search slots. Under the lock: several
        workers starting at once on fresh stores must not create a schema twice."""
        with self.lock():
            use_wal(self.stores.mlflow_uri)
            self.experiment_id = experiment_id(self.stores, self.spec.name)
            use_wal(self.stores.optuna_url)
            self.storage = open_storage(self.stores, heartbeat=True)
            search, confirm = {}, {}
            for arm in self.spec.arms:
                search[arm.name] = self._study(optuna_study_name(self.spec.name, arm.name), arm)
                confirm[arm.name] = self._study(confirm_study_name(self.spec, arm), arm)
            self.stage = Stage(search, confirm)
            self._plan()

    def _study(self, name: str, arm: Arm) -> optuna.Study:
        prune = self.spec.prune and not name.endswith("/confirm")
        pruner = optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=3) if prune \
            else optuna.pruners.NopPruner()
        study = optuna.create_study(study_name=name, storage=self.storage, direction="maximize",
                                    load_if_exists=True, sampler=optuna.samplers.RandomSampler(queue.SAMPLER_SEED),
                                    pruner=pruner)
        if not study.user_attrs:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                study.set_metric_names([METRIC_NAME])
            study.set_user_attr("config", json.dumps(fixed_settings(self.spec, arm), sort_keys=True))
            study.set_user_attr("sampler", self.spec.sampler)
            study.set_user_attr("budget", {"n_trials": self.spec.n_trials, "seeds": self.spec.seeds,
                                           "confirm_top": self.spec.confirm_top})
        return study

    def _points(self, arm: Arm) -> list[dict]:
        if arm.name not in self.points:
            self.points[arm.name] = search_points(self.spec, arm, self.spec.n_trials)
        return self.points[arm.name]

    # -- planning and claiming (under the lock) ------------------------------------------------------

    def _plan(self) -> None:
        """Recover stale work, enqueue what is missing, record selections; sets `stage.done`."""
        stage, done, finished, planned = self.stage, True, 0, 0
        for study in stage.studies():
            queue.fail_stale(study, self._close_runs)
        for arm in self.spec.arms:
            search, confirm = stage.search[arm.name], stage.confirm[arm.name]
            slots = {str(i): (p, {}) for i, p in enumerate(self._points(arm))}
            queue.plan(search, slots)
            status = queue.slot_status(search)
            finished += sum(s == "done" for s in status.values())
            planned += self.spec.n_trials + self.spec.confirm_top * self.spec.seeds
            if any(s != "done" for s in status.values()):
                done = False
                continue
            wanted = confirm_slots(self.spec, search)
            queue.plan(confirm, wanted)
            status = queue.slot_status(confirm)
            finished += sum(s == "done" for s in status.values())
            if all(status.get(slot) == "done" for slot in wanted):
                if wanted and "selected_trial" not in search.user_attrs:
                    select(search, confirm)
            else:
                done = False
        stage.done, stage.finished, stage.planned = done, finished, planned
        self.claimed = 0

    def next_job(self) -> tuple[str, Arm, optuna.Study, optuna.Trial] | None:
        """Claim a waiting slot; only when none waits, plan (recover stale work, enqueue confirmations) and
        look again. Planning reads every trial of every study: once per empty queue, not once per claim."""
        with self.lock():
            job = self._claim()
            if job is None:
                self._plan()
                job = self._claim()
        if job is not None:
            self.claimed += 1
        return job

    def _claim(self) -> tuple[str, Arm, optuna.Study, optuna.Trial] | None:
        for kind, studies in (("search", self.stage.search), ("confirm", self.stage.confirm)):
            for arm in self.spec.arms:
                study = studies[arm.name]
                if self.spec.sampler == "tpe" and kind == "search":  # distinct points in each worker
                    study.sampler = optuna.samplers.TPESampler(seed=queue.SAMPLER_SEED + len(study.trials))
                trial = queue.claim(study)
                if trial is not None:
                    return kind, arm, study, trial
        return None

    # -- running ---------------------------------------------------------------------------------------

    def run(self) -> int:
        """Take slots until the study is done; return 0, or 130 after Ctrl-C."""
        self.open()
        if self.stage.done:
            self._nothing_to_do()
            return 0
        heartbeat = queue.Heartbeat(self._beat_parent)
        try:
            while True:
                job = self.next_job()
                if job is None:
                    if self.stage.done:
                        break
                    time.sleep(POLL_SECONDS)  # others hold the rest: wait, to take it over if they die
                    continue
                heartbeat.beat_for(self.storage, job[3]._trial_id)
                try:
                    self._start_parent()
                    self._run_job(*job)
                except BaseException as error:  # cut off outside the run's own handling: the slot runs again
                    interrupted(*job[2:], error)
                    raise
                finally:
                    heartbeat.beat_for(self.storage, None)
        except KeyboardInterrupt:
            self._end_parent("KILLED")
            print(f"\ninterrupted: finished trials are kept in {self.stores.root}; rerun the same command to "
                  "resume (what was cut off runs again, with the same settings)", file=sys.stderr)
            return 130
        except Exception:
            self._end_parent("FAILED")
            raise
        finally:
            heartbeat.stop()
        self.finish()
        return 0

    def _run_job(self, kind: str, arm: Arm, study: optuna.Study, trial: optuna.Trial) -> None:
        from harness import objective

        trial.set_user_attr("mlflow_parent_run_id", self.parent_run_id)
        config = objective.trial_config if kind == "search" else objective.confirmation_trial_config
        self._ensure_source(config(self.spec, arm, trial))
        if kind == "search":
            run = objective.make_objective(self.spec, arm, self.ctx)
        else:
            run = objective.make_confirmation(self.spec, arm, self.ctx, optuna_study_name(self.spec.name, arm.name))
        start = time.perf_counter()
        finish(study, trial, run)
        self.jobs_run += 1
        ended = study._storage.get_trial(trial._trial_id)
        outcome = ended.state.name.lower() if ended.state != TrialState.COMPLETE else \
            f"val acc {100 * ended.value:.1f}%"
        what = f"trial {trial.number}" if kind == "search" else \
            f"trial {trial.user_attrs['search_trial']}, seed {trial.user_attrs['seed']}"
        done = min(self.stage.finished + self.claimed, self.stage.planned)  # others' runs since: not counted
        print(f"[{kind} {done}/{self.stage.planned}] {arm.name} {what}: {outcome} "
              f"({time.perf_counter() - start:.1f} s)", flush=True)

    def _ensure_source(self, cfg: TrialConfig) -> None:
        """The source checkpoint, pretrained by one worker while the others wait for it (under the lock)."""
        if cfg.weights != "source":
            return
        from harness.pretrain import checkpoint_key, find_checkpoint, source_checkpoint

        if find_checkpoint(cfg, self.stores.checkpoints) is None:
            with self.lock(f"pretrain-{checkpoint_key(cfg)}"):
                if fetch_checkpoint(cfg, self.stores, self.experiment_id) is None:
                    source_checkpoint(cfg, self.stores.checkpoints)

    # -- the parent run ----------------------------------------------------------------------------------

    def _start_parent(self) -> None:
        """One parent run per worker that has work, started when it takes its first slot."""
        if self.parent_run_id is not None:
            return
        from harness.objective import RunContext
        from harness.study import log_data_overview, run_tags

        self.ctx = RunContext(checkpoints=self.stores.checkpoints)
        tags = {**run_tags(self.command), "worker": queue.worker_id(), "heartbeat": str(int(time.time()))}
        run = mlflow.start_run(experiment_id=self.experiment_id, run_name=f"{self.spec.name} worker "
                               f"{queue.worker_id().split(':')[1]}", tags=tags)
        self.parent_run_id = run.info.run_id
        spec = self.spec
        mlflow.log_params({"n_trials": spec.n_trials, "seeds": spec.seeds, "confirm_top": spec.confirm_top,
                           "sampler": spec.sampler, "prune": spec.prune,
                           "arms": ",".join(a.name for a in spec.arms), "epochs": spec.base.epochs})
        log_data_overview(spec.arms[0].config(spec.base), self.ctx)

    def _beat_parent(self) -> None:
        if self.parent_run_id and self.stores.mlflow_uri.startswith("http"):  # locally the pid tells
            mlflow.MlflowClient().set_tag(self.parent_run_id, "heartbeat", str(int(time.time())))

    def _end_parent(self, status: str) -> None:
        if self.parent_run_id is not None and mlflow.active_run() is not None:
            mlflow.end_run(status)

    def _close_runs(self, trial: FrozenTrial) -> None:
        """A stale trial's MLflow run, and its worker's parent run, end KILLED with the reason."""
        client = mlflow.MlflowClient()
        for key in ("mlflow_run_id", "mlflow_parent_run_id"):
            run_id = trial.user_attrs.get(key)
            if run_id and client.get_run(run_id).info.status == "RUNNING":
                kill_run(client, run_id, trial.user_attrs.get("state_reason", "stale"))

    def close_dead_runs(self) -> None:
        """Runs of workers that died (between slots, during pretraining, while logging a model) end KILLED:
        a parent run whose worker's pid is gone or whose heartbeat stopped, any run whose worker's pid is gone."""
        client = mlflow.MlflowClient()
        for run in client.search_runs([self.experiment_id], "attributes.status = 'RUNNING'"):
            tags = run.data.tags
            worker = tags.get("resumed_by") or tags.get("worker", "")
            beat = float(tags.get("heartbeat", "0"))
            stale_beat = (tags.get("phase") == "study" and self.stores.mlflow_uri.startswith("http")
                          and time.time() - beat > queue.GRACE_SECONDS)
            if run.info.run_id != self.parent_run_id and (queue.worker_dead(worker) or stale_beat):
                kill_run(client, run.info.run_id, f"worker {worker} stopped without finishing")

    # -- the end -----------------------------------------------------------------------------------------

    def records_digest(self) -> str:
        """Changes whenever a trial or confirmation finishes: a report built from older records is stale."""
        finished = [(s.study_name, t.number, t.state.name) for s in self.stage.studies()
                    for t in s.get_trials(deepcopy=False) if t.state.is_finished()]
        return digest({"records": sorted(finished)})

    def finish(self) -> None:
        """Publish the report if this worker is the first to see all work done on these records."""
        with self.lock():
            self.close_dead_runs()
            records = self.records_digest()
            write = self._claim_report(records)
        if write:
            self._publish(records)
        self._end_parent("FINISHED")
        print_summary(self.stage, self._report_path(), self.parent_run_id, self.stores.mlflow_uri,
                      self.jobs_run)
        if not write:
            print("another worker publishes the report for these records")

    def _claim_report(self, records: str) -> bool:
        """Under the lock: one worker writes the report for one state of the records. A claim whose worker
        died (or, on another machine, is an hour old) can be taken over."""
        first = self.stage.search[self.spec.arms[0].name]
        if first.user_attrs.get("report_records") == records:
            return False
        claim = first.user_attrs.get("report_claim") or {}
        held = (claim.get("records") == records and claim.get("worker") != queue.worker_id()
                and not queue.worker_dead(claim.get("worker", "")) and time.time() - claim.get("time", 0) < 3600)
        if held:
            return False
        first.set_user_attr("report_claim", {"worker": queue.worker_id(), "records": records, "time": time.time()})
        return True

    def _publish(self, records: str) -> None:
        """Each arm's chosen model, then the report, then the mark that says they are done."""
        self._start_parent()
        self._log_chosen_models()
        self._write_report()
        self.stage.search[self.spec.arms[0].name].set_user_attr("report_records", records)

    def _log_chosen_models(self) -> None:
        """Each arm's chosen trial, at its best confirmation seed, as an MLflow model on that seed's run."""
        from harness.objective import RunContext, confirmation_trial_config, log_chosen_model

        self.ctx = self.ctx or RunContext(checkpoints=self.stores.checkpoints)
        for arm in self.spec.arms:
            chosen = self.stage.search[arm.name].user_attrs.get("selected_trial")
            seeds = [t for t in self.stage.confirm[arm.name].get_trials(states=(TrialState.COMPLETE,))
                     if t.user_attrs.get("search_trial") == chosen and t.user_attrs.get("mlflow_run_id")]
            if seeds:
                best = max(seeds, key=lambda t: (t.value, -t.user_attrs["seed"]))
                self._ensure_source(confirmation_trial_config(self.spec, arm, best))
                log_chosen_model(self.spec, arm, best, self.ctx)

    def _report_path(self) -> Path:
        return self.reports / self.spec.name / "README.md"

    def _write_report(self) -> Path:
        from harness.report import build_index, build_report
        from harness.report_html import render_html

        report = build_report(self.spec, self.stores, self.reports)
        render_html(report.parent)  # readable inside MLflow's artifact viewer, images included
        build_index(self.reports)
        if self.parent_run_id is not None:
            mlflow.log_artifacts(str(report.parent), artifact_path="report")
        return report

    def _nothing_to_do(self) -> None:
        """A rerun of a finished study: one line, no parent run; the report is rebuilt only if stale."""
        with self.lock():
            self.close_dead_runs()
            records = self.records_digest()
            write = self._claim_report(records)  # the last worker died before it published
        state = "rebuilt" if write or not self._report_path().is_file() else "up to date"
        if write:
            self._publish(records)
            self._end_parent("FINISHED")
        elif not self._report_path().is_file():  # published on another machine, or deleted here
            self._write_report()
        print(f"nothing to do: every trial and confirmation seed of {self.spec.name} is recorded in "
              f"{self.stores.root}; report {state}: {self._report_path()}")


def kill_run(client: mlflow.MlflowClient, run_id: str, reason: str) -> None:
    """End a dead worker's MLflow run as KILLED, saying why, as a run cut off in its own worker ends."""
    client.set_tag(run_id, "state", "killed")
    client.set_tag(run_id, "state_reason", reason[:500])
    client.set_terminated(run_id, "KILLED")


def interrupted(study: optuna.Study, trial: optuna.Trial, error: BaseException) -> None:
    """A slot cut off before its run could record it (Ctrl-C or an error during pretraining, say): its slot
    runs again."""
    if study._storage.get_trial(trial._trial_id).state == TrialState.RUNNING:
        reason = "interrupted (Ctrl-C)" if isinstance(error, KeyboardInterrupt) else \
            f"interrupted: {type(error).__name__}: {error}"
        with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
            trial.set_user_attr("state_reason", reason[:500])
            study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)


def finish(study: optuna.Study, trial: optuna.Trial, run: Callable[[optuna.Trial], float]) -> None:
    """Run one slot and tell Optuna how it ended. A run-time error fails that trial, never the study; Ctrl-C
    marks it interrupted, so its slot runs again on the next start."""
    from harness.train import Diverged

    try:
        value = run(trial)
    except optuna.TrialPruned:
        tell(study, trial, state=TrialState.PRUNED)
    except Diverged:
        tell(study, trial, state=TrialState.FAIL)  # the objective recorded why; a result, not retried
    except KeyboardInterrupt:
        tell(study, trial, state=TrialState.FAIL, reason="interrupted (Ctrl-C)")
        raise
    except Exception as error:  # noqa: BLE001 - a bad configuration must not end the study
        tell(study, trial, state=TrialState.FAIL, reason=f"error: {type(error).__name__}: {error}")
        logging.getLogger("harness").warning("%s trial %d failed: %s", study.study_name, trial.number, error)
    else:
        tell(study, trial, value)


def tell(study: optuna.Study, trial: optuna.Trial, value: float | None = None, state: TrialState | None = None,
         reason: str | None = None) -> None:
    """Record how a slot ended, unless another worker already judged it stale (then its rerun decides)."""
    with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
        if reason is not None:
            trial.set_user_attr("state_reason", reason[:500])
        study.tell(trial, value, state=state, skip_if_finished=True)


def fetch_checkpoint(cfg: TrialConfig, stores: Stores, eid: str) -> Path | None:
    """Another machine's pretraining of the same source, downloaded from its MLflow run: workers on many
    machines share one checkpoint without a shared disk."""
    from harness.pretrain import checkpoint_key, find_checkpoint

    key = checkpoint_key(cfg)
    found = find_checkpoint(cfg, stores.checkpoints)
    if found is not None:
        return found.path
    runs = mlflow.MlflowClient().search_runs(
        [eid], f"tags.phase = 'pretrain' and tags.checkpoint = '{key}' and attributes.status = 'FINISHED'")
    if not runs:
        return None
    stores.checkpoints.mkdir(parents=True, exist_ok=True)
    path = Path(mlflow.artifacts.download_artifacts(run_id=runs[0].info.run_id,
                                                    artifact_path=f"checkpoint/{key}.pt",
                                                    dst_path=str(stores.checkpoints / f".{key}")))
    path.replace(stores.checkpoints / f"{key}.pt")
    meta = {"run_id": runs[0].info.run_id, "config": dataclasses.asdict(cfg)}
    (stores.checkpoints / f"{key}.json").write_text(json.dumps(meta, default=str))
    return stores.checkpoints / f"{key}.pt"


def print_summary(stage: Stage, report: Path, parent_run_id: str | None, tracking_uri: str, jobs: int) -> None:
    """A few lines for the terminal, in the report's terms: each arm's search and its chosen trial."""
    print(f"\n{'arm':18s} {'complete':>8s} {'pruned':>6s} {'failed':>6s}  chosen trial (mean val acc over seeds)")
    for name, study in stage.search.items():
        states = [t.state.name for t in study.trials if queue.counts(t)]
        chosen = study.user_attrs.get("selected_trial")
        means = study.user_attrs.get("confirm_val_acc", {})
        text = f"#{chosen} ({100 * means[str(chosen)]:.1f}%)" if chosen is not None else "-"
        print(f"{name:18s} {states.count('COMPLETE'):8d} {states.count('PRUNED'):6d} {states.count('FAIL'):6d}  {text}")
    summary = report.with_name("summary.json")
    if summary.exists():
        print("\n" + "\n".join(json.loads(summary.read_text())["verdicts"]))
    where = f"MLflow parent run: {parent_run_id} " if parent_run_id else ""
    browse = f"open {tracking_uri}" if tracking_uri.startswith("http") else \
        f"mlflow ui --backend-store-uri {tracking_uri}"
    print(f"\nthis worker ran {jobs} runs; report: {report}\n{where}(browse: {browse})")
