"""The work queue in Optuna's storage: slots planned once, claimed once, and a cut-off slot planned again with
its parameters."""

import time

import optuna
import pytest
from optuna.trial import TrialState

from harness import internals
from harness.run import queue
from harness.stores import lock_file


@pytest.fixture
def study(tmp_path):
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'q.db'}")
    return optuna.create_study(study_name="s/arm", storage=storage, direction="maximize")


SLOTS = {str(i): ({"lr": 10.0 ** -i}, {}) for i in range(3)}


def test_planning_twice_enqueues_each_slot_once(study):
    assert queue.plan(study, SLOTS) == 3
    assert queue.plan(study, SLOTS) == 0
    assert [t.user_attrs["slot"] for t in study.trials] == ["0", "1", "2"]
    assert queue.slot_status(study) == {"0": "pending", "1": "pending", "2": "pending"}


def test_claim_takes_only_waiting_trials_and_never_creates_one(study):
    queue.plan(study, SLOTS)
    claimed = [queue.claim(study) for _ in range(4)]
    assert [(t.number, place) for t, place in claimed[:3]] == [(0, 1), (1, 2), (2, 3)] and claimed[3] is None
    assert len(study.trials) == 3  # ask() would have made a fourth


def test_a_slots_place_counts_the_slots_done_or_running_whoever_claimed_them(study):
    queue.plan(study, SLOTS)
    first, _ = queue.claim(study)
    first.set_user_attr("outcome", "interrupted")  # cut off: its slot is lost and no longer counts
    study.tell(first, state=TrialState.FAIL)
    assert queue.claim(study)[1] == 1  # slot 1, the first done or running
    queue.plan(study, SLOTS)  # slot 0 again
    assert queue.claim(study)[1] == 2 and queue.claim(study)[1] == 3


def test_an_interrupted_slot_is_planned_again_with_the_same_parameters(study):
    queue.plan(study, SLOTS)
    trial, _ = queue.claim(study)
    trial.suggest_float("lr", 1e-9, 1.0, log=True)
    trial.set_user_attr("outcome", "interrupted")
    trial.set_user_attr("state_reason", "interrupted (Ctrl-C)")
    study.tell(trial, state=TrialState.FAIL)
    assert queue.slot_status(study)["0"] == "lost"
    assert queue.plan(study, SLOTS) == 1
    redo = study.trials[-1]
    assert redo.user_attrs["slot"] == "0" and redo.system_attrs["fixed_params"] == {"lr": 1.0}


def test_after_ctrl_c_a_worker_releases_its_claims_and_one_cut_off_before_it_named_its_worker(study):
    """A Ctrl-C inside a claim, after `ask` but before the claim names its worker, left that slot RUNNING; the
    worker's release sweeps it (under the lock no other claim can be half done), and its own, not another's."""
    queue.plan(study, SLOTS)
    own, _ = queue.claim(study)
    half = study.ask()  # the claim the Ctrl-C cut off: RUNNING, no worker named yet
    other, _ = queue.claim(study)
    other.set_user_attr("worker", "elsewhere:1:2:3")  # another live worker's
    assert queue.release_own(study, "interrupted (Ctrl-C)") == 2
    states = {t.number: (t.state, t.user_attrs.get("outcome")) for t in study.get_trials()}
    assert states[own.number] == states[half.number] == (TrialState.FAIL, "interrupted")
    assert states[other.number][0] == TrialState.RUNNING
    assert queue.slot_status(study)[own.user_attrs["slot"]] == "lost"  # so it is planned and run again
    assert queue.plan(study, SLOTS) == 2


def test_a_diverged_or_erroring_trial_counts_and_is_not_rerun(study):
    queue.plan(study, SLOTS)
    for outcome in ("diverged", "failed"):
        trial, _ = queue.claim(study)
        trial.set_user_attr("outcome", outcome)
        study.tell(trial, state=TrialState.FAIL)
    assert queue.slot_status(study) == {"0": "done", "1": "done", "2": "pending"}
    assert queue.plan(study, SLOTS) == 0


