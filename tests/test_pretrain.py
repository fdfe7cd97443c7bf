import dataclasses

import mlflow
import pytest

from harness.learn.pretrain import checkpoint_key
from harness.run.checkpoints import source_checkpoint
from harness.spec import TrialConfig

CFG = TrialConfig(pretrain_epochs=3)


def test_checkpoint_key_ignores_fine_tuning_settings_but_not_the_source_task():
    tuned = dataclasses.replace(CFG, lr=0.5, optimizer="adam", strategy="linear_probe", seed=3, epochs=2,
                                transfer_stages=1, arm="x")
    assert checkpoint_key(tuned) == checkpoint_key(CFG)
    assert checkpoint_key(dataclasses.replace(CFG, source_classes=(0, 1, 2))) != checkpoint_key(CFG)
    assert checkpoint_key(dataclasses.replace(CFG, model="resnet18")) != checkpoint_key(CFG)


def test_source_pretraining_is_logged_cached_and_reused(stores, tracking):
    eid, _ = tracking
    first = source_checkpoint(CFG, stores.checkpoints)
    second = source_checkpoint(CFG, stores.checkpoints)
    assert first == second and first.path.is_file()
    runs = mlflow.search_runs([eid], filter_string="tags.phase = 'pretrain'", output_format="list")
    assert [r.info.run_id for r in runs] == [first.run_id]  # pretrained once, not twice
    assert runs[0].data.metrics["best_val_acc"] > 0.8  # five digit classes, chance is 0.2: a real model was trained
    assert (runs[0].info.status, runs[0].data.tags["outcome"]) == ("FINISHED", "complete")
    artifacts = mlflow.MlflowClient().list_artifacts(first.run_id, "checkpoint")
    assert [a.path for a in artifacts] == [f"checkpoint/{first.path.name}"]


@pytest.mark.parametrize(("raised", "status", "outcome", "reason"), [
    (KeyboardInterrupt(), "KILLED", "interrupted", "interrupted (Ctrl-C)"),
    (RuntimeError("CUDA error: an illegal memory access"), "FAILED", "failed",
     "error: RuntimeError: CUDA error: an illegal memory access"),
])
def test_a_pretraining_cut_off_ends_with_its_outcome_and_reason(stores, tracking, monkeypatch, raised, status,
                                                                 outcome, reason):
    from harness.learn import pretrain

    eid, parent = tracking
    real_fit = pretrain.fit

    def cut_off_after_one_epoch(model, task, cfg, on_epoch):
        def on_epoch_then_raise(epoch, metrics):
            on_epoch(epoch, metrics)
            raise raised

        return real_fit(model, task, cfg, on_epoch=on_epoch_then_raise)

    monkeypatch.setattr(pretrain, "fit", cut_off_after_one_epoch)
    with pytest.raises(type(raised)):
        source_checkpoint(CFG, stores.checkpoints)
    [run] = mlflow.search_runs([eid], filter_string="tags.phase = 'pretrain'", output_format="list")
    assert run.info.status == status
    assert (run.data.tags["outcome"], run.data.tags["state_reason"]) == (outcome, reason)
    assert "val_acc" in run.data.metrics  # the epoch it trained is kept
    assert mlflow.active_run().info.run_id == parent.info.run_id  # the parent goes on: a slot records the rest
    assert not list(stores.checkpoints.glob("*.pt"))


def test_pretraining_uses_the_models_own_learning_rate():
    from harness.learn.pretrain import pretrain_config

    assert pretrain_config(CFG).lr == 1e-3
    assert pretrain_config(dataclasses.replace(CFG, model="vgg16")).lr == 1e-4  # plain VGG stalls at 1e-3


def test_a_live_workers_pretraining_is_waited_for_even_without_its_lock(stores, tracking, monkeypatch):
    """A PostgreSQL restart drops the advisory lock of a pretraining under way: the next worker to take the lock
    must still see the live pretrainer's RUNNING run and wait for its checkpoint, not pretrain it again; a dead
    pretrainer's run is not waited for."""
    import subprocess
    import threading

    from harness.run import checkpoints, queue

    eid, _ = tracking
    cfg = TrialConfig(model="lenet5", weights="source", source_classes=(0, 1, 2, 3, 4), target_classes=(5, 6))
    key = checkpoint_key(cfg)
    other = subprocess.Popen(["sleep", "60"])  # the other worker: a live process on this machine
    worker = f"{queue.worker_id().split(':')[0]}:{other.pid}:{queue._started(other.pid)}:{queue._pid_space()}"
    client = mlflow.MlflowClient()
    run = client.create_run(eid, tags={"phase": "pretrain", "checkpoint": key, "worker": worker})
    pretrained, finished = [], threading.Event()
    monkeypatch.setattr(checkpoints, "source_checkpoint", lambda *a: pretrained.append(a))
    monkeypatch.setattr(checkpoints, "fetch_checkpoint", lambda *a: "ckpt" if finished.is_set() else None)
    try:
        assert checkpoints.pretraining_elsewhere(key, eid, remote=False) == worker
        waiter = threading.Thread(target=checkpoints.ensure_source, args=(cfg, stores, eid, 0.05))
        waiter.start()
        waiter.join(1.0)
        assert waiter.is_alive() and not pretrained  # waiting for the other, not pretraining it again
        finished.set()  # its checkpoint lands
        waiter.join(5)
        assert not waiter.is_alive() and not pretrained
    finally:
        other.kill()
        other.wait()
    assert checkpoints.pretraining_elsewhere(key, eid, remote=False) is None  # a dead worker's run is not waited for
    finished.clear()
    checkpoints.ensure_source(cfg, stores, eid, 0.05)
    assert len(pretrained) == 1
    client.set_terminated(run.info.run_id, "KILLED")


