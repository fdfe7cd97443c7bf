"""A full disk stops a study within seconds with one line that names the store and the room left on its disk, exit
75, and nothing else: no library's tracebacks or retry lines, one line for all the workers. A disk freed while the
workers wait lets them carry on; a worker that stopped while the others finished the study leaves nothing to
rerun, so the command exits 0.

The end-to-end tests fill a small tmpfs (mounting one needs root, as on CI; elsewhere they skip and
`test_a_store_that_cannot_grow_stops_the_study_in_one_line` simulates the full disk inside SQLite)."""

from __future__ import annotations

import errno
import logging
import os
import re
import sqlite3
import subprocess
import time
import types
from pathlib import Path

import pytest
import sqlalchemy.exc

from harness.run import launch, outage, space
from harness.run.resources import WorkerPlan
from harness.stores import Stores
from tests.test_workers import REPO, Tiny, assert_study_done_exactly_once


def _raise(error: BaseException) -> None:
    raise error


def _raised_in(module: str, error: BaseException) -> BaseException:
    """`error` raised from a frame of `module`, as a library raises it (told by its frames, never its text)."""
    try:
        types.FunctionType(_raise.__code__, {"__name__": module})(error)
    except BaseException as raised:  # noqa: BLE001 - whatever it is, it is what the test asked for
        return raised
    raise AssertionError("not raised")


def _sqlite_full(raised_in: str | None = None) -> Exception:
    """SQLite's "database or disk is full" as SQLAlchemy raises it, from a frame of module `raised_in`."""
    cause = sqlite3.OperationalError("database or disk is full")
    cause.sqlite_errorcode = space.SQLITE_FULL
    error = sqlalchemy.exc.OperationalError("INSERT", {}, cause)
    error.__cause__ = cause
    return error if raised_in is None else _raised_in(raised_in, error)


def _locked() -> Exception:
    cause = sqlite3.OperationalError("database is locked")
    cause.sqlite_errorcode = outage.SQLITE_BUSY
    error = sqlalchemy.exc.OperationalError("UPDATE runs", {}, cause)
    error.__cause__ = cause
    return error


@pytest.fixture
def watched(tmp_path):
    stores = Stores(tmp_path / "mlruns")
    stores.root.mkdir()
    with space.watching(stores):
        yield stores


def test_a_full_disk_names_the_store_that_could_not_write_and_the_room_on_its_disk(watched):
    assert outage.disk_full(_sqlite_full("optuna.storages._rdb.storage")) == \
        f"writing the Optuna storage {watched.root / 'optuna.db'}"
    assert outage.disk_full(_sqlite_full("mlflow.store.db.utils")) == \
        f"writing the MLflow store {watched.root / 'mlflow.db'}"
    assert outage.disk_full(_sqlite_full()) == f"writing an SQLite store in {watched.root}"
    assert re.fullmatch(r", \d+ MB free there", space.free_space(_sqlite_full("optuna.x")))
    # two workers meeting the same full disk through different stores stop for one reason: one line for both
    assert outage.gist(_sqlite_full("optuna.x")) == outage.gist(_sqlite_full("mlflow.x")) != \
        outage.gist(outage.StorageGone("the storage stayed unreachable"))


def test_a_checkpoint_torch_cannot_write_is_a_full_disk_only_when_the_disk_is_all_but_full(watched, monkeypatch):
    def torch_failed() -> BaseException:  # torch.save's own error on a full disk: no errno, no file name
        return _raised_in("torch.serialization", RuntimeError("unexpected pos 128 vs 0"))

    monkeypatch.setattr(space, "FULL", space._FullDisk())
    assert outage.disk_full(torch_failed()) is None  # room on the disk: another failure, not the disk
    monkeypatch.setattr(space, "free_bytes", lambda path: 1024)
    assert outage.disk_full(torch_failed()).startswith("writing a checkpoint")
    assert outage.disk_full(RuntimeError("unexpected pos 128 vs 0")) is None  # not torch's writer


