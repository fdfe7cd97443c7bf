"""Every use of a private Optuna, MLflow or torch API, in one place: each function says which public API it
stands in for (or that there is none, and why the harness needs it). tests/test_internals.py pins the versions
this was checked against and that each private name still exists with the signature used here, so a library
upgrade fails one clear test rather than the queue in many places.

Layer 0: imported by the training code too (harness.learn.optim), so Optuna, MLflow and torch are imported
only inside the functions that need them."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import optuna

# major.minor of each library the private uses below were checked against (tests/test_internals.py)
CHECKED_AGAINST = {"optuna": "5.1", "mlflow": "3.17", "torch": "2.14", "torchvision": "0.29"}


# --- Optuna: a study's storage and ids ---------------------------------------------------------------------


def storage_of(study: optuna.Study) -> optuna.storages.BaseStorage:
    """The storage a study reads and writes (`Study._storage`). Public API: none on a Study (an `optuna.Trial`
    has `trial.storage`, the same object: use that for a trial); the queue writes a trial's state and
    attributes through the storage by id, without loading the trial."""
    return study._storage


def trial_id(trial: optuna.Trial | optuna.trial.FrozenTrial) -> int:
    """A trial's id in its storage (`Trial._trial_id`, `FrozenTrial._trial_id`). Public API: none; the public
    `number` counts within a study, while the storage's methods (`set_trial_state_values`, `get_trial`,
    `record_heartbeat`, ...) take the id."""
    return trial._trial_id


def reset_trial_cache(study: optuna.Study) -> None:
    """Make the study read its trials afresh at the next sampler call (`Study._thread_local.cached_all_trials
    = None`). Public API: `Study.ask()` does this as it pops a waiting trial, but it reads every waiting trial
    again and cannot be told which one to take; the queue claims one it has read under its lock already."""
    study._thread_local.cached_all_trials = None


# --- Optuna: heartbeats ------------------------------------------------------------------------------------


def heartbeat_enabled(storage: Any) -> bool:
    """Whether the storage keeps heartbeats (`optuna.storages._heartbeat.is_heartbeat_enabled`). Public API:
    none: neither the function nor `BaseHeartbeat` is re-exported; `get_heartbeat_interval` is public but only
    on storages that derive from `BaseHeartbeat`, which is the check this makes."""
    from optuna.storages._heartbeat import is_heartbeat_enabled

    return is_heartbeat_enabled(storage)


def stale_trial_ids(study: optuna.Study) -> list[int]:
    """The ids of the study's RUNNING trials whose heartbeat stopped (`BaseHeartbeat._get_stale_trial_ids` on
    `Study._storage`, with `Study._study_id`); [] where the storage keeps none. Public API:
    `optuna.storages.fail_stale_trials(study)` fails them at once and returns nothing, so the harness could not
    record first why each failed (its outcome and reason attributes), nor retire its MLflow run."""
    storage = storage_of(study)
    if not heartbeat_enabled(storage):
        return []
    return list(storage._get_stale_trial_ids(study._study_id))


# --- Optuna: a trial's curve in one transaction --------------------------------------------------------------


def rdb_backend(storage: Any) -> optuna.storages.RDBStorage | None:
    """The database storage behind `storage` (`_CachedStorage._backend`, Optuna's cache in front of a database),
    or None where it is no database (a journal file). Public API: none: `optuna.storages.get_storage` wraps
    every RDBStorage in the cache and the cache does not expose what it wraps."""
    import optuna

    backend = getattr(storage, "_backend", storage)
    return backend if isinstance(backend, optuna.storages.RDBStorage) else None


def write_intermediate_values(backend: optuna.storages.RDBStorage, trial: int, values: Mapping[int, float]) -> None:
    """Write a trial's intermediate values (step -> value) in one database transaction
    (`optuna.storages._rdb.storage._create_scoped_session` and `RDBStorage._set_trial_intermediate_value_without_
    commit`, as `RDBStorage.set_trial_intermediate_value` does for one value). Public API: `Trial.report` /
    `BaseStorage.set_trial_intermediate_value`, one transaction per value: one per epoch, a tenth of a search
    trial's time on the default study."""
    from optuna.storages._rdb.storage import _create_scoped_session

    with _create_scoped_session(backend.scoped_session, True) as session:
        for step, value in values.items():
            backend._set_trial_intermediate_value_without_commit(session, trial, step, value)


# --- MLflow ------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def no_requirement_check() -> Iterator[None]:
    """Skip MLflow's check of a logged model's requirements against the installed packages, while the block runs
    (replaces `mlflow.utils.environment.warn_dependency_requirement_mismatches`, an undocumented module's
    function, with a no-op; nothing where this MLflow has none). Public API: none: `mlflow.<flavor>.log_model`
    always runs it (MLFLOW_SKIP_PIP_REQUIREMENTS_CHECK skips another check, pip's dry run). It maps every
    installed distribution to its modules afresh for each model (1-1.5 s, the largest part of logging a small
    one), and the harness's requirements are the installed versions by construction, so it can only pass.
    Not thread-safe: it patches a module attribute for the whole process."""
    from mlflow.utils import environment

    check = getattr(environment, "warn_dependency_requirement_mismatches", None)
    if check is None:
        yield
        return
    environment.warn_dependency_requirement_mismatches = lambda requirements: None
    try:
        yield
    finally:
        environment.warn_dependency_requirement_mismatches = check


# --- torch -------------------------------------------------------------------------------------------------


def fused_kernel_devices() -> list[str] | None:
    """The device types torch's fused optimizer kernels run on (`torch.optim.optimizer.
    _get_fused_kernels_supported_devices`, from torch.utils._foreach_utils), or None where this torch has no
    such function. Public API: none: the optimizers check it only when built with `fused=True`, and raise
    where a kernel is missing; a rename here costs speed only (no fused kernels), never a result."""
    try:
        from torch.optim.optimizer import _get_fused_kernels_supported_devices
    except ImportError:
        return None
    return _get_fused_kernels_supported_devices()


def batch_norm_base() -> type:
    """The base class of torch's BatchNorm layers (`torch.nn.modules.batchnorm._BatchNorm`: BatchNorm1d/2d/3d,
    their lazy forms, SyncBatchNorm). Public API: none: listing the public classes would miss a subclass of the
    base (one of another library's); the training code asks "does this layer keep running statistics"."""
    from torch.nn.modules.batchnorm import _BatchNorm

    return _BatchNorm


def dropout_base() -> type:
    """The base class of torch's dropout layers (`torch.nn.modules.dropout._DropoutNd`: Dropout, Dropout1d/2d/3d,
    AlphaDropout, FeatureAlphaDropout). Public API: none, as for `batch_norm_base`."""
    from torch.nn.modules.dropout import _DropoutNd

    return _DropoutNd


def image_files(dataset: Any) -> tuple[list[str], list[int]]:
    """(image paths, labels) of a torchvision dataset that keeps its images as files (`Flowers102._image_files`,
    `OxfordIIITPet._images`; both `_labels`). Public API: `dataset[i]`, which decodes every image to return one:
    the harness opens each file itself, once, at the size it needs."""
    files = getattr(dataset, "_image_files", None)
    files = files if files is not None else dataset._images
    return [str(p) for p in files], [int(y) for y in dataset._labels]


def download_urls(cls: type) -> tuple[str, ...]:
    """The files a torchvision dataset class downloads (`Flowers102._download_url_prefix` + `_file_dict`,
    `OxfordIIITPet._RESOURCES`). Public API: `download=True`, which fetches them without saying which: the
    harness names them in its offline error."""
    if hasattr(cls, "_file_dict"):
        return tuple(cls._download_url_prefix + name for name, _ in cls._file_dict.values())
    return tuple(url for url, _ in cls._RESOURCES)


def mlflow_table_setup() -> tuple[Any, str] | None:
    """(module, name) of the function MLflow runs to create a new SQL store's tables
    (`mlflow.store.db.utils._initialize_tables`, its schema migrations), or None where it moved. Public API:
    none; the tests start their stores from one migrated template through it (tests/conftest.py)."""
    import mlflow.store.db.utils as db_utils

    return (db_utils, "_initialize_tables") if hasattr(db_utils, "_initialize_tables") else None
