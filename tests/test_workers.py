"""Many workers on one study: exact budgets, no repeated work, crash-safe resume, on local stores and on
PostgreSQL + an MLflow tracking server.

The server tests need HARNESS_TEST_POSTGRES (postgresql://USER@HOST:PORT, a role that may create databases)
and HARNESS_TEST_MLFLOW (http://HOST:PORT of an `mlflow server` with served artifacts); `.ci/run` starts both.
Without them they skip, unless HARNESS_TEST_REQUIRE_SERVERS=1 (set by `.ci/run`), where a skip is a failure.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import mlflow
import optuna
import pytest

from harness.stores import Stores

REPO = Path(__file__).resolve().parents[1]
TINY = '''
from harness.analysis_plan import Difference
from harness.spec import Arm, StudySpec, TrialConfig


def search_space(trial, arm):
    return {{"lr": trial.suggest_float("lr", 1e-3, 1e-1, log=True)}}


STUDY = StudySpec(
    name="{name}", question="A tiny study for the worker tests.",
    arms=(Arm("sgd", "sgd", "linear_probe"), Arm("adam", "adam", "linear_probe")),
    search_space=search_space,
    base=TrialConfig(study="{name}", model="lenet5", weights="source", pretrain_epochs=2, epochs=5, shots=10),
    n_trials=4, seeds=2, confirm_top=1, prune=False, plan=(Difference("adam", "sgd"),),
)
'''


class Tiny:
    """A tiny two-arm study file and the command line that runs it into one set of stores."""

    def __init__(self, tmp_path: Path, storage: str | None = None, tracking_uri: str | None = None):
        self.name = f"tiny_{uuid.uuid4().hex[:8]}"  # unique: server stores outlive a test
        self.studies = tmp_path / "studies"
        self.studies.mkdir(parents=True, exist_ok=True)
        (self.studies / f"{self.name}.py").write_text(TINY.format(name=self.name))
        self.stores = Stores(tmp_path / "mlruns", tracking_uri, storage)
        self.reports = tmp_path / "reports"

    def args(self, *extra: str, root: Path | None = None) -> list[str]:
        args = [sys.executable, "-m", "harness.study", self.name, "--studies", str(self.studies),
                "--root", str(root or self.stores.root), "--reports", str(self.reports), *extra]
        if "--workers" not in extra:
            args += ["--workers", "1"]  # one process per command: the test kills that process
        for flag, value in (("--storage", self.stores.storage), ("--tracking-uri", self.stores.tracking_uri)):
            if value:
                args += [flag, value]
        return args

    def start(self, *extra: str, root: Path | None = None) -> subprocess.Popen:
        return subprocess.Popen(self.args(*extra, root=root), cwd=REPO, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)

    def storage(self):
        from harness.stores import open_storage

        return open_storage(self.stores)

    def studies_of(self) -> dict[str, optuna.Study]:
        storage = self.storage()
        return {s.study_name: optuna.load_study(study_name=s.study_name, storage=storage)
                for s in optuna.get_all_study_summaries(storage) if s.study_name.startswith(self.name + "/")}

    def runs(self):
        mlflow.set_tracking_uri(self.stores.mlflow_uri)
        return mlflow.search_runs(experiment_names=[self.name], output_format="list")


def wait_all(procs: list[subprocess.Popen], timeout: float = 300) -> list[str]:
    outs = []
    for proc in procs:
        out, _ = proc.communicate(timeout=timeout)
        outs.append(out)
    return outs


def assert_study_done_exactly_once(tiny: Tiny) -> None:
    """Exactly n_trials counted trials per arm, distinct parameters, each confirmation (trial, seed) once,
    nothing left RUNNING in Optuna or MLflow, one report."""
    from harness.schema import counts

    studies = tiny.studies_of()
    assert len(studies) == 4  # two arms, each a search and a confirmation study
    for name, study in studies.items():
        trials = study.get_trials(deepcopy=False)
        assert not [t for t in trials if not t.state.is_finished()], f"{name} left a trial unfinished"
        counted = [t for t in trials if counts(t)]
        if name.endswith("/confirm"):
            slots = Counter(t.user_attrs["slot"] for t in counted)
            assert len(slots) == 2 and set(slots.values()) == {1}, slots  # top 1 trial x 2 seeds, once each
        else:
            assert len(counted) == 4, f"{name}: {len(counted)} counted trials for a budget of 4"
            assert len({tuple(sorted(t.params.items())) for t in counted}) == 4, f"{name} repeated parameters"
            assert sorted(t.user_attrs["slot"] for t in counted) == ["0", "1", "2", "3"]
    runs = tiny.runs()
    assert not [r for r in runs if r.info.status == "RUNNING"], "an MLflow run was left RUNNING"
    confirm = Counter((r.data.tags["arm"], r.data.tags["optuna_trial"], r.data.tags["seed"])
                      for r in runs if r.data.tags.get("phase") == "confirm" and r.info.status == "FINISHED")
    assert len(confirm) == 4 and set(confirm.values()) == {1}, confirm  # 2 arms x top 1 x 2 seeds, once each
    client = mlflow.MlflowClient()
    parents = [r for r in runs if r.data.tags.get("phase") == "study"]
    with_report = [r for r in parents if any(a.path == "report" for a in client.list_artifacts(r.info.run_id))]
    assert len(with_report) == 1, f"{len(with_report)} workers wrote the report"
    report = tiny.reports / tiny.name / "README.md"  # every worker was given this --reports, whatever its --root
    assert report.is_file(), f"no report at {report}"
    published = mlflow.artifacts.load_text(f"runs:/{with_report[0].info.run_id}/report/README.md")
    assert published == report.read_text()  # the report on disk is the one its parent run holds


def _kill_first_seen(procs: list[subprocess.Popen], busy, what: str, timeout: float = 240) -> subprocess.Popen:
    """SIGKILL the first of `procs` still alive whose pid is in a worker tag that `busy()` yields; returns it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = {str(p.pid): p for p in procs if p.poll() is None}
        assert alive, f"every worker finished before one was seen {what}"
        try:
            for worker in busy():
                pid = worker.split(":")[1:2]
                if pid and pid[0] in alive:
                    alive[pid[0]].send_signal(signal.SIGKILL)
                    alive[pid[0]].wait()
                    return alive[pid[0]]
        except Exception as error:  # noqa: BLE001 - the stores are being created: look again
            print(f"stores not ready: {error}")
        time.sleep(0.05)
    raise AssertionError(f"no worker was seen {what}")


