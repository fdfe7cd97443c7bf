"""Shared fixtures: a throwaway stores root per test, so no test touches ./mlruns; no network for the tests that
ask (`offline`)."""

import socket

import pytest

from harness.stores import Stores


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
def one_worker_in_process():
    """A study run in the test's own process stays in it (so what a test patches is what runs): one worker, as
    `--workers 1` asks; tests of several workers say how many. Session-wide: module fixtures run studies too."""
    import harness.study

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(harness.study, "DEFAULT_WORKERS", 1)
        yield


@pytest.fixture(scope="session")
def finished(tmp_path_factory):
    """A tiny version of the default study, run once for the session (test_end_to_end reads it; test_pairing
    copies its stores)."""
    from tests.test_end_to_end import run_tiny

    tmp_path = tmp_path_factory.mktemp("e2e")
    assert run_tiny(tmp_path) == 0
    return tmp_path