def test_a_running_trial_of_a_dead_local_worker_is_stale(study):
    queue.plan(study, SLOTS)
    trial, _ = queue.claim(study)
    host, _pid, ticks, space = queue.worker_id().split(":")
    dead = f"{host}:{2**22 + 7}:{ticks}:{space}"  # above the kernel's pid_max default: no such process
    trial.set_user_attr("worker", dead)
    closed = []
    assert queue.fail_stale(study, closed.append) == 1
    (frozen,) = closed
    assert frozen.state == TrialState.FAIL and frozen.user_attrs["outcome"] == "stale"
    assert queue.slot_status(study)["0"] == "lost"


def test_a_running_trial_that_no_worker_claimed_is_stale(study):
    queue.plan(study, SLOTS)
    study.ask()  # popped, but its worker died before it could sign the trial
    assert queue.fail_stale(study, lambda t: None) == 1


def test_a_worker_in_another_pid_space_is_judged_by_heartbeat_not_pid():
    host, _pid, ticks, _space = queue.worker_id().split(":")
    assert not queue.worker_dead(f"{host}:{2**22 + 7}:{ticks}:another-container")


def test_a_live_worker_is_not_stale(study):
    queue.plan(study, SLOTS)
    queue.claim(study)  # this process
    assert queue.fail_stale(study, lambda t: None) == 0


def test_a_trial_whose_heartbeat_stopped_is_stale_on_an_rdb_storage(tmp_path):
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'hb.db'}", heartbeat_interval=1, grace_period=1)
    study = optuna.create_study(study_name="s/arm", storage=storage)
    queue.plan(study, SLOTS)
    trial, _ = queue.claim(study)
    trial.set_user_attr("worker", "another-machine:1:1")  # not judged by pid: only the heartbeat tells
    storage.record_heartbeat(internals.trial_id(trial))
    assert queue.fail_stale(study, lambda t: None) == 0
    time.sleep(2.5)
    assert queue.fail_stale(study, lambda t: None) == 1


def test_the_lock_file_lies_beside_the_storage_file(tmp_path):
    assert lock_file(f"sqlite:///{tmp_path}/a/optuna.db", tmp_path) == tmp_path / "a" / ".optuna.db.lock"
    assert lock_file(f"journal:{tmp_path}/j.log", tmp_path) == tmp_path / ".j.log.lock"
    with queue.store_lock(f"sqlite:///{tmp_path}/a/optuna.db", tmp_path):
        assert (tmp_path / "a" / ".optuna.db.lock").exists()


def test_a_worker_asks_its_drained_studies_again_once_another_has_planned(tmp_path):
    """Two workers on one store. B has drained sgd-frozen's search and moved on to adam-frozen's; A then plans
    sgd-frozen's lost slot again. B's next claim is that slot, in arm order, not adam-frozen's next: a stale
    view had two workers walk two arms in step, seed by seed, each waiting on the other's pretraining."""
    import dataclasses

    from harness.run.work import open_work
    from harness.stores import Stores
    from harness.study_file import load_study

    spec = dataclasses.replace(load_study("sgd_vs_adam"), n_trials=2, searches=1)
    stores = Stores(tmp_path / "mlruns")
    a, b = (open_work(spec, stores, lambda trial: None) for _ in range(2))
    first, second, third = (b.next_job(lambda trial: None) for _ in range(3))
    assert [j.arm.name for j in (first, second, third)] == ["sgd-frozen", "sgd-frozen", "adam-frozen"]
    first.trial.set_user_attr("outcome", "interrupted")  # cut off: its slot is lost, to plan again
    first.study.tell(first.trial, state=TrialState.FAIL)
    with a.lock():
        a.plan(lambda trial: None)
    again = b.next_job(lambda trial: None)
    assert (again.arm.name, again.trial.user_attrs["slot"]) == ("sgd-frozen", first.trial.user_attrs["slot"])
