"""Ctrl-C meeting a locked SQLite store: every worker got the same Ctrl-C and closes its runs at once, so a cleanup
write can find MLflow's store locked past its own busy wait. The worker tries again, ends in one line, exits 130,
and leaves nothing RUNNING (it printed a sqlite3 'database is locked' traceback and left its parent run RUNNING,
since MLflow's end_run takes a run off its stack before it writes the end; a lock met while a run ended turned the
Ctrl-C into an outage, and the worker ran on).

Deterministic: another connection holds MLflow's write lock from the moment of the Ctrl-C for two seconds, and
MLflow's busy wait is cut from 20 s to 0.1 s so that the lock is met as it is past 20 s."""

from __future__ import annotations

import os
import signal
import sqlite3
import threading

import mlflow
import optuna
import pytest
import sqlalchemy
from sqlalchemy.engine import Engine

import harness.run.objective
import harness.run.progress
from harness.study import main
from tests.test_workers import Tiny

HOLD_SECONDS = 2.0


@pytest.fixture
def short_busy_wait():
    """MLflow waits 20 s for a lock (PRAGMA busy_timeout = 20000 on each session); here 0.1 s."""

    def shorter(conn, cursor, statement, parameters, context, executemany):
        return statement.replace("busy_timeout = 20000", "busy_timeout = 100"), parameters

    sqlalchemy.event.listen(Engine, "before_cursor_execute", shorter, retval=True)
    yield
    sqlalchemy.event.remove(Engine, "before_cursor_execute", shorter)


def _lock_then_ctrl_c(tiny: Tiny, holders: list[threading.Thread]) -> None:
    """Take MLflow's write lock from another connection, release it HOLD_SECONDS later; then Ctrl-C this process
    as a terminal does (SIGINT)."""
    taken = threading.Event()

    def hold():
        with sqlite3.connect(tiny.stores.root / "mlflow.db", timeout=30, isolation_level=None) as db:
            db.execute("BEGIN IMMEDIATE")  # the write lock: other writers get 'database is locked'
            taken.set()
            threading.Event().wait(HOLD_SECONDS)
            db.execute("ROLLBACK")

    holders.append(threading.Thread(target=hold, daemon=True))
    holders[0].start()
    taken.wait(30)
    os.kill(os.getpid(), signal.SIGINT)


def _where(monkeypatch, tiny: Tiny, moment: str) -> list[threading.Thread]:
    """Patch the Ctrl-C in at `moment`: 'between slots' (after a slot's line) or 'mid-run' (a trial training)."""
    holders: list[threading.Thread] = []
    if moment == "between slots":
        real = harness.run.progress.slot_line

        def line_then_interrupt(*args, **kwargs):
            real(*args, **kwargs)
            if not holders:
                _lock_then_ctrl_c(tiny, holders)

        monkeypatch.setattr(harness.run.progress, "slot_line", line_then_interrupt)
    else:
        real_fit = harness.run.objective.fit

        def fit_interrupted(*args, **kwargs):
            if not holders:
                _lock_then_ctrl_c(tiny, holders)
            return real_fit(*args, **kwargs)

        monkeypatch.setattr(harness.run.objective, "fit", fit_interrupted)
    return holders


@pytest.mark.slow
@pytest.mark.parametrize("moment", ["between slots", "mid-run"])
def test_ctrl_c_meeting_a_locked_store_ends_in_one_line_and_leaves_nothing_running(
        tmp_path, monkeypatch, capfd, short_busy_wait, moment):
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal (pytest may ignore it)
    tiny = Tiny(tmp_path)
    argv = tiny.args()[3:]
    holders = _where(monkeypatch, tiny, moment)
    try:
        code = main(argv)
    finally:
        signal.signal(signal.SIGINT, previous)
    out, err = capfd.readouterr()
    assert holders, "the Ctrl-C never came"
    holders[0].join(30)
    assert code == 130, out + err
    assert "Traceback" not in out + err and "database is locked" not in out + err, err
    said = [line for line in err.splitlines() if line.strip() and not line.startswith(("pretraining", "  pretrained"))]
    assert said == [(f"interrupted: finished trials are kept in {tiny.stores.root}; rerun the same command to resume "
                     "(what was cut off runs again, with the same settings)")], err
    assert not [r.info.run_name for r in tiny.runs() if r.info.status == "RUNNING"], "an MLflow run was left RUNNING"
    parents = [r for r in tiny.runs() if r.data.tags.get("phase") == "study"]
    assert [r.info.status for r in parents] == ["KILLED"]
    for study in tiny.studies_of().values():
        assert not study.get_trials(states=(optuna.trial.TrialState.RUNNING,)), study.study_name
    monkeypatch.undo()
    mlflow.set_tracking_uri(tiny.stores.mlflow_uri)
    assert main(argv) == 0  # the rerun finishes what the Ctrl-C cut off
