"""Shared fixtures: a throwaway stores root per test, so no test touches ./mlruns; no network for the tests that
ask (`offline`)."""

import os
import socket

import pytest

from harness.stores import Stores

# Module and session fixtures that run a study or write and report several (seconds to a minute, once): a test
# that takes one is in the slow tier, wherever it is written. `pytest -m "not slow"` is the fast tier; CI runs all.
SLOW_FIXTURES = {"finished", "built", "together", "uninterrupted"}


def pytest_collection_modifyitems(items):
    for item in items:
        if SLOW_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture
def stores(tmp_path) -> Stores:
    return Stores(root=tmp_path / "mlruns")


@pytest.fixture
def offline(monkeypatch):
    """Every name lookup fails, as it does offline: a test can never download, and a download attempt fails."""

    def no_network(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "network disabled in tests")

    monkeypatch.setattr(socket, "getaddrinfo", no_network)


@pytest.fixture
def tracking(stores):
    """MLflow pointed at the test's own SQLite store, with an experiment and an active parent run."""
    import mlflow

    from harness.stores import experiment_id

    eid = experiment_id(stores, "unit")
    with mlflow.start_run(experiment_id=eid) as parent:
        yield eid, parent


@pytest.fixture(autouse=True, scope="session")
def harness_cache(tmp_path_factory):
    """What the harness caches (folder datasets' checked images) goes to the session's own folder, never the
    user's cache; the CLI's subprocesses inherit it."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HARNESS_CACHE", str(tmp_path_factory.mktemp("harness-cache")))
        yield


@pytest.fixture(autouse=True, scope="session")
def one_worker_in_process():
    """A study run in the test's own process stays in it (so what a test patches is what runs): one worker, as
    `--workers 1` asks; tests of several workers say how many. Session-wide: module fixtures run studies too."""
    import harness.study

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(harness.study, "DEFAULT_WORKERS", 1)
        yield


@pytest.fixture(autouse=True, scope="session")
def mlflow_stores_from_a_template(tmp_path_factory):
    """A new MLflow SQLite store in this process starts as a copy of the first one made, instead of running
    MLflow's schema migrations again: a second or two each on a quiet disk, several on a busy one, for every test
    that logs a run. The copy is the database the migrations make (tables and schema version, nothing in them);
    a store that holds anything, a server, and the workers a test starts as processes run MLflow's own code."""
    import sqlite3
    from contextlib import closing

    from harness import internals

    template = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    found = internals.mlflow_table_setup()
    if found is None:  # another MLflow: it migrates as it does
        yield
        return
    module, name = found
    migrate = getattr(module, name)

    def copy(source, target):  # SQLite's backup: whole, and a write-ahead-log target stays in that mode
        with closing(sqlite3.connect(source)) as src, closing(sqlite3.connect(target)) as dst:
            src.backup(dst)

    def initialize(engine):
        path = engine.url.database if engine.dialect.name == "sqlite" else None
        if not path or path == ":memory:" or not os.path.isfile(path):
            return migrate(engine)
        with closing(sqlite3.connect(path)) as db:
            empty = db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0
        if not empty:
            return migrate(engine)
        if not template.exists():
            migrate(engine)
            return copy(path, template)
        engine.dispose()  # no pooled connection reads the file while it is written
        return copy(template, path)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(module, name, initialize)
        yield


@pytest.fixture(scope="session")
def finished(tmp_path_factory):
    """A tiny version of the default study, run once for the session (test_end_to_end reads it; test_pairing
    copies its stores)."""
    from tests.test_end_to_end import run_tiny

    tmp_path = tmp_path_factory.mktemp("e2e")
    assert run_tiny(tmp_path) == 0
    return tmp_path


@pytest.fixture
def restored_registry():
    """A test that registers models (harness.register_model) leaves the registry as it found it."""
    from harness.learn.models import REGISTERED, stage_names

    before = dict(REGISTERED)
    yield
    REGISTERED.clear()
    REGISTERED.update(before)
    stage_names.cache_clear()
