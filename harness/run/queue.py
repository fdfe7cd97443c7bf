"""Optuna's storage as the work queue every worker shares: planned slots, atomic claims, stale-work recovery.

A study's work is a fixed set of *slots*: search slot i of an arm (the i-th point of the arm's seeded
sampler) and confirmation slot "<trial>/<seed>". Each slot is an enqueued (WAITING) Optuna trial with fixed
parameters; a worker claims one by popping it (`study.ask`). Planning, claiming and recovery run under one
lock per storage (a file lock beside a local store, an advisory lock in PostgreSQL), so however many workers
start, each slot is planned once and taken by one worker. A slot whose trial was cut off (Ctrl-C, a killed
worker) is planned again with the same parameters, so a crash never changes what the study runs.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import socket
import warnings
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import optuna
import psutil
from filelock import FileLock, Timeout
from optuna.trial import FrozenTrial, TrialState

from harness import internals
from harness.schema import Attr, Outcome, counts
from harness.stores import HEARTBEAT_SECONDS, lock_file, parse_url

SAMPLER_SEED = 0  # the same for every arm: the comparison is fair


# --- who is working ------------------------------------------------------------------------------------


def _started(pid: int) -> str:
    """When the process started (psutil): tells a live pid from a reused one."""
    try:
        return f"{psutil.Process(pid).create_time():.2f}"
    except psutil.Error:
        return ""


def _pid_space() -> str:
    """This machine's boot and pid namespace: pids compare only within one (containers share hostnames)."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()[:8]
        return f"{boot}.{os.stat('/proc/self/ns/pid').st_ino}"
    except OSError:
        return ""


@functools.cache
def worker_id() -> str:
    """host:pid:start:pid-space, unique to this process."""
    return f"{socket.gethostname()}:{os.getpid()}:{_started(os.getpid())}:{_pid_space()}"


def worker_dead(worker: str) -> bool:
    """True when `worker` ran in this machine's pid space and is gone. A worker elsewhere is judged by its
    heartbeat instead (RDB storages), so here it counts as alive."""
    host, pid_text, started, space = (worker.split(":") + ["", "", "", ""])[:4]
    if host != socket.gethostname() or space != _pid_space() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if not psutil.pid_exists(pid):
        return True
    now = _started(pid)
    return bool(started) and bool(now) and now != started  # the pid was reused by another process


# --- one lock per storage ------------------------------------------------------------------------------


