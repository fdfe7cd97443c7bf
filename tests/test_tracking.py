import time

import mlflow
import optuna

from harness.stores import Stores, experiment_id, open_storage


def test_experiments_keep_their_artifacts_under_the_root(stores):
    eid = experiment_id(stores, "unit")
    location = mlflow.get_experiment(eid).artifact_location
    assert location.endswith("/mlruns/artifacts/unit") and (stores.root / "mlflow.db").is_file()
    assert experiment_id(stores, "unit") == eid  # found, not created twice


def test_a_journal_file_storage_serves_several_workers(tmp_path):
    stores = Stores(root=tmp_path / "mlruns", storage=f"journal:{tmp_path / 'optuna.journal'}")
    first = optuna.create_study(study_name="s/a", storage=open_storage(stores), direction="maximize")
    first.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    second = optuna.load_study(study_name="s/a", storage=open_storage(stores))  # another process would see this
    assert len(second.trials) == 2


def test_buffered_metrics_reach_the_store_in_one_write_with_every_step(tracking, monkeypatch):
    from harness.run.tracking import MetricBuffer, start_child_run

    with start_child_run("buffered", {"phase": "search"}) as run:
        log = MetricBuffer(run.info.run_id, flush_seconds=3600)
        writes = []
        original = log.client.log_batch
        monkeypatch.setattr(log.client, "log_batch", lambda *a, **k: (writes.append(k), original(*a, **k)))
        log.log_params({"lr": 0.1, "shots": None})
        for epoch in range(5):
            log.log_metrics({"val_acc": epoch / 10, "train_loss": 1.0}, step=epoch)
        log.set_tags({"outcome": "complete"})
        assert writes == []  # nothing written while the run is fast
        log.flush()
    assert len(writes) == 1
    stored = mlflow.get_run(run.info.run_id)
    assert stored.data.params == {"lr": "0.1", "shots": "None"} and stored.data.tags["outcome"] == "complete"
    history = mlflow.MlflowClient().get_metric_history(run.info.run_id, "val_acc")
    assert [(m.step, m.value) for m in history] == [(e, e / 10) for e in range(5)]


def test_buffered_metrics_are_written_as_they_come_when_epochs_are_slow(tracking):
    from harness.run.tracking import MetricBuffer, start_child_run

    with start_child_run("live", {"phase": "search"}) as run:
        log = MetricBuffer(run.info.run_id, flush_seconds=0.0)  # every epoch is "slow"
        log.log_metrics({"val_acc": 0.5}, step=0)
        assert mlflow.MlflowClient().get_metric_history(run.info.run_id, "val_acc")[0].value == 0.5
        assert log.metrics == []


def test_a_pretraining_run_of_a_worker_that_died_elsewhere_is_closed_with_its_parent(stores, monkeypatch):
    """A worker on another machine (its pid tells nothing here) died pretraining: its parent's heartbeat stopped
    and the survivors close the parent; the pretraining run under it, which no trial owns, closes too."""
    from harness.run.parent import ParentRun
    from harness.schema import Tag
    from harness.spec import Arm, StudySpec
    monkeypatch.setattr(Stores, "remote_tracking", property(lambda self: True))  # heartbeats decide
    eid = experiment_id(stores, "dead")
    client = mlflow.MlflowClient(stores.mlflow_uri)
    elsewhere = "otherhost:123:1.0:abc"
    parent = client.create_run(eid, tags={Tag.PHASE: "study", Tag.WORKER: elsewhere, Tag.HEARTBEAT: "0"})
    child = client.create_run(eid, tags={Tag.PHASE: "pretrain", Tag.WORKER: elsewhere,
                                         "mlflow.parentRunId": parent.info.run_id})
    live = client.create_run(eid, tags={Tag.PHASE: "study", Tag.WORKER: elsewhere,
                                        Tag.HEARTBEAT: str(int(time.time()))})
    spec = StudySpec(question="?", arms=(Arm("a", "sgd"),), search_space=None)
    ParentRun(spec, stores, eid, "cmd").close_dead_runs()
    status = {r: client.get_run(r.info.run_id).info.status for r in (parent, child, live)}
    assert status[parent] == status[child] == "KILLED" and status[live] == "RUNNING"
    assert "parent run is over" in client.get_run(child.info.run_id).data.tags["state_reason"]
