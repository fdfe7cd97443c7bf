"""A storage outage (PostgreSQL restarting, a network blip) is waited out by type, not message: the slot it
cut off runs again, and the queue's planning, claiming and recording are retried until the storage answers."""

from __future__ import annotations

import errno
import sqlite3

import optuna
import pytest
import sqlalchemy.exc

from harness.run.outage import StorageGone, is_outage, retrying
from harness.run.slot import run_slot
from harness.run.work import Job
from harness.schema import Outcome, Phase, counts
from harness.spec import Arm


def _outage() -> Exception:
    """What Optuna raises when PostgreSQL shuts down under it: its own error, caused by the driver's."""
    try:
        try:
            raise sqlalchemy.exc.OperationalError("SELECT pg_advisory_lock(1)", {}, Exception("AdminShutdown"))
        except sqlalchemy.exc.OperationalError as cause:
            raise optuna.exceptions.StorageInternalError("An exception is raised during the commit") from cause
    except optuna.exceptions.StorageInternalError as error:
        return error


def test_an_outage_is_told_by_the_errors_type_through_optunas_wrapper():
    assert is_outage(_outage()) and is_outage(sqlalchemy.exc.InterfaceError("x", {}, Exception()))
    assert not is_outage(optuna.exceptions.StorageInternalError("exceeding max length"))  # the data, not the server
    assert not is_outage(ValueError("connection refused"))  # the words do not decide


def test_retrying_waits_out_an_outage_with_backoff_and_gives_up_clearly():
    calls, waits = [], []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise _outage()
        return "claimed"

    assert retrying(flaky, "taking the next slot", sleep=waits.append) == "claimed" and waits == [1.0, 2.0]
    with pytest.raises(StorageGone, match="unreachable for 0 s while recording"):
        retrying(lambda: (_ for _ in ()).throw(_outage()), "recording", patience=0, sleep=waits.append)
    with pytest.raises(ValueError):  # anything else is raised at once
        retrying(lambda: (_ for _ in ()).throw(ValueError("bad")), "x", sleep=waits.append)
    import mlflow
    import requests

    def refused(url: str) -> requests.exceptions.ConnectionError:
        return requests.exceptions.ConnectionError("refused", request=requests.Request("GET", url).prepare())

    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri("http://127.0.0.1:9")
    try:  # the tracking server in use, past MLflow's own retries: an outage, named as such
        with pytest.raises(StorageGone, match="the MLflow tracking server stayed unreachable for 0 s while publ"):
            retrying(lambda: (_ for _ in ()).throw(refused("http://127.0.0.1:9/api/2.0/mlflow/runs/get")),
                     "publishing", patience=0, sleep=waits.append)
        assert not is_outage(refused("https://huggingface.co/timm/resnet18/model.safetensors"))  # not a store
    finally:
        mlflow.set_tracking_uri(previous)


def test_a_slot_cut_off_by_an_outage_is_interrupted_and_runs_again_while_the_worker_goes_on():
    study = optuna.create_study(direction="maximize")
    study.enqueue_trial({}, user_attrs={"slot": "0"})
    job = Job(Phase.SEARCH, Arm("a", "sgd"), study, study.ask())

    def run(trial):
        raise _outage()

    outcome, value = run_slot(job, lambda: None, run)  # returns: the worker takes the next slot
    trial = study.trials[0]
    assert outcome is Outcome.INTERRUPTED and value is None and not counts(trial)
    assert trial.user_attrs["outcome"] == "interrupted"
    assert "storage was unreachable" in trial.user_attrs["state_reason"]


def test_a_full_disk_is_told_by_its_code_and_says_where():
    import sqlite3

    from harness.run.outage import disk_full

    assert disk_full(OSError(errno.ENOSPC, "No space left on device", "/data/ckpt.pt")) == "writing /data/ckpt.pt"
    full_db = sqlite3.OperationalError("database or disk is full")
    full_db.sqlite_errorcode = 13  # as sqlite3 sets it
    try:
        raise sqlalchemy.exc.OperationalError("INSERT", {}, full_db) from full_db
    except sqlalchemy.exc.OperationalError as wrapped:
        assert disk_full(wrapped) == "writing an SQLite store"
    assert disk_full(OSError(errno.EACCES, "Permission denied")) is None  # another error
    assert disk_full(ValueError("No space left on device")) is None  # the words do not decide


def test_a_run_that_meets_a_full_disk_is_interrupted_not_failed_and_the_worker_stops():

    from harness.run.outage import DiskFull

    study = optuna.create_study(direction="maximize")
    study.enqueue_trial({}, user_attrs={"slot": "0"})
    job = Job(Phase.SEARCH, Arm("a", "sgd"), study, study.ask())

    def run(trial):
        raise OSError(errno.ENOSPC, "No space left on device", "/data/mlruns/checkpoints/x.pt")

    with pytest.raises(DiskFull, match=r"the disk is full \(writing /data/mlruns/checkpoints/x.pt\).*rerun"):
        run_slot(job, lambda: None, run)
    trial = study.trials[0]
    assert not counts(trial) and trial.user_attrs["outcome"] == "interrupted"  # it runs again after a rerun
    assert "the disk is full" in trial.user_attrs["state_reason"]


def test_a_tracking_server_away_is_said_on_stderr_while_mlflows_client_retries_and_is_an_outage(monkeypatch, capsys):
    """MLflow's own client retries a tracking server that does not answer; each retry is a line on stderr, and
    once its retries are spent the error is an outage (the run is interrupted and runs again), not a failure."""
    import socket

    import mlflow

    from harness.run.outage import announce_tracking_retries
    from harness.run.outcomes import outcome_for

    with socket.socket() as s:  # a port nothing listens on: connection refused, as while a server restarts
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}"
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    monkeypatch.setattr(mlflow, "get_tracking_uri", lambda: url)  # the store a worker uses (it sets it so)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "0")
    announce_tracking_retries(url)
    with pytest.raises(Exception) as raised:
        mlflow.MlflowClient(url).get_experiment_by_name("anything")
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("tracking server")]
    assert lines and all(url in line and "MLflow's client retries" in line for line in lines), lines
    assert is_outage(raised.value)
    assert outcome_for(raised.value)[0] is Outcome.INTERRUPTED


def test_a_full_disk_stops_the_worker_within_seconds_naming_the_free_space(monkeypatch):
    """A full disk is rarely freed within minutes: the worker gives up after DISK_FULL_PATIENCE, not the ten
    minutes it waits for a database restart, with one line that names where and the free space."""
    from harness.run import outage

    clock = [0.0]
    monkeypatch.setattr(outage.time, "monotonic", lambda: clock[0])
    waits = []

    def sleep(seconds):
        waits.append(seconds)
        clock[0] += seconds

    def full():  # SQLite's "database or disk is full", as SQLAlchemy (under Optuna) raises it
        cause = sqlite3.OperationalError("database or disk is full")
        cause.sqlite_errorcode = 13
        raise sqlalchemy.exc.OperationalError("INSERT", {}, cause) from cause

    with pytest.raises(StorageGone, match=r"the disk is full \(writing an SQLite store, \d+ MB free there\) for"):
        retrying(full, "recording a trial", sleep=sleep)
    assert outage.DISK_FULL_PATIENCE <= sum(waits) < outage.DISK_FULL_PATIENCE + 8
