"""harness.internals, pinned to the libraries it was checked against: after an upgrade of Optuna, MLflow or torch
these fail first, and each names the private API that moved (check it, then update CHECKED_AGAINST)."""

from __future__ import annotations

import inspect
import subprocess
import sys

import optuna
import pytest

from harness import internals


def major_minor(version: str) -> str:
    return ".".join(version.split("+")[0].split(".")[:2])


@pytest.mark.parametrize("library", sorted(internals.CHECKED_AGAINST))
def test_the_installed_libraries_are_the_versions_the_adapter_was_checked_against(library):
    installed = major_minor(__import__(library).__version__)
    assert installed == internals.CHECKED_AGAINST[library], (
        f"{library} {installed} is installed; harness/internals.py was checked against "
        f"{internals.CHECKED_AGAINST[library]}: check each private API it uses (these tests), then update "
        "CHECKED_AGAINST")


def test_the_adapter_imports_none_of_the_libraries_until_used():
    code = "import sys, harness.internals; print(sorted({'optuna', 'mlflow', 'torch'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def params(function) -> list[str]:
    return list(inspect.signature(function).parameters)


# --- Optuna ------------------------------------------------------------------------------------------------


@pytest.fixture
def rdb_study(tmp_path):
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'o.db'}", heartbeat_interval=60, grace_period=120)
    return optuna.create_study(study_name="s", storage=optuna.storages.get_storage(storage))


def test_a_study_has_its_storage_and_id_and_trial_cache():
    study = optuna.create_study()
    assert isinstance(internals.storage_of(study), optuna.storages.BaseStorage)
    assert study._study_id == internals.storage_of(study).get_study_id_from_name(study.study_name)
    study._get_trials(deepcopy=False, use_cache=True)  # samplers read through the cache reset_trial_cache empties
    assert study._thread_local.cached_all_trials is not None
    internals.reset_trial_cache(study)
    assert study._thread_local.cached_all_trials is None
    assert "cached_all_trials = None" in inspect.getsource(optuna.Study.ask)  # what ask() does, as the queue does


def test_a_trial_and_a_frozen_trial_have_their_storage_id():
    study = optuna.create_study()
    trial = study.ask()
    frozen = study.get_trials()[0]
    assert internals.trial_id(trial) == internals.trial_id(frozen)
    assert internals.storage_of(study).get_trial(internals.trial_id(trial)).number == trial.number
    assert trial.storage is internals.storage_of(study)  # the public stand-in harness.run.pruning uses
    assert params(optuna.Trial.__init__) == ["self", "study", "trial_id"]  # harness.run.queue.claim builds one


def test_heartbeats_are_told_and_stale_trials_listed(rdb_study):
    from optuna.storages._heartbeat import is_heartbeat_enabled

    assert params(is_heartbeat_enabled) == ["storage"]
    for storage in (optuna.storages.RDBStorage, optuna.storages._CachedStorage):
        assert params(storage._get_stale_trial_ids) == ["self", "study_id"]
    assert not internals.heartbeat_enabled(optuna.storages.InMemoryStorage())
    assert internals.stale_trial_ids(optuna.create_study()) == []
    assert internals.heartbeat_enabled(internals.storage_of(rdb_study))
    with pytest.warns(UserWarning):  # Optuna: heartbeats are meant for study.optimize
        trial = rdb_study.ask()
    internals.storage_of(rdb_study).record_heartbeat(internals.trial_id(trial))
    assert internals.stale_trial_ids(rdb_study) == []  # beating: not stale


def test_a_curve_is_written_in_one_transaction_on_a_database(rdb_study, tmp_path):
    from optuna.storages._rdb.storage import _create_scoped_session

    assert params(_create_scoped_session) == ["scoped_session", "ignore_integrity_error"]
    assert params(optuna.storages.RDBStorage._set_trial_intermediate_value_without_commit) == [
        "self", "session", "trial_id", "step", "intermediate_value"]
    backend = internals.rdb_backend(internals.storage_of(rdb_study))
    assert isinstance(backend, optuna.storages.RDBStorage)
    with pytest.warns(UserWarning):
        trial = rdb_study.ask()
    internals.write_intermediate_values(backend, internals.trial_id(trial), {0: 0.5, 1: 0.75})
    assert rdb_study.get_trials()[0].intermediate_values == {0: 0.5, 1: 0.75}

    journal = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(tmp_path / "j.log")))
    assert internals.rdb_backend(journal) is None
    assert internals.rdb_backend(optuna.storages.InMemoryStorage()) is None


# --- MLflow ------------------------------------------------------------------------------------------------


def test_the_requirement_check_is_skipped_and_restored():
    from mlflow.utils import environment

    check = environment.warn_dependency_requirement_mismatches
    assert params(check) == ["model_requirements"]
    for caller in (environment._process_pip_requirements, environment._process_conda_env):  # log_model's path
        assert "warn_dependency_requirement_mismatches" in caller.__code__.co_names  # read at call time: patchable
    with internals.no_requirement_check():
        assert environment.warn_dependency_requirement_mismatches is not check
        assert environment.warn_dependency_requirement_mismatches(["numpy==0.0.1"]) is None
    assert environment.warn_dependency_requirement_mismatches is check
    with pytest.raises(KeyError), internals.no_requirement_check():
        raise KeyError
    assert environment.warn_dependency_requirement_mismatches is check


# --- torch -------------------------------------------------------------------------------------------------


def test_the_fused_kernels_devices_are_listed():
    from torch.optim.optimizer import _get_fused_kernels_supported_devices

    assert params(_get_fused_kernels_supported_devices) == []
    devices = internals.fused_kernel_devices()
    assert isinstance(devices, list) and {"cpu", "cuda"} <= set(devices)


def test_the_batch_norm_and_dropout_bases():
    from torch import nn

    assert all(issubclass(c, internals.batch_norm_base()) for c in (nn.BatchNorm1d, nn.BatchNorm2d, nn.SyncBatchNorm))
    assert not issubclass(nn.InstanceNorm2d, internals.batch_norm_base())
    assert all(issubclass(c, internals.dropout_base()) for c in (nn.Dropout, nn.Dropout2d, nn.AlphaDropout))


def test_torchvision_datasets_that_keep_files_give_their_paths_and_labels(tmp_path, monkeypatch):
    import os

    import torchvision.datasets as tvd

    from tests.fabricate import write_flowers102, write_pets

    # stand-ins cannot match the real files' checksums: a file's presence stands in (as in test_kornblith)
    monkeypatch.setattr(tvd.flowers102, "check_integrity", lambda path, md5=None: os.path.isfile(path))
    write_flowers102(tmp_path, per_split=1)
    write_pets(tmp_path, per_class=1, breeds=37)
    flowers = tvd.Flowers102(str(tmp_path), split="test")
    pets = tvd.OxfordIIITPet(str(tmp_path), split="trainval")
    for dataset, n in ((flowers, 102), (pets, 37)):
        files, labels = internals.image_files(dataset)
        assert len(files) == len(labels) == n and all(f.endswith(".jpg") for f in files)
        assert sorted(set(labels)) == list(range(n))


@pytest.mark.parametrize("name", ["Flowers102", "OxfordIIITPet"])
def test_torchvision_datasets_name_the_files_they_download(name):
    import torchvision.datasets as tvd

    urls = internals.download_urls(getattr(tvd, name))
    assert urls and all(u.startswith("https://") for u in urls)


def test_mlflow_s_table_setup_is_found():
    module, name = internals.mlflow_table_setup()
    assert list(inspect.signature(getattr(module, name)).parameters) == ["engine"]
