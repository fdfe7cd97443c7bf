"""Fresh local stores prepared by a forked child beside the checks (harness.run.prepare): what it hands over is
what a worker would have made, nothing lands under --root unless the checks pass, and a store another command
made meanwhile is never replaced."""

from __future__ import annotations

import sqlite3
import tempfile

import mlflow
import optuna
import pytest

from harness.run import prepare
from harness.run.work import open_work
from harness.schema import PAIRING_TAG, StudyAttr
from harness.spec import load_study
from harness.stores import Stores, experiment_id, optuna_study_name

SPEC = load_study("sgd_vs_adam")


@pytest.fixture
def temp(tmp_path, monkeypatch):
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def test_prepared_stores_hold_the_study_s_experiment_and_studies_paired_and_a_worker_opens_them(tmp_path, temp):
    stores = Stores(tmp_path / "mlruns")
    preparation = prepare.start(SPEC, stores)
    assert preparation is not None and not stores.root.exists()  # nothing under --root while the checks run
    preparation.finish(ok=True)
    assert sorted(p.name for p in stores.root.iterdir() if not p.name.endswith(".lock")) == ["mlflow.db", "optuna.db"]
    assert not list(temp.iterdir())
    home = optuna.load_study(study_name=SPEC.name, storage=stores.optuna_url)
    token = home.user_attrs[StudyAttr.PAIRING]
    experiment = mlflow.MlflowClient(stores.mlflow_uri).get_experiment_by_name(SPEC.name)
    assert experiment.tags[PAIRING_TAG] == token  # paired, as the first worker would have
    assert experiment.artifact_location == (stores.artifacts / SPEC.name).resolve().as_uri()  # the real --root's
    names = {s.study_name for s in optuna.get_all_study_summaries(stores.optuna_url)}
    assert {optuna_study_name(SPEC.name, a.name) for a in SPEC.arms} <= names
    with sqlite3.connect(stores.root / "mlflow.db") as db:  # whole without its write-ahead log, still in WAL mode
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    work = open_work(SPEC, stores, lambda trial: None)  # a worker: opens, plans the slots, nothing to create
    assert experiment_id(stores, SPEC.name, create=False) == experiment.experiment_id
    assert len(work.search[SPEC.arms[0].name].trials) == SPEC.n_trials


def test_failed_checks_leave_nothing_under_root_nor_in_the_temporary_folder(tmp_path, temp):
    stores = Stores(tmp_path / "mlruns")
    prepare.start(SPEC, stores).finish(ok=False)
    assert not stores.root.exists() and not list(temp.iterdir())


def test_stores_that_exist_or_are_not_local_files_are_not_prepared(tmp_path, temp):
    existing = Stores(tmp_path / "a")
    existing.root.mkdir()
    (existing.root / "optuna.db").write_bytes(b"")
    assert prepare.start(SPEC, existing) is None
    assert prepare.start(SPEC, Stores(tmp_path / "b", storage=f"journal:{tmp_path / 'journal.log'}")) is None
    assert prepare.start(SPEC, Stores(tmp_path / "c", tracking_uri="http://127.0.0.1:9")) is None


def test_a_store_another_command_made_meanwhile_is_kept_and_half_a_pair_is_never_placed(tmp_path, temp):
    stores = Stores(tmp_path / "mlruns")
    preparation = prepare.start(SPEC, stores)
    stores.root.mkdir()
    (stores.root / "mlflow.db").write_bytes(b"theirs")
    preparation.finish(ok=True)
    assert (stores.root / "mlflow.db").read_bytes() == b"theirs"
    assert not (stores.root / "optuna.db").exists()  # theirs to make: one of ours beside it would not pair
    assert sorted(p.name for p in stores.root.iterdir() if not p.name.endswith(".lock")) == ["mlflow.db"]


def test_a_child_that_fails_says_nothing_and_hands_over_nothing(tmp_path, temp, monkeypatch, capfd):
    monkeypatch.setattr(prepare, "experiment_id", lambda *args: (_ for _ in ()).throw(OSError("disk full")))
    stores = Stores(tmp_path / "mlruns")
    preparation = prepare.start(SPEC, stores)
    preparation.finish(ok=True)
    assert preparation.process.exitcode == 1 and not stores.root.exists() and not list(temp.iterdir())
    assert "Traceback" not in capfd.readouterr().err  # the workers make the stores themselves