def kill_mid_trial(tiny: Tiny, procs: list[subprocess.Popen]) -> subprocess.Popen:
    """SIGKILL whichever of `procs` is first seen running a trial (search or confirmation); returns it. A
    worker that finished (it found no slot left) is no longer a candidate."""
    from harness.stores import open_storage

    storage = []  # one connection pool, opened once the stores exist, not one per look

    def running_trials():
        storage[:] = storage or [open_storage(tiny.stores)]
        for summary in optuna.get_all_study_summaries(storage[0]):
            study = optuna.load_study(study_name=summary.study_name, storage=storage[0])
            for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
                if trial.user_attrs.get("mlflow_run_id"):
                    yield trial.user_attrs.get("worker", "")

    return _kill_first_seen(procs, running_trials, "running a trial")


def kill_during_pretraining(tiny: Tiny, procs: list[subprocess.Popen]) -> subprocess.Popen:
    """SIGKILL whichever of `procs` is pretraining a source checkpoint (its pretraining run RUNNING on the
    tracking server); returns it."""
    return _kill_first_seen(procs, lambda: (r.data.tags.get("worker", "") for r in tiny.runs()
                                            if r.data.tags.get("phase") == "pretrain" and r.info.status == "RUNNING"),
                            "pretraining")


# --- local stores ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def together(tmp_path_factory) -> Tiny:
    """Three workers started at the same instant on fresh local stores, forked by one command's `--workers 3`
    (separate commands racing on local stores: tests/test_sequential_study.py's two; on PostgreSQL, the four
    below)."""
    tiny = Tiny(tmp_path_factory.mktemp("together"))
    outs = wait_all([tiny.start("--workers", "3")])
    assert all("Traceback" not in out for out in outs), outs
    tiny.outs = outs
    return tiny


@pytest.mark.slow
def test_three_workers_started_at_the_same_instant_split_the_study_exactly_once(together):
    assert "started 3 workers" in together.outs[0], together.outs[0]
    assert_study_done_exactly_once(together)
    workers = {r.data.tags["worker"] for r in together.runs() if r.data.tags.get("phase") == "study"}
    assert 2 <= len(workers) <= 3  # a worker that found nothing left to take opens no parent run


def interrupt_at(tiny: Tiny, marker: str, *extra: str) -> tuple[int, str]:
    """Ctrl-C as a terminal sends it (SIGINT to the command's whole process group, forked workers included)
    as soon as `marker` is printed; returns the exit status and everything printed."""
    # a test run from a background job has SIGINT ignored, and a child inherits that (Python then raises no
    # KeyboardInterrupt); a handled signal is reset to its default in the child instead
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        proc = subprocess.Popen(tiny.args(*extra), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, start_new_session=True)
    finally:
        signal.signal(signal.SIGINT, previous)
    out = []
    for line in proc.stdout:
        out.append(line)
        if marker in line:
            os.killpg(proc.pid, signal.SIGINT)
            break
    out.append(proc.communicate(timeout=120)[0])
    return proc.returncode, "".join(out)