@contextlib.contextmanager
def store_lock(url: str, root: Path, name: str = "", wait: bool = True) -> Iterator[bool]:
    """Serialise planning and claiming among all workers of a storage, on one machine or many; `name` gives
    another lock of the same storage (one per source checkpoint, so two models pretrain side by side). Yields
    whether it is held: always, unless `wait` is False and another worker holds it."""
    if parse_url(url).kind == "postgresql":
        import sqlalchemy

        key = zlib.crc32(f"harness-queue{name}".encode())  # the queue's sections are short: one lock for all
        # autocommit: no transaction idles open while the lock is held (servers may kill such sessions)
        with _pg_engine(url).connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            take = "pg_advisory_lock" if wait else "pg_try_advisory_lock"
            held = conn.execute(sqlalchemy.text(f"SELECT {take}(:k)"), {"k": key}).scalar() is not False
            try:
                yield held
            finally:
                if held:
                    with contextlib.suppress(Exception):  # a lost session has released the lock already
                        conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
        return
    path = lock_file(url, root, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(path, timeout=-1 if wait else 0)  # an OS lock (flock): released by the OS if this process dies
    try:
        lock.acquire()
    except Timeout:
        yield False
        return
    try:
        yield True
    finally:
        lock.release()


@functools.cache
def _pg_engine(url: str):
    import sqlalchemy
    from sqlalchemy.pool import NullPool

    return sqlalchemy.create_engine(url, poolclass=NullPool)


# --- slots -----------------------------------------------------------------------------------------------


def slot_of(trial: FrozenTrial) -> str | None:
    return trial.user_attrs.get(Attr.SLOT)


def retryable(trial: FrozenTrial) -> bool:
    """A finished trial that was cut off: its slot is lost, to plan again."""
    return trial.state.is_finished() and not counts(trial)


def slot_status(study: optuna.Study, trials: list[FrozenTrial] | None = None) -> dict[str, str]:
    """slot -> done | pending (waiting or running) | lost (cut off: to plan again)."""
    states: dict[str, set[str]] = {}
    for trial in study.get_trials(deepcopy=False) if trials is None else trials:
        if slot_of(trial) is not None:
            state = "done" if counts(trial) else "lost" if retryable(trial) else "pending"
            states.setdefault(slot_of(trial), set()).add(state)
    return {slot: next(s for s in ("done", "pending", "lost") if s in seen) for slot, seen in states.items()}


def plan(study: optuna.Study, slots: dict[str, tuple[dict[str, Any], dict[str, Any]]]) -> int:
    """Enqueue every slot not done or pending: slot -> (fixed params, user attrs). Call under `store_lock`.

    A lost slot is enqueued again with the parameters its cut-off trial had, so a crash reruns the same
    configuration. Returns how many trials were enqueued."""
    trials = study.get_trials(deepcopy=False)  # one read: it loads every trial
    status = slot_status(study, trials)
    fixed = {slot_of(t): t.system_attrs.get("fixed_params") or t.params for t in trials if slot_of(t) is not None}
    added = 0
    for slot, (params, attrs) in slots.items():
        if status.get(slot) in ("done", "pending"):
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # params of a conditional space may not all be known yet
            study.enqueue_trial(fixed.get(slot, params), user_attrs={**attrs, Attr.SLOT: slot})
        added += 1
    return added


def claim(study: optuna.Study) -> tuple[optuna.Trial, int] | None:
    """Pop one waiting trial of `study` for this worker, with its place among the study's slots (the slots done
    or running, this one included: the same count whichever worker asks), or None; never a new trial, as
    `study.ask` makes when none waits. Call under `store_lock`: no other worker claims between read and write."""
    trials = study.get_trials(deepcopy=False)  # one read: the waiting ones and the place
    waiting = next((t for t in trials if t.state == TrialState.WAITING), None)
    if waiting is None:
        return None
    place = 1 + sum(slot_of(t) is not None and (counts(t) or t.state == TrialState.RUNNING) for t in trials)
    # what study.ask() does with a waiting trial (the first, as it would pop), without reading every trial again
    storage = internals.storage_of(study)
    if not storage.set_trial_state_values(internals.trial_id(waiting), state=TrialState.RUNNING):
        return None  # taken meanwhile (only a worker that ignores the lock could): the next claim looks again
    internals.reset_trial_cache(study)  # as ask() does: a sampler reads the trials afresh
    trial = optuna.Trial(study, internals.trial_id(waiting))
    trial.set_user_attr(Attr.WORKER, worker_id())
    if internals.heartbeat_enabled(storage):
        storage.record_heartbeat(internals.trial_id(trial))  # from the first moment: no beat is never stale
    return trial, place


def release_own(study: optuna.Study, reason: str) -> int:
    """After a Ctrl-C: every slot of `study` this worker holds RUNNING, and any claim cut off before it named its
    worker, told interrupted (they run again), so the interrupt leaves nothing RUNNING. Call under `store_lock`:
    claims name their worker under it, so a RUNNING trial with none then is a claim that never finished."""
    released, storage = 0, internals.storage_of(study)
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if trial.user_attrs.get(Attr.WORKER) not in (None, worker_id()):
            continue
        storage.set_trial_user_attr(internals.trial_id(trial), Attr.OUTCOME, Outcome.INTERRUPTED.value)
        storage.set_trial_user_attr(internals.trial_id(trial), Attr.REASON, reason)
        with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
            study.tell(trial.number, state=TrialState[Outcome.INTERRUPTED.trial_state], skip_if_finished=True)
        released += 1
    return released


def fail_stale(study: optuna.Study, on_stale: Callable[[FrozenTrial], None]) -> int:
    """Mark RUNNING trials whose worker is gone FAIL (reason stale) and call `on_stale` for each; their slots
    are then lost and planned again. RDB storages judge by Optuna's heartbeat, local ones by the pid."""
    storage, stale = internals.storage_of(study), internals.stale_trial_ids(study)
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = trial.user_attrs.get(Attr.WORKER)
        # claims run under the lock this runs under: a running trial with no worker was claimed by one that died
        if internals.trial_id(trial) not in stale and (worker is None or worker_dead(worker)):
            stale.append(internals.trial_id(trial))
    for trial_id in stale:
        trial = storage.get_trial(trial_id)
        reason = f"stale: worker {trial.user_attrs.get(Attr.WORKER, '?')} stopped without finishing"
        try:
            storage.set_trial_user_attr(trial_id, Attr.OUTCOME, Outcome.STALE.value)
            storage.set_trial_user_attr(trial_id, Attr.REASON, reason)
            storage.set_trial_state_values(trial_id, TrialState.FAIL)
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # it finished after all
        on_stale(storage.get_trial(trial_id))
    return len(stale)


class Heartbeat:
    """A thread that beats for the trial this worker runs (RDB storages) and calls `extra` each beat."""

    def __init__(self, extra: Callable[[], None] | None = None, interval: float = HEARTBEAT_SECONDS):
        import threading

        self.extra, self.interval = extra, interval
        self.current: tuple[Any, int] | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="harness-heartbeat")
        self._thread.start()

    def beat_for(self, storage: Any, trial_id: int | None) -> None:
        self.current = None if trial_id is None else (storage, trial_id)
        self._beat()

    def _beat(self) -> None:
        current = self.current
        try:
            if current is not None and internals.heartbeat_enabled(current[0]):
                current[0].record_heartbeat(current[1])
            if self.extra is not None:
                self.extra()
        except Exception as error:  # noqa: BLE001 - a missed beat is retried at the next; the work goes on
            logging.getLogger("harness").debug("heartbeat missed: %s", error)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._beat()

    def stop(self) -> None:
        self._stop.set()
