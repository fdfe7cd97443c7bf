"""One worker of a study, top to bottom: open the stores; take slots (search trials, then confirmation seeds)
until none is left; the worker that sees the last one done publishes.

Any number of workers run this on one study, on one machine or many: everything they share is in the stores
(see `harness.run.queue`), so a worker may die at any moment and the others, or a restart, finish its work.
Publishing (the report) is the caller's: the worker only decides when, and who.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from harness import internals
from harness.run import checkpoints, objective, progress, queue
from harness.run.outage import DiskFull, StorageGone, announce_tracking_retries, retrying
from harness.run.pairing import pair
from harness.run.parent import ParentRun
from harness.run.slot import record, run_slot
from harness.run.work import Job, Work, open_work
from harness.schema import Attr, Outcome, StudyAttr
from harness.spec import StudySpec
from harness.stores import Stores, experiment_id, use_wal

POLL_SECONDS = 2.0  # an idle worker looks again at least this often for work a dead worker left
FIRST_POLL_SECONDS = 0.1  # and sooner at first, 1.5x longer each time: the other workers' last slots of a batch
# end within a second, and a worker that slept through it left its core idle
REPORT_CLAIM_SECONDS = 3600  # a report claim older than this (its worker on another machine) can be taken over


_SWALLOWED = threading.Event()  # a Ctrl-C that Python could only report, not raise (it landed in a finalizer)


def _keep_interrupts(previous: Callable) -> Callable:
    """An unraisable-exception hook that keeps a KeyboardInterrupt raised inside a finalizer or weakref callback
    (where Python prints it and carries on) for the worker to raise at its next slot; others go to `previous`."""
    if getattr(previous, "keeps_interrupts", False):
        return previous

    def hook(unraisable) -> None:
        if isinstance(unraisable.exc_value, KeyboardInterrupt):
            _SWALLOWED.set()
        else:
            previous(unraisable)

    hook.keeps_interrupts = True
    return hook


def _keep_printed_interrupts(previous: Callable) -> Callable:
    """The same for a KeyboardInterrupt that compiled code prints through `sys.excepthook` before reporting it
    as unraisable (Cython does, in scipy's Sobol set-up): kept, not printed as a traceback."""
    if getattr(previous, "keeps_interrupts", False):
        return previous

    def hook(kind, value, tb) -> None:
        if issubclass(kind, KeyboardInterrupt):
            _SWALLOWED.set()
        else:
            previous(kind, value, tb)

    hook.keeps_interrupts = True
    return hook


def _unless_interrupted(take: Callable):
    if _SWALLOWED.is_set():
        _SWALLOWED.clear()
        raise KeyboardInterrupt
    return take()


class Publisher(Protocol):
    """Writes a study's report (also into the active MLflow run where there is one) and returns its path
    (harness.reporting.publish.Publisher)."""

    def __call__(self, spec: StudySpec, stores: Stores, in_run: bool) -> Path: ...


@dataclass
class Worker:
    spec: StudySpec
    stores: Stores
    command: str
    publish: Publisher  # writes the report; returns its path
    report_path: Path
    work: Work | None = None
    parent: ParentRun | None = None
    ctx: objective.RunContext | None = None
    jobs_run: int = 0
    records: str = ""  # the digest of the records this worker last saw finished

    def run(self) -> int:
        """Take slots until the study is done; return 0, or 130 after Ctrl-C."""
        # from the start: a Ctrl-C swallowed while opening (in scipy's Sobol set-up, say) is raised at the first slot
        sys.unraisablehook = _keep_interrupts(sys.unraisablehook)
        sys.excepthook = _keep_printed_interrupts(sys.excepthook)
        try:  # opening is idempotent (every study and experiment is created if missing): after an outage, again
            retrying(self.open, "opening the study's stores")
        except StorageGone as error:
            print(f"\nstopped: {error}", file=sys.stderr)
            return 75
        except KeyboardInterrupt:  # before any slot was taken: nothing of this worker's to record
            if self.parent is not None:  # opened before the Ctrl-C came
                self.parent.end("KILLED")
            print("\ninterrupted while opening the stores; rerun the same command to start", file=sys.stderr)
            return 130
        if self.work.done:
            try:
                return self.nothing_to_do()
            except KeyboardInterrupt:  # the last worker died before it published, and this one is stopped too
                return self.interrupted_publishing()
        heartbeat = queue.Heartbeat(self.parent.beat)
        idle, job = 0, None
        try:
            while (job := _unless_interrupted(self.next_job)) is not None or not self.work.done:
                if job is None:  # others hold the rest: wait for the batch they finish, or to take it over
                    time.sleep(min(POLL_SECONDS, FIRST_POLL_SECONDS * 1.5**idle))
                    idle += 1
                    continue
                idle = 0
                heartbeat.beat_for(self.work.storage, internals.trial_id(job.trial))
                try:
                    self.run_job(job)
                finally:
                    heartbeat.beat_for(self.work.storage, None)
        except KeyboardInterrupt:
            if job is not None:  # claimed as the Ctrl-C came, perhaps not yet run: never left RUNNING (else a no-op)
                record(job, Outcome.INTERRUPTED, "interrupted (Ctrl-C)")
            with contextlib.suppress(Exception):  # a claim the Ctrl-C cut off before it returned a job
                self.work.release_own("interrupted (Ctrl-C)")
            self.parent.end("KILLED")
            self.parent.close_own_runs(Outcome.INTERRUPTED, "interrupted (Ctrl-C)")
            print(f"\ninterrupted: finished trials are kept in {self.stores.root}; rerun the same command to "
                  "resume (what was cut off runs again, with the same settings)", file=sys.stderr)
            return 130
        except (StorageGone, DiskFull) as error:
            with contextlib.suppress(Exception):  # the store may be the one that is full
                self.parent.end("KILLED")
            print(f"\nstopped: {error}", file=sys.stderr)
            return 75  # EX_TEMPFAIL: try again later
        except Exception:
            self.parent.end("FAILED")
            raise
        finally:
            heartbeat.stop()
        try:  # publishing reads and marks the stores: an outage there is waited out too (it starts again, whole)
            retrying(self.finish, "publishing the report")
        except KeyboardInterrupt:
            return self.interrupted_publishing()
        except StorageGone as error:
            self.parent.end("KILLED")
            print(f"\nstopped: {error}", file=sys.stderr)
            return 75
        return 0

    def interrupted_publishing(self) -> int:
        """Ctrl-C while the models and the report were written: the records are whole and the report is not
        marked done, so a rerun publishes it."""
        self.parent.end("KILLED")
        self.parent.close_own_runs(Outcome.INTERRUPTED, "interrupted (Ctrl-C) while publishing the report")
        print("\ninterrupted while publishing: every run is kept; rerun the same command to publish the report",
              file=sys.stderr)
        return 130

    def next_job(self) -> Job | None:
        """The next slot, waiting out an outage of the storage (planning and claiming run again, whole)."""
        return retrying(lambda: self.work.next_job(self.parent.close_stale), "taking the next slot")

    def open(self) -> None:
        if self.stores.remote_tracking:
            announce_tracking_retries(self.stores.mlflow_uri)
        if not self.stores.remote_tracking:  # its import side by side, not one worker after another
            import mlflow.store.tracking.sqlalchemy_store  # noqa: F401 - under the lock: MLflow's SQL store
        with queue.store_lock(self.stores.optuna_url, self.stores.root):
            use_wal(self.stores.mlflow_uri)
            eid = experiment_id(self.stores, self.spec.name)
        self.parent = ParentRun(self.spec, self.stores, eid, self.command)
        self.ctx = objective.RunContext(checkpoints=self.stores.checkpoints)
        self.work = open_work(self.spec, self.stores, self.parent.close_stale)
        with self.work.lock():
            pair(self.work.home, self.stores, eid)  # the same two stores as every other worker, or a clear error

    def prepare(self, job: Job) -> None:
        """What a slot needs before its run: this worker's parent run, the source checkpoint."""
        self.parent.start(self.ctx.task)
        job.trial.set_user_attr(Attr.MLFLOW_PARENT_RUN_ID, self.parent.run_id)
        cfg, eid = objective.job_config(self.spec, job), self.parent.experiment_id

        def meanwhile() -> None:  # another worker pretrains cfg's source: one this study will need, in the meantime
            checkpoints.pretrain_ahead(checkpoints.sure_sources(self.spec, job.arm, cfg), self.stores, eid)

        checkpoints.ensure_source(cfg, self.stores, eid, meanwhile=meanwhile)

    def run_job(self, job: Job) -> None:
        start = time.perf_counter()
        outcome, value = run_slot(job, lambda: self.prepare(job), objective.runner(self.spec, job, self.ctx))
        self.jobs_run += 1
        progress.slot_line(job, outcome, value, time.perf_counter() - start, self.work)

    def finish(self) -> None:
        """Publish if this worker is the first to see all work done on these records."""
        write = self.claim_report()
        if write:
            self.publish_now()
        self.parent.end("FINISHED")
        if write:  # the summary once, from the worker that publishes: the others' lines would repeat it
            progress.summary(self.work, self.report_path, self.parent, self.stores, self.jobs_run)
        else:
            print(f"this worker ran {self.jobs_run} runs; another worker publishes the report for these records")

    def nothing_to_do(self) -> int:
        """A rerun of a finished study: one line, no parent run; the report is rebuilt only if stale."""
        write = self.claim_report()  # the last worker died before it published
        state = "rebuilt" if write or not self.report_path.is_file() else "up to date"
        if write:
            self.publish_now()
            self.parent.end("FINISHED")
        elif not self.report_path.is_file():  # published on another machine, or deleted here
            self.publish(self.spec, self.stores, self.parent.run_id is not None)
        progress.nothing_to_do(self.spec.name, self.stores.root, self.report_path, state)
        return 0

    def claim_report(self) -> bool:
        """Under the lock: one worker publishes for one state of the records. A claim whose worker died (or,
        on another machine, is an hour old) can be taken over."""
        home = self.work.home
        with self.work.lock():
            self.parent.close_dead_runs()
            records = self.records = self.work.records_digest()
            if home.user_attrs.get(StudyAttr.REPORT_RECORDS) == records:
                return False
            claim = home.user_attrs.get(StudyAttr.REPORT_CLAIM) or {}
            held = (claim.get("records") == records and claim.get("worker") != queue.worker_id()
                    and not queue.worker_dead(claim.get("worker", ""))
                    and time.time() - claim.get("time", 0) < REPORT_CLAIM_SECONDS)
            if not held:
                home.set_user_attr(StudyAttr.REPORT_CLAIM, {"worker": queue.worker_id(), "records": records,
                                                            "time": time.time()})
            return not held

    def publish_now(self) -> None:
        """The parent run (to hold the report), the publication, then the mark that says it is done."""
        self.parent.start(self.ctx.task)
        self.publish(self.spec, self.stores, self.parent.run_id is not None)
        self.work.home.set_user_attr(StudyAttr.REPORT_RECORDS, self.records)
