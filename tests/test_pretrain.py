import dataclasses

import mlflow

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
    artifacts = mlflow.MlflowClient().list_artifacts(first.run_id, "checkpoint")
    assert [a.path for a in artifacts] == [f"checkpoint/{first.path.name}"]


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