def test_every_write_of_a_worker_shares_one_patience_for_a_full_disk(monkeypatch):
    """The curve, the trial's record, the next claim: each waited 15 s on its own, and a worker stopped after a
    minute instead of seconds. Silent meanwhile: the one line is the worker's when it stops."""
    clock = [1000.0]
    monkeypatch.setattr(outage.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(space, "FULL", space._FullDisk())

    def sleep(seconds):
        clock[0] += seconds

    def full():
        raise _sqlite_full()

    with pytest.raises(outage.StorageGone):
        outage.retrying(full, "recording trial 0's curve", patience=8, sleep=sleep)  # its own patience: 8 s
    with pytest.raises(outage.StorageGone, match=r"the disk is full \(writing an SQLite store.* MB free there\)"):
        outage.retrying(full, "recording trial 0", sleep=sleep)
    assert clock[0] - 1000 < outage.DISK_FULL_PATIENCE + 1  # not 8 + 15
    clock[0] += 60  # a quiet minute later (the disk had room again): a new full disk waits anew
    with pytest.raises(outage.StorageGone, match=r"for 15 s"):
        outage.retrying(full, "taking the next slot", sleep=sleep)


def test_a_run_cut_off_by_a_full_disk_waits_for_space_and_goes_on_once_there_is_room(monkeypatch, watched):
    clock, waits = [0.0], []
    monkeypatch.setattr(outage.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(space, "FULL", space._FullDisk())
    error = OSError(errno.ENOSPC, "No space left on device", str(watched.root / "artifacts" / "x"))

    def sleep(seconds):
        waits.append(seconds)
        clock[0] += seconds

    monkeypatch.setattr(space, "free_bytes", lambda path: 0)
    outage.wait_for_space(error, "running trial 0", sleep=sleep)  # waits, and the worker takes the next slot
    assert waits == [1.0]
    monkeypatch.setattr(space, "free_bytes", lambda path: 2**30)  # freed: on at once
    outage.wait_for_space(error, "running trial 1", sleep=sleep)
    assert waits == [1.0]
    with pytest.raises(outage.StorageGone, match="writing .*x, 1024 MB free there"):  # room, yet no write (a quota)
        for _ in range(10):
            outage.wait_for_space(error, "running trial 2", sleep=sleep)
    assert sum(waits[1:]) == outage.DISK_FULL_PATIENCE  # counted afresh from the room, once


def test_a_cleanup_write_waits_out_a_lock_and_returns_what_still_fails():
    calls, waits = [], []

    def locked_twice():
        calls.append(1)
        if len(calls) <= 2:
            raise _locked()

    assert outage.settle(locked_twice, sleep=waits.append) is None and len(calls) == 3
    assert isinstance(outage.settle(lambda: _raise(_locked()), patience=0), sqlalchemy.exc.OperationalError)
    assert isinstance(outage.settle(lambda: _raise(ValueError("x"))), ValueError)  # said by the caller, not raised


def test_libraries_do_not_log_what_the_harness_reports_itself():
    """MLflow logs every failed write with its chained tracebacks, and SQLAlchemy its pool's; for a full disk or
    a store that is away the harness waits and says so in one line."""
    seen: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = seen.append
    logger = logging.getLogger("mlflow.store.db.test_full_disk")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        outage.quiet_reported_errors()
        for error in (_sqlite_full(), _locked(), ValueError("a bug")):
            try:
                raise error
            except Exception:
                logger.exception("SQLAlchemy database error. The following exception is caught.")
        logger.warning("engine could not be created: %s; retried in %.1f s", _sqlite_full(), 0.1)
    finally:
        logger.removeHandler(handler)
    assert [type(r.exc_info[1]) for r in seen] == [ValueError]


# --- the command's one line and exit status, for all its workers -----------------------------------------


def _workers(outcomes: list[tuple[str, int]], tmp_path: Path) -> int:
    """A command of len(outcomes) forked workers; the i-th to start says outcomes[i]: ("stopped", 75),
    ("finished", 0) or ("", code)."""
    def main(argv: list[str]) -> int:
        for i, (said, code) in enumerate(outcomes):
            try:
                os.close(os.open(tmp_path / f"worker{i}", os.O_CREAT | os.O_EXCL))
            except FileExistsError:
                continue
            if said == "stopped":
                launch.tell_stopped(f"\nstopped: the disk is full (worker {i})", "disk full: device 1")
            elif said == "finished":
                time.sleep(0.5)  # after the other stopped
                launch.tell_finished()
            return code
        return 1

    return launch.wait_for(launch.launch_workers(["study"], WorkerPlan(len(outcomes), 1), main))


def test_workers_that_stop_for_one_full_disk_say_it_once_and_exit_75(tmp_path, capfd):
    assert _workers([("stopped", 75), ("stopped", 75)], tmp_path) == 75
    err = capfd.readouterr().err
    assert err.count("stopped: the disk is full") == 1, err


def test_a_stop_that_another_worker_made_moot_by_finishing_the_study_exits_0(tmp_path, capfd):
    assert _workers([("stopped", 75), ("finished", 0)], tmp_path) == 0
    assert "nothing is left to rerun" in capfd.readouterr().out
    (tmp_path / "worker0").unlink()
    (tmp_path / "worker1").unlink()
    assert _workers([("stopped", 75), ("", 0)], tmp_path) == 75  # finished, but another publishes: not known done


# --- a real full disk: a small tmpfs ----------------------------------------------------------------------


def _mount(disk: Path, size: str) -> str | None:
    """Mount a tmpfs of `size` at `disk`; why not, if it cannot be (it takes root)."""
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(disk)], check=False,
                             capture_output=True, text=True)
    return (mounted.stderr.strip() or f"mount exited {mounted.returncode}") if mounted.returncode else None