@pytest.mark.slow  # three pretrainings, two of them in a second thread
def test_a_worker_that_finds_its_source_being_pretrained_pretrains_one_the_study_needs_meanwhile(stores, tracking):
    """While another worker holds seed 0's pretraining, this one pretrains the next seed the confirmations will
    surely use that nobody has or holds (selection seeds first), then takes seed 0's checkpoint once it lands."""
    import threading

    from filelock import FileLock

    from harness.run import checkpoints, queue
    from harness.spec import STUDIES_DIR, confirmation_config, selection_seeds
    from harness.study_file import load_study

    eid, _ = tracking
    spec = dataclasses.replace(load_study("sgd_vs_adam", STUDIES_DIR), seeds=2)
    sources = checkpoints.sure_sources(spec, spec.arms[0], CFG)
    assert [c.pretrain_seed for c in sources] == [*selection_seeds(spec), 1, 2]
    assert sources[0] == confirmation_config(spec, CFG, selection_seeds(spec)[0])
    assert checkpoints.sure_sources(dataclasses.replace(spec, n_trials=1), spec.arms[0], CFG)[0].pretrain_seed == 1

    def lock(cfg):
        return FileLock(queue.lock_file(stores.optuna_url, stores.root, f"pretrain-{checkpoint_key(cfg)}"))

    source_checkpoint(sources[0], stores.checkpoints)  # the first selection seed's is there already
    queue.lock_file(stores.optuna_url, stores.root, "x").parent.mkdir(parents=True, exist_ok=True)
    holding, done = threading.Event(), threading.Event()

    def other_worker():  # another worker pretrains seed 0, a third one seed 1
        with lock(CFG), lock(sources[2]):
            holding.set()
            done.wait(30)
            source_checkpoint(CFG, stores.checkpoints)  # seed 0's lands, then the lock goes

    other = threading.Thread(target=other_worker)
    other.start()
    try:
        assert holding.wait(30)
        seen = []

        def meanwhile():
            checkpoints.pretrain_ahead(sources, stores, eid)
            seen.append([c.pretrain_seed for c in sources if find(c)])
            done.set()

        def find(cfg):
            from harness.learn.pretrain import find_checkpoint

            return find_checkpoint(cfg, stores.checkpoints) is not None

        checkpoints.ensure_source(CFG, stores, eid, poll=0.05, meanwhile=meanwhile)
    finally:
        done.set()
        other.join()
    assert seen == [[sources[0].pretrain_seed, sources[1].pretrain_seed]]  # the free one, not the held seed 1
    assert find(CFG) and not find(sources[2]) and not find(sources[3])  # one ahead, no more
    runs = mlflow.search_runs(filter_string="tags.phase = 'pretrain'", output_format="list",
                              search_all_experiments=True)  # the other thread has no parent run: another experiment
    assert sorted(r.data.params["seed"] for r in runs) == sorted(str(c.pretrain_seed) for c in (CFG, *sources[:2]))


def test_no_source_is_pretrained_ahead_for_an_arm_whose_search_sets_what_the_source_depends_on():
    """A searched batch size changes the source checkpoint: the one the confirmations need is not known yet.
    A searched lr, weight decay or optimizer parameter does not (the pretraining recipe sets its own)."""
    from harness.learn.pretrain import FINE_TUNING_ONLY
    from harness.run.checkpoints import sure_sources
    from harness.spec import STUDIES_DIR, TrialConfig
    from harness.study_file import load_study

    assert FINE_TUNING_ONLY <= {f.name for f in dataclasses.fields(TrialConfig)}
    for name in ("lr", "weight_decay", "seed", "epochs", "strategy", "optimizer"):
        changed = {"lr": 0.3, "weight_decay": 0.1, "seed": 9, "epochs": 2, "strategy": "full", "optimizer": "adam"}
        assert name in FINE_TUNING_ONLY
        assert checkpoint_key(dataclasses.replace(CFG, **{name: changed[name]})) == checkpoint_key(CFG)
    spec = load_study("sgd_vs_adam", STUDIES_DIR)
    assert sure_sources(spec, spec.arms[0], CFG)  # lr, weight decay, momentum...: the source stays
    batch = dataclasses.replace(spec, search_space=lambda trial, arm: {"batch_size": trial.suggest_int("b", 16, 64)})
    assert sure_sources(batch, batch.arms[0], CFG) == []


def test_a_failed_pretraining_ahead_warns_and_leaves_the_waiting_job_alone(stores, tracking, monkeypatch, capsys):
    """Pretraining ahead is optional work: its error (a diverged source, say) is the run's that needs that source,
    not the job this worker waits for; an outage still stops the worker, as everywhere."""
    import sqlalchemy.exc

    from harness.run import checkpoints

    eid, _ = tracking

    def diverges(*args):
        raise RuntimeError("training loss became nan")

    monkeypatch.setattr(checkpoints, "source_checkpoint", diverges)
    checkpoints.pretrain_ahead([CFG], stores, eid)  # returns: the job this worker waits for goes on
    err = capsys.readouterr().err
    assert f"pretraining {checkpoint_key(CFG)} ahead failed (RuntimeError: training loss became nan)" in err

    def outage(*args):
        raise sqlalchemy.exc.OperationalError("SELECT 1", {}, Exception("connection refused"))

    monkeypatch.setattr(checkpoints, "source_checkpoint", outage)
    with pytest.raises(sqlalchemy.exc.OperationalError):
        checkpoints.pretrain_ahead([CFG], stores, eid)