@pytest.mark.slow
def test_ctrl_c_to_a_group_of_workers_mid_search_exits_130_and_leaves_nothing_running(tmp_path):
    tiny = Tiny(tmp_path)
    for marker, workers in ((" search ", "2"),):  # Ctrl-C at other moments, in process: tests/test_interrupts.py
        code, out = interrupt_at(tiny, marker, "--workers", workers)
        assert code == 130, out
        assert "interrupted" in out and "Traceback" not in out and "terminate called" not in out, out
        assert not [r for r in tiny.runs() if r.info.status == "RUNNING"], "an MLflow run was left RUNNING"
        parents = [r for r in tiny.runs() if r.data.tags.get("phase") == "study"]
        assert parents and all(r.info.status == "KILLED" for r in parents), [r.info.status for r in parents]
        for study in tiny.studies_of().values():
            assert not study.get_trials(states=(optuna.trial.TrialState.RUNNING,)), study.study_name
    # what the interrupted runs finished is kept: resuming from it is test_end_to_end's Ctrl-C test (in process)
    assert sum(t.state.name == "COMPLETE" for s in tiny.studies_of().values() for t in s.get_trials()) >= 1


# --- PostgreSQL and an MLflow tracking server ----------------------------------------------------------


def _servers() -> tuple[str, str]:
    pg, server = os.environ.get("HARNESS_TEST_POSTGRES"), os.environ.get("HARNESS_TEST_MLFLOW")
    if not (pg and server):
        reason = "needs HARNESS_TEST_POSTGRES and HARNESS_TEST_MLFLOW (.ci/run starts both servers)"
        if os.environ.get("HARNESS_TEST_REQUIRE_SERVERS") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    return pg, server


def _fresh_database(pg: str) -> str:
    import sqlalchemy

    name = f"optuna_{uuid.uuid4().hex[:8]}"
    engine = sqlalchemy.create_engine(f"{pg}/postgres", isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sqlalchemy.text(f"CREATE DATABASE {name}"))
    engine.dispose()
    return f"{pg}/{name}"


def _outage(variable: str, seconds: int) -> None:
    """Run .ci/run's command that takes a server away for `seconds` (PostgreSQL, or the tracking server)."""
    import shlex

    command = os.environ.get(variable)
    if command:
        subprocess.run([*shlex.split(command), str(seconds)], check=True, timeout=180)


