"""Ctrl-C at the moments a signal handler cannot choose (KeyboardInterrupt raised in the study's own process):
just after a child run opened (the first: a pretraining), and while the report is published. Each exits 130
and leaves nothing RUNNING (the parent KILLED, the cut-off child KILLED with its reason, the finished runs
FINISHED); the rerun of an interrupted publication publishes. A real SIGINT to a group of forked workers
mid-search is tests/test_workers.py's."""

from __future__ import annotations

import shutil

import mlflow.pytorch
import optuna
import pytest

import harness.run.checkpoints
from harness.schema import StudyAttr
from harness.stores import Stores
from harness.study import main
from tests.test_end_to_end import NAME, TINY
from tests.test_workers import Tiny


@pytest.mark.slow
def test_ctrl_c_just_after_a_child_run_opens_ends_it_killed_with_its_reason(tmp_path, monkeypatch):
    tiny = Tiny(tmp_path)
    argv = tiny.args()[3:]
    real_open = harness.run.checkpoints.start_child_run

    def open_then_interrupt(*args, **kwargs):  # the run is open in MLflow, its `with` not yet entered
        real_open(*args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(harness.run.checkpoints, "start_child_run", open_then_interrupt)  # the first child: pretraining
    assert main(argv) == 130
    runs = {r.data.tags.get("phase"): r for r in tiny.runs()}
    assert set(runs) == {"study", "pretrain"} and runs["study"].info.status == "KILLED"
    assert runs["pretrain"].info.status == "KILLED" and "interrupted" in runs["pretrain"].data.tags["state_reason"]


@pytest.mark.slow
def test_ctrl_c_while_the_report_is_published_exits_130_and_the_rerun_publishes(
        finished, tmp_path, monkeypatch, capsys):
    from harness.reporting import html

    root, reports = tmp_path / "mlruns", tmp_path / "reports"
    shutil.copytree(finished / "mlruns", root)  # every run done ...
    stores = Stores(root)
    optuna.load_study(study_name=NAME, storage=stores.optuna_url).set_user_attr(StudyAttr.REPORT_RECORDS, None)
    argv = ["sgd_vs_adam", *TINY, "--root", str(root), "--reports", str(reports)]  # ... and not yet published

    def interrupt(*args, **kwargs):  # as the report's HTML page is written
        raise KeyboardInterrupt

    monkeypatch.setattr(html, "render_html", interrupt)  # publishing imports it when it publishes
    assert main(argv) == 130
    assert "rerun the same command to publish the report" in capsys.readouterr().err
    mlflow.set_tracking_uri(stores.mlflow_uri)
    records = mlflow.search_runs(experiment_names=[NAME], output_format="list")
    assert not [r for r in records if r.info.status == "RUNNING"]
    confirm = [r for r in records if r.data.tags.get("phase") == "confirm"]
    assert confirm and all(r.info.status == "FINISHED" for r in confirm)  # publishing reopens none of them
    assert not (reports / NAME / "report.html").exists()
    monkeypatch.undo()
    assert main(argv) == 0  # publishes what the interruption cut off
    assert (reports / NAME / "README.md").is_file() and "report rebuilt" in capsys.readouterr().out


def test_a_ctrl_c_that_compiled_code_prints_and_swallows_is_kept_for_the_next_slot(monkeypatch, capsys):
    """Cython (scipy's Sobol set-up) prints a KeyboardInterrupt through sys.excepthook, then reports it as
    unraisable and carries on: a worker ran a whole study after such a Ctrl-C. Both hooks keep it, silently."""
    import sys

    from harness.run import worker

    monkeypatch.setattr(sys, "excepthook", worker._keep_printed_interrupts(sys.excepthook))
    monkeypatch.setattr(sys, "unraisablehook", worker._keep_interrupts(sys.unraisablehook))
    worker._SWALLOWED.clear()
    sys.excepthook(KeyboardInterrupt, KeyboardInterrupt(), None)  # what Cython's full traceback does first
    assert worker._SWALLOWED.is_set() and capsys.readouterr().err == ""
    with pytest.raises(KeyboardInterrupt):  # raised where the worker takes its next slot
        worker._unless_interrupted(lambda: None)
    sys.excepthook(ValueError, ValueError("other"), None)  # anything else is printed as before
    assert "ValueError: other" in capsys.readouterr().err and not worker._SWALLOWED.is_set()


def test_ctrl_c_while_the_study_is_checked_exits_130_and_writes_nothing(tmp_path, monkeypatch, capsys):
    import harness.study

    def interrupt(spec):  # as PyTorch is imported for the checks, say
        raise KeyboardInterrupt

    monkeypatch.setattr(harness.study, "check", interrupt)
    assert main(["sgd_vs_adam", *TINY, "--root", str(tmp_path / "mlruns")]) == 130
    assert "nothing was written" in capsys.readouterr().err and not (tmp_path / "mlruns").exists()


def test_a_cursor_sqlalchemy_cannot_close_after_a_ctrl_c_is_not_logged_and_other_pool_errors_are(caplog):
    """A Ctrl-C that cuts a fetch short leaves SQLAlchemy unable to close the cursor (the connection went with the
    interrupt); it logged that with a traceback under the one line a Ctrl-C answers with."""
    import logging
    import sqlite3

    from harness.cli import quiet_interrupt_cleanup

    quiet_interrupt_cleanup()
    pool = logging.getLogger("sqlalchemy.pool.impl.QueuePool")

    def close_fails(after_interrupt: bool) -> None:
        try:
            try:
                if after_interrupt:
                    raise KeyboardInterrupt
                raise ValueError("a fetch that failed on its own")
            except (KeyboardInterrupt, ValueError):
                raise sqlite3.ProgrammingError("Cannot operate on a closed database.") from None
        except sqlite3.ProgrammingError:
            pool.error("Error closing cursor", exc_info=True)

    with caplog.at_level(logging.ERROR):
        close_fails(after_interrupt=True)
        assert not caplog.records
        close_fails(after_interrupt=False)
        assert [r.getMessage() for r in caplog.records] == ["Error closing cursor"]
    store = logging.getLogger("mlflow.store.db.utils")  # a cleanup write after the interrupt, the lock taken
    seen: list[logging.LogRecord] = []
    catch = logging.Handler()
    catch.emit = seen.append  # MLflow's loggers keep to their own handler: caplog would see nothing
    store.addHandler(catch)
    try:
        for cause in (KeyboardInterrupt, ValueError):
            try:
                try:
                    raise cause
                except (KeyboardInterrupt, ValueError) as first:
                    raise sqlite3.OperationalError("database is locked") from first
            except sqlite3.OperationalError:
                store.exception("SQLAlchemy database error. The following exception is caught.")
    finally:
        store.removeHandler(catch)
    assert [type(r.exc_info[1].__cause__) for r in seen] == [ValueError]