@pytest.fixture
def small_disk(tmp_path):
    """A 48 MB tmpfs (root only, as on CI; skips elsewhere), unmounted after the test."""
    disk = tmp_path / "disk"
    if why := _mount(disk, "48m"):
        pytest.skip(f"cannot mount a tmpfs here ({why})")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=False)


def _fill(disk: Path) -> Path:
    """Write zeros until the disk is full; returns the file (delete it to free the space)."""
    filler = disk / "filler"
    with filler.open("wb") as f:
        try:
            while True:
                f.write(b"\0" * 2**20)
                f.flush()
        except OSError as error:
            assert error.errno == errno.ENOSPC
    return filler


def _run_filling(tiny: Tiny, disk: Path, free_after: float | None) -> tuple[int, str, float]:
    """Run `tiny` with 2 workers; fill its disk at its first slot line; free it `free_after` s later (None:
    never). Returns the exit status, everything printed, and the seconds from the fill to the exit."""
    proc = subprocess.Popen(tiny.args("--workers", "2"), cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    out, filled = [], None
    for line in proc.stdout:
        out.append(line)
        if filled is None and re.match(r"\[\d+/\d+", line):  # a slot line: the study is under way
            filler, filled = _fill(disk), time.monotonic()
            if free_after is not None:
                time.sleep(free_after)
                filler.unlink()
    proc.wait(timeout=300)
    return proc.returncode, "".join(out), time.monotonic() - (filled or time.monotonic())


@pytest.mark.slow
def test_a_full_disk_stops_the_study_within_seconds_in_one_line_and_the_rerun_carries_on(tmp_path, small_disk):
    tiny = Tiny(tmp_path)
    tiny.stores = Stores(small_disk / "mlruns")
    code, out, seconds = _run_filling(tiny, small_disk, free_after=None)
    assert code == 75, out
    lines = [line for line in out.splitlines() if line.strip()]
    said = [line for line in lines if not re.match(r"(checking|started|pretraining|  pretrained|\[\d+/\d+)", line)]
    assert len(said) == 1, said  # no traceback, no retry line, one line for both workers
    assert re.match(r"stopped: the disk is full \(writing .*, \d+ MB free there\) for \d+ s while .*; finished work "
                    r"is kept: free some space and rerun the same command", said[0]), said
    assert seconds < outage.DISK_FULL_PATIENCE + 30, seconds
    (small_disk / "filler").unlink()
    rerun = subprocess.run(tiny.args("--workers", "2"), cwd=REPO, capture_output=True, text=True, timeout=300,
                           check=False)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert_study_done_exactly_once(tiny)


@pytest.mark.slow
def test_a_disk_freed_while_the_workers_wait_lets_them_finish_the_study(tmp_path, small_disk):
    tiny = Tiny(tmp_path)
    tiny.stores = Stores(small_disk / "mlruns")
    code, out, _ = _run_filling(tiny, small_disk, free_after=4)
    assert code == 0, out
    assert "stopped" not in out and "Traceback" not in out, out
    assert_study_done_exactly_once(tiny)


# --- a store that cannot grow, anywhere: SQLite's own limit ----------------------------------------------

CAP = '''
import os
from sqlalchemy import event
from sqlalchemy.engine import Engine

@event.listens_for(Engine, "before_cursor_execute")
def _cap(conn, cursor, statement, parameters, context, executemany):
    # once the trigger file exists, every SQLite connection's database stops growing: "database or disk is full"
    if conn.dialect.name == "sqlite" and os.path.exists(os.environ["HARNESS_TEST_FULL"]):
        conn.connection.dbapi_connection.execute("PRAGMA max_page_count = 1")
'''


@pytest.mark.slow
def test_a_store_that_cannot_grow_stops_the_study_in_one_line(tmp_path):
    """Where no tmpfs can be mounted: SQLite's page limit makes every store write that needs a page fail as a
    full disk does (SQLITE_FULL), through Optuna and MLflow alike."""
    if _mount(tmp_path / "probe", "1m") is None:
        subprocess.run(["umount", "-l", str(tmp_path / "probe")], check=False)
        pytest.skip("a tmpfs can be mounted here: the real full disk above covers this")
    tiny = Tiny(tmp_path)
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(CAP)
    trigger = tmp_path / "full"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(hook), str(REPO), os.environ.get("PYTHONPATH", "")]),
           "HARNESS_TEST_FULL": str(trigger)}
    proc = subprocess.Popen(tiny.args("--workers", "2"), cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env)
    out = []
    for line in proc.stdout:
        out.append(line)
        if re.match(r"\[\d+/\d+", line):
            trigger.touch()
    proc.wait(timeout=300)
    text = "".join(out)
    said = [line for line in text.splitlines() if line.strip() and not re.match(
        r"(checking|started|pretraining|  pretrained|\[\d+/\d+)", line)]
    assert proc.returncode == 75 and len(said) == 1, text
    assert said[0].startswith("stopped: the disk is full (writing "), said
