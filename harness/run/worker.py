"""One worker of a study, top to bottom: open the stores; take slots (search trials, then confirmation seeds)
until none is left; the worker that sees the last one done publishes.

Any number of workers run this on one study, on one machine or many: everything they share is in the stores
(see `harness.run.queue`), so a worker may die at any moment and the others, or a restart, finish its work.
Publishing (the report) is the caller's: the worker only decides when, and who.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from harness import internals
from harness.run import checkpoints, launch, objective, progress, queue
from harness.run.outage import (
    DiskFull,
    StorageGone,
    announce_tracking_retries,
    disk_full,
    gist,
    quiet_reported_errors,
    retrying,
    settle,
    wait_for_space,
)
from harness.run.pairing import pair
from harness.run.parent import ParentRun
from harness.run.slot import _tell, run_slot
from harness.run.space import watching
from harness.run.work import Job, Work, open_work
from harness.schema import Attr, Outcome, StudyAttr
from harness.spec import StudySpec
from harness.stores import Stores, experiment_id, use_wal

POLL_SECONDS = 2.0  # an idle worker looks again at least this often for work a dead worker left
FIRST_POLL_SECONDS = 0.1  # and sooner at first, 1.5x longer each time: the other workers' last slots of a batch
# end within a second, and a worker that slept through it left its core idle
REPORT_CLAIM_SECONDS = 3600  # a report claim older than this (its worker on another machine) can be taken over


_SWALLOWED = threading.Event()  # a Ctrl-C that Python could only report, not raise (it landed in a finalizer),
# or that a library turned into another error (a cleanup write in a `finally` that met a locked store)


def _interrupt(signum: int, frame: object) -> None:
    """SIGINT as Python answers it (KeyboardInterrupt), also remembered: the worker stops at its next slot even
    when the interrupt is lost on its way up."""
    _SWALLOWED.set()
    raise KeyboardInterrupt


def _remember_interrupts() -> Callable[[], None]:
    """Install `_interrupt` for SIGINT where Python's own handler is (not where SIGINT is ignored, as in a
    background job, nor off the main thread); returns what puts the previous handler back."""
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        return lambda: None
    signal.signal(signal.SIGINT, _interrupt)
    return lambda: signal.signal(signal.SIGINT, signal.default_int_handler)


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
        """Take slots until the study is done; return 0, 75 when an outage or a full disk outlasted the wait with
        work left, or 130 after Ctrl-C."""
        _SWALLOWED.clear()
        restore = _remember_interrupts()
        try:
            with watching(self.stores):  # a full disk names the store and the room left on its disk
                return self._run()
        finally:
            restore()

    def _run(self) -> int:
        # from the start: a Ctrl-C swallowed while opening (in scipy's Sobol set-up, say) is raised at the first slot
        sys.unraisablehook = _keep_interrupts(sys.unraisablehook)
        sys.excepthook = _keep_printed_interrupts(sys.excepthook)
        quiet_reported_errors()
        try:  # opening is idempotent (every study and experiment is created if missing): after an outage, again
            retrying(self.open, "opening the study's stores")
        except StorageGone as error:
            launch.tell_stopped(f"\nstopped: {error}", gist(error))
            return 75
        except KeyboardInterrupt:  # before any slot was taken: nothing of this worker's to record
            return self.interrupted(None, "interrupted while opening the stores; rerun the same command to start",
                                    close_own=False)
        quiet_reported_errors()  # again: creating MLflow's tables configures alembic's loggers
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
                except StorageGone:
                    raise
                except Exception as error:
                    if disk_full(error) is None:
                        raise
                    # recorded as cut off (it runs again); the disk may be freed soon: wait, then the next slot
                    wait_for_space(error, f"running {job.label()}")
                finally:
                    heartbeat.beat_for(self.work.storage, None)
        except KeyboardInterrupt:
            return self.interrupted(job, "interrupted: finished trials are kept in "
                                    f"{self.stores.root}; rerun the same command to resume (what was cut off runs "
                                    "again, with the same settings)")
        except (StorageGone, DiskFull) as error:
            return self.stopped(error)
        except Exception:
            settle(lambda: self.parent.end("FAILED"))
            raise
        finally:
            heartbeat.stop()
        try:  # publishing reads and marks the stores: an outage there is waited out too (it starts again, whole)
            retrying(self.finish, "publishing the report")
        except KeyboardInterrupt:
            return self.interrupted_publishing()
        except StorageGone as error:
            settle(lambda: self.parent.end("KILLED"), patience=0)
            launch.tell_stopped(f"\nstopped: {error}", gist(error))
            return 75
        return 0

    def stopped(self, error: BaseException) -> int:
        """An outage or a full disk outlasted the wait. If the study's work is done meanwhile (the other workers
        ran the rest while this one waited), it finishes as usual, 0: nothing is left to rerun. Else one line
        and 75 (EX_TEMPFAIL: try again later)."""
        try:
            with self.work.lock():  # planning reads what is done; it writes only where work is left
                self.work.plan(self.parent.close_stale)
            done = self.work.done
        except Exception:  # noqa: BLE001 - the store still cannot be used: work is left as far as anyone can tell
            done = False
        if done:
            what = "a full disk" if disk_full(error) is not None else "an outage"
            print(f"{self.spec.name}: every slot is done (the other workers ran the rest while this one waited out "
                  f"{what}); nothing is left to rerun", flush=True)
            try:
                retrying(self.finish, "publishing the report")
                return 0
            except KeyboardInterrupt:
                return self.interrupted_publishing()
            except StorageGone as gone:  # the report is left to write: the rerun writes it
                error = gone
        # one try: the store may be the one that is full (never a traceback; the rerun closes the run)
        settle(lambda: self.parent.end("KILLED"), patience=0)
        launch.tell_stopped(f"\nstopped: {error}", gist(error))
        return 75

    def interrupted(self, job: Job | None, line: str, close_own: bool = True,
                    reason: str = "interrupted (Ctrl-C)") -> int:
        """After Ctrl-C: the slot claimed as it came told interrupted (never left RUNNING), a claim the Ctrl-C
        cut off released, this worker's runs ended KILLED. Every worker got the same Ctrl-C and writes the same
        stores at once: each write is tried again while another holds the lock, and what still fails (or a
        second Ctrl-C) is said in one line; the rerun closes what is left (runs and trials of a dead worker)."""
        steps: list[Callable[[], object]] = []
        if job is not None:  # claimed as the Ctrl-C came, perhaps not yet run (else a no-op); told as `record`
            # tells it, without its ten minutes of patience for a storage that is away
            steps.append(lambda: _tell(job, Outcome.INTERRUPTED, reason, None))
        if self.work is not None:
            steps.append(lambda: self.work.release_own(reason))  # a claim cut off before it returned a job
        if self.parent is not None:
            steps.append(lambda: self.parent.end("KILLED"))
            if close_own:  # a Ctrl-C can land between a run leaving MLflow's stack and its end being written
                steps.append(lambda: self.parent.close_own_runs(Outcome.INTERRUPTED, reason))
        left: BaseException | None = None
        try:
            for step in steps:
                left = settle(step) or left
        except KeyboardInterrupt as again:  # a second Ctrl-C: stop closing, the rerun does it
            left = again
        launch.tell_stopped(f"\n{line}", "interrupted")
        if left is not None:
            kind = "a second Ctrl-C" if isinstance(left, KeyboardInterrupt) else type(left).__name__
            launch.tell_stopped(f"({kind} kept a worker from closing all its records; the rerun closes them)",
                                f"left open: {kind}")
        _SWALLOWED.clear()  # answered
        return 130

    def interrupted_publishing(self) -> int:
        """Ctrl-C while the models and the report were written: the records are whole and the report is not
        marked done, so a rerun publishes it."""
        return self.interrupted(None, "interrupted while publishing: every run is kept; rerun the same command to "
                                "publish the report", reason="interrupted (Ctrl-C) while publishing the report")

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
        if write or self.work.home.user_attrs.get(StudyAttr.REPORT_RECORDS) == self.records:
            launch.tell_finished()  # the study is done and reported: a worker's earlier stop leaves nothing to rerun

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
        launch.tell_finished()
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
