"""A store that cannot be used is refused before anything is written, with one message naming it."""

import os

import pytest

from harness.study import main


def run(tmp_path, *args, root=None):
    root = root or tmp_path / "mlruns"
    return main(["sgd_vs_adam", "--root", str(root), "--reports", str(tmp_path / "reports"), *args])


def refused(capsys, tmp_path, *needles):
    err = capsys.readouterr().err
    assert "Traceback" not in err and all(n in err for n in needles), err
    assert not (tmp_path / "reports").exists()


def test_a_root_below_a_regular_file_is_refused(tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    assert run(tmp_path, root=tmp_path / "afile" / "mlruns") == 2
    refused(capsys, tmp_path, "is a file", "--root")


def test_an_unknown_storage_url_is_refused_naming_the_kinds(tmp_path, capsys):
    assert run(tmp_path, "--storage", "mongodb://localhost/x") == 2
    refused(capsys, tmp_path, "mongodb://localhost/x", "postgresql://", "journal:")
    assert not (tmp_path / "mlruns").exists()


def test_an_unreachable_postgres_is_refused(tmp_path, capsys):
    server = "http://127.0.0.1:9"  # given, so the pairing check passes and the database is what is refused
    assert run(tmp_path, "--storage", "postgresql://nobody@127.0.0.1:9/none", "--tracking-uri", server) == 2
    refused(capsys, tmp_path, "cannot use this PostgreSQL database", "127.0.0.1:9")
    assert not (tmp_path / "mlruns").exists()


def test_a_worker_with_a_shared_postgres_storage_and_a_local_mlflow_store_is_refused_before_it_writes(tmp_path, capsys):
    """Whichever worker starts first: a worker that would pair the shared study with a private MLflow log is the
    one refused, naming what it lacks (before, if it started first, it ran the whole study alone and the
    correctly configured workers were refused)."""
    assert run(tmp_path, "--storage", "postgresql://nobody@127.0.0.1:9/none") == 2
    refused(capsys, tmp_path, "MLflow store is local", "give every worker the same --tracking-uri")
    assert not (tmp_path / "mlruns").exists()


def test_an_unreachable_tracking_server_is_refused(tmp_path, capsys):
    assert run(tmp_path, "--tracking-uri", "http://127.0.0.1:9") == 2
    refused(capsys, tmp_path, "no MLflow server answers", "127.0.0.1:9")


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_an_unwritable_sqlite_path_is_refused(tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    assert run(tmp_path, "--storage", f"sqlite:///{locked}/optuna.db") == 2
    refused(capsys, tmp_path, "not writable")


def test_an_unwritable_sqlite_path_below_a_file_is_refused(tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    assert run(tmp_path, "--storage", f"sqlite:///{tmp_path}/afile/optuna.db") == 2
    refused(capsys, tmp_path, "is a file")


@pytest.mark.parametrize("store", ["optuna.db", "mlflow.db"])
def test_a_corrupted_store_is_named(tmp_path, capsys, store):
    root = tmp_path / "mlruns"
    root.mkdir()
    (root / store).write_bytes(os.urandom(4096))
    assert run(tmp_path, root=root) == 2
    refused(capsys, tmp_path, str(root / store), "not a readable SQLite database")


def test_a_storage_path_that_is_a_folder_or_lacks_its_folder_is_refused_not_waited_on(tmp_path, capsys):
    """A refusal exits 2 with one line and leaves nothing (no lock file): exit 75 would have a retry wrapper
    rerun it forever."""
    (tmp_path / "dir").mkdir()
    assert run(tmp_path, "--storage", f"sqlite:///{tmp_path}/dir") == 2
    refused(capsys, tmp_path, "is a folder, not a file", f"{tmp_path}/dir/optuna.db")
    assert list((tmp_path / "dir").iterdir()) == [] and not list(tmp_path.glob(".*.lock"))
    assert run(tmp_path, "--storage", f"sqlite:///{tmp_path}/missing/sub/optuna.db") == 2
    refused(capsys, tmp_path, "its folder", "does not exist")
    assert not (tmp_path / "missing").exists()


def test_a_file_that_is_not_an_optuna_journal_is_named_and_no_lock_is_left(tmp_path, capsys):
    journal = tmp_path / "j.log"
    journal.write_text("junk junk\n")
    assert run(tmp_path, "--storage", f"journal:{journal}") == 2
    refused(capsys, tmp_path, f"Optuna storage {journal} is not an Optuna journal")
    assert not list(tmp_path.glob(".*.lock")) and journal.read_text() == "junk junk\n"
