"""A study's Optuna storage and MLflow store belong together: a worker pointed at a mismatched pair is refused
before it writes anything, instead of splitting or repeating the records."""

from __future__ import annotations

import shutil

import mlflow
import pytest

from harness.stores import Stores
from harness.study import main
from tests.test_workers import TINY


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A tiny study run to the end in its own root."""
    tmp = tmp_path_factory.mktemp("paired")
    studies = tmp / "studies"
    studies.mkdir()
    (studies / "paired.py").write_text(TINY.format(name="paired"))
    assert main(["paired", "--studies", str(studies), "--root", str(tmp / "a"), "--reports", str(tmp / "r")]) == 0
    return tmp


def _run(tmp, root, *extra) -> int:
    return main(["paired", "--studies", str(tmp / "studies"), "--root", str(root), "--reports", str(tmp / "r"),
                 *extra])


def _runs(root) -> int:
    mlflow.set_tracking_uri(Stores(root).mlflow_uri)
    return len(mlflow.search_runs(experiment_names=["paired"], output_format="list"))


@pytest.mark.slow
def test_a_deleted_optuna_store_beside_a_live_mlflow_store_is_refused_not_rerun(finished, tmp_path, capsys):
    copy = tmp_path / "b"
    shutil.copytree(finished / "a", copy)
    (copy / "optuna.db").unlink()
    before = _runs(copy)
    assert _run(finished, copy) == 2
    err = capsys.readouterr().err
    assert "already holds study 'paired''s runs, but the Optuna storage has no record of them" in err
    assert "Traceback" not in err and _runs(copy) == before and not (copy / "optuna.db").exists()


@pytest.mark.slow
def test_a_deleted_mlflow_store_is_refused_not_reported_as_nothing_to_do(finished, tmp_path, capsys):
    copy = tmp_path / "c"
    shutil.copytree(finished / "a", copy)
    (copy / "mlflow.db").unlink()
    assert _run(finished, copy) == 2
    err = capsys.readouterr().err
    assert "logged to another MLflow store, and this one has no record of it" in err
    assert "nothing to do" not in capsys.readouterr().out and not (copy / "mlflow.db").exists()


@pytest.mark.slow
def test_a_worker_sharing_the_optuna_storage_without_the_tracking_store_is_refused(finished, tmp_path, capsys):
    shared = f"sqlite:///{finished / 'a' / 'optuna.db'}"
    assert _run(finished, tmp_path / "d", "--storage", shared) == 2
    err = capsys.readouterr().err
    assert "Give every worker the same --tracking-uri" in err and not (tmp_path / "d" / "mlflow.db").exists()


@pytest.mark.slow
def test_the_pair_it_was_made_with_still_resumes(finished, capsys):
    assert _run(finished, finished / "a") == 0
    assert "nothing to do" in capsys.readouterr().out