@pytest.mark.slow
def test_workers_on_postgres_and_a_tracking_server_survive_kills_and_both_servers_restarting(tmp_path):
    """Five workers, each on its own disk: one killed while it pretrains the source, one killed mid-trial (its
    trial found stale by Optuna's heartbeat, and run again); then, with all three others at work (held at the
    queue's lock, so none can finish first), PostgreSQL (Optuna's storage and the tracking server's) is stopped
    for 4 s and the tracking server restarted. All three wait it out, saying so, and finish, with exact budgets,
    each checkpoint pretrained once, nothing failed by the infrastructure and nothing left RUNNING, the dead
    workers' runs included."""
    from harness.schema import Outcome

    pg, server = _servers()
    tiny = Tiny(tmp_path, storage=_fresh_database(pg), tracking_uri=server)
    procs = [tiny.start(root=tmp_path / f"machine{i}") for i in range(5)]  # no shared disk between them
    pretrainer = kill_during_pretraining(tiny, procs)
    survivors = [p for p in procs if p is not pretrainer]
    victim = kill_mid_trial(tiny, survivors)
    survivors.remove(victim)
    outage = bool(os.environ.get("HARNESS_TEST_PG_OUTAGE"))
    if outage:  # .ci/run's servers go away while the three survivors work
        from harness.run.queue import store_lock

        held = contextlib.ExitStack()  # the queue's own lock: each finishes the slot it holds, then waits for it
        held.enter_context(store_lock(tiny.stores.storage, tmp_path))
        stopped = [p.communicate()[0][-3000:] for p in survivors if p.poll() is not None]
        assert not stopped, f"a survivor stopped before the outage: {stopped}"
        time.sleep(2)  # under way: at the lock, or mid-slot
        _outage("HARNESS_TEST_PG_OUTAGE", 4)  # which ends the lock's session too
        with contextlib.suppress(Exception):  # its server went away under it
            held.close()
        _outage("HARNESS_TEST_MLFLOW_RESTART", 1)  # away 15 s or so: it starts slowly
    outs = wait_all(survivors)
    assert all(p.returncode == 0 for p in survivors) and all("Traceback" not in out for out in outs), outs
    if outage:  # waiting, each says so: the storage's own retries, MLflow's client's for the tracking server
        assert any("storage unreachable" in out for out in outs), outs
        assert any(f"tracking server {server} unreachable" in out for out in outs), outs
    assert_study_done_exactly_once(tiny)  # nothing RUNNING: the pretraining cut off too
    dead = [r for r in tiny.runs() if r.info.status == "KILLED"  # the killed workers' (the outage's say so)
            and any(f":{p.pid}:" in r.data.tags.get("worker", "") for p in (pretrainer, victim))]
    assert len(dead) >= 3 and all("stopped" in r.data.tags.get("state_reason", "") for r in dead)  # parents too
    failed = [t for s in tiny.studies_of().values() for t in s.trials
              if t.state.name == "FAIL" and t.user_attrs.get("outcome") == Outcome.FAILED.value]
    assert not failed, [t.user_attrs.get("state_reason") for t in failed]  # none failed by the infrastructure
    pretrain = [r for r in tiny.runs() if r.data.tags.get("phase") == "pretrain"]
    cut = [r for r in pretrain if f":{pretrainer.pid}:" in r.data.tags["worker"] and r.info.status != "FINISHED"]
    assert len(cut) == 1 and cut[0].info.status == "KILLED" and "stopped" in cut[0].data.tags["state_reason"]
    keys = [r.data.tags["checkpoint"] for r in pretrain if r.info.status == "FINISHED"]
    # seed 0 for the search, one per confirmation seed; each once, though the restart dropped the locks
    assert len(set(keys)) == 3 and len(keys) == 3, keys
    assert len(list(tmp_path.glob("machine*/checkpoints/*.pt"))) >= 2  # the other machines downloaded them
    from harness.report import main as report_main

    assert report_main([tiny.name, "--studies", str(tiny.studies), "--storage", tiny.stores.storage,
                        "--tracking-uri", server, "--reports", str(tmp_path / "rebuilt")]) == 0
    assert (tmp_path / "rebuilt" / tiny.name / "README.md").is_file()


@pytest.mark.slow  # runs a whole study
def test_a_trial_that_fails_at_run_time_fails_alone_and_the_study_finishes(tmp_path, monkeypatch):
    import harness.run.objective
    from harness.schema import counts
    from harness.study import main

    tiny = Tiny(tmp_path)
    real_fit, calls = harness.run.objective.fit, []

    def fit_failing_once(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # the second search trial: a configuration the model rejects at run time
            raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")
        return real_fit(*args, **kwargs)

    monkeypatch.setattr(harness.run.objective, "fit", fit_failing_once)
    assert main(tiny.args()[3:]) == 0
    failed = [t for s in tiny.studies_of().values() for t in s.trials if t.state.name == "FAIL"]
    assert len(failed) == 1 and failed[0].user_attrs["state_reason"].startswith("error: RuntimeError: mat1")
    assert counts(failed[0])  # a result: it is not rerun, and the arm's budget is spent
    assert main(tiny.args()[3:]) == 0  # nothing to do
    assert len([t for s in tiny.studies_of().values() for t in s.trials if t.state.name == "FAIL"]) == 1


def test_a_store_lock_tried_without_waiting_says_whether_it_is_held_on_postgres_and_on_a_file(tmp_path):
    """What pretraining ahead relies on: a lock another process holds is reported as not held, at once, on
    PostgreSQL (pg_try_advisory_lock) as on a local store (flock); a free one is held, and let go after."""
    from harness.run import queue

    pg, _ = _servers()
    for url in (_fresh_database(pg), f"sqlite:///{tmp_path}/optuna.db"):
        code = ("import time\nfrom pathlib import Path\nfrom harness.run import queue\n"
                f"with queue.store_lock({url!r}, Path({str(tmp_path)!r}), 'pretrain-x'):\n"
                "    print('held', flush=True); time.sleep(60)")
        holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        try:
            assert holder.stdout.readline().strip() == "held"
            start = time.monotonic()
            with queue.store_lock(url, tmp_path, "pretrain-x", wait=False) as held:
                assert held is False
            with queue.store_lock(url, tmp_path, "pretrain-y", wait=False) as other:
                assert other is True  # another name, another lock
            assert time.monotonic() - start < 5
        finally:
            holder.kill()
            holder.wait()
        with queue.store_lock(url, tmp_path, "pretrain-x", wait=False) as held:
            assert held is True  # its holder gone, the lock went with it
        with queue.store_lock(url, tmp_path, "pretrain-x", wait=False) as again:
            assert again is True  # and was let go when the block ended
