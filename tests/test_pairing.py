"""A study's Optuna storage and MLflow store belong together: a worker pointed at a mismatched pair is refused
before it writes anything, instead of splitting or repeating the records. Run on copies of the finished tiny
study of test_end_to_end (its module fixture, so no study runs here)."""

from __future__ import annotations

import shutil

import mlflow
import pytest

from harness.stores import Stores
from harness.study import main
from tests.test_end_to_end import NAME, TINY


def _run(tmp, root, *extra) -> int:
    return main(["sgd_vs_adam", *TINY, "--root", str(root), "--reports", str(tmp / "reports"), *extra])


def _runs(root) -> int:
    mlflow.set_tracking_uri(Stores(root).mlflow_uri)
    return len(mlflow.search_runs(experiment_names=[NAME], output_format="list"))


def _copy(finished, to):
    shutil.copytree(finished / "mlruns", to, ignore=shutil.ignore_patterns("checkpoints", "artifacts", "kept"))
    return to


@pytest.mark.slow
def test_a_deleted_optuna_store_beside_a_live_mlflow_store_is_refused_not_rerun(finished, tmp_path, capsys):
    copy = _copy(finished, tmp_path / "b")
    (copy / "optuna.db").unlink()
    before = _runs(copy)
    assert _run(tmp_path, copy) == 2
    err = capsys.readouterr().err
    assert f"already holds study '{NAME}''s runs, but the Optuna storage has no record of them" in err
    assert "Traceback" not in err and _runs(copy) == before and not (copy / "optuna.db").exists()


@pytest.mark.slow
def test_a_deleted_mlflow_store_is_refused_not_reported_as_nothing_to_do(finished, tmp_path, capsys):
    copy = _copy(finished, tmp_path / "c")
    (copy / "mlflow.db").unlink()
    assert _run(tmp_path, copy) == 2
    captured = capsys.readouterr()
    assert "logged to another MLflow store, and this one has no record of it" in captured.err
    assert "nothing to do" not in captured.out and not (copy / "mlflow.db").exists()


@pytest.mark.slow
def test_a_worker_sharing_the_optuna_storage_without_the_tracking_store_is_refused(finished, tmp_path, capsys):
    shared = f"sqlite:///{_copy(finished, tmp_path / 'e') / 'optuna.db'}"
    assert _run(tmp_path, tmp_path / "d", "--storage", shared) == 2
    err = capsys.readouterr().err
    assert "Give every worker the same --tracking-uri" in err and not (tmp_path / "d" / "mlflow.db").exists()


@pytest.mark.slow
def test_the_pair_it_was_made_with_still_resumes(finished, tmp_path, capsys):
    assert _run(tmp_path, _copy(finished, tmp_path / "f")) == 0
    assert "nothing to do" in capsys.readouterr().out


@pytest.mark.slow
def test_a_rerun_of_a_study_reported_from_these_records_answers_without_checks_or_a_worker(finished, tmp_path,
                                                                                          capsys, monkeypatch):
    import harness.study

    copy = _copy(finished, tmp_path / "g")
    shutil.copytree(finished / "reports", tmp_path / "reports")
    for slow in ("check", "run_worker", "launch_workers"):  # the data checks, a worker, forked workers: none needed
        monkeypatch.setattr(harness.study, slow, lambda *a, _name=slow, **k: pytest.fail(f"{_name} was called"))
    assert _run(tmp_path, copy, "--workers", "2") == 0
    assert "report up to date" in capsys.readouterr().out
