import json

import mlflow
import optuna
import pytest

from harness.run.objective import RunContext, make_confirmation, make_objective
from harness.run.slot import run_slot
from harness.run.work import Job
from harness.schema import Phase
from harness.spec import Arm, StudySpec, TrialConfig
from tests.tiers import slow_except

ARM = Arm("sgd-unfrozen", "sgd", "full")


def space(trial, arm):
    return {"lr": trial.suggest_float("lr", 1e-3, 1e12, log=True), "optimizer_params": {"momentum": 0.9}}


SPEC = StudySpec(name="unit", question="?", arms=(ARM,), search_space=space,
                 base=TrialConfig(epochs=3, pretrain_epochs=2))


def run_one(stores, lr, pruner=None, storage=None):
    """One search slot, run the way a worker runs it."""
    study = optuna.create_study(study_name="unit/sgd-unfrozen", direction="maximize", pruner=pruner, storage=storage)
    study.enqueue_trial({"lr": lr})
    job = Job(Phase.SEARCH, ARM, study, study.ask())
    run_slot(job, lambda: None, make_objective(SPEC, ARM, RunContext(stores.checkpoints)))
    trial = study.trials[0]
    return trial, mlflow.get_run(trial.user_attrs["mlflow_run_id"])


def test_a_trial_is_a_child_run_with_params_epoch_metrics_and_tags(stores, tracking):
    _, parent = tracking
    trial, run = run_one(stores, 0.05)
    assert trial.state == optuna.trial.TrialState.COMPLETE
    tags, params = run.data.tags, run.data.params
    assert tags["mlflow.parentRunId"] == parent.info.run_id
    assert (tags["phase"], tags["arm"], tags["optimizer"], tags["freeze"], tags["outcome"]) == (
        "search", "sgd-unfrozen", "sgd", "full", "complete")
    assert tags["optuna_trial"] == "0" and tags["optuna_study"] == "unit/sgd-unfrozen"
    assert tags["checkpoint"].startswith("lenet5-digits-") and tags["checkpoint_run_id"]
    assert float(params["lr"]) == 0.05 and params["opt.momentum"] == "0.9" and params["dataset"] == "digits"
    history = mlflow.MlflowClient().get_metric_history(run.info.run_id, "val_acc")
    assert [m.step for m in history] == [0, 1, 2]
    assert trial.value == pytest.approx(max(m.value for m in history))
    assert {"train_loss", "train_acc", "val_loss", "lr", "epoch_seconds", "wall_seconds"} <= set(run.data.metrics)


def test_a_diverging_trial_stops_and_is_recorded_as_failed_with_its_reason(stores, tracking):
    trial, run = run_one(stores, 1e12)
    assert trial.state == optuna.trial.TrialState.FAIL
    assert trial.user_attrs["outcome"] == "diverged" and trial.user_attrs["state_reason"].startswith("diverged")
    assert run.info.status == "FAILED" and run.data.tags["outcome"] == "diverged"
    assert "diverged" in run.data.tags["state_reason"]


def test_a_pruned_trial_is_tagged_pruned(stores, tracking):
    trial, run = run_one(stores, 0.05, pruner=optuna.pruners.ThresholdPruner(lower=2.0))  # accuracy < 2: always
    assert trial.state == optuna.trial.TrialState.PRUNED
    assert run.data.tags["outcome"] == "pruned" and run.info.status == "FINISHED"
    assert len(mlflow.MlflowClient().get_metric_history(run.info.run_id, "val_acc")) == 1


@pytest.mark.parametrize("pruned", slow_except([False, True], False))
def test_the_curve_reaches_optunas_database_whole_when_the_trial_ends(stores, tracking, pruned):
    """Written in one transaction at the end, not one per epoch: every epoch's validation accuracy is there, as
    MLflow has it, before Optuna is told the outcome (a pruned trial's value is its curve's last point)."""
    from harness.stores import open_storage

    pruner, storage = optuna.pruners.ThresholdPruner(lower=2.0) if pruned else None, open_storage(stores)
    assert isinstance(getattr(storage, "_backend", storage), optuna.storages.RDBStorage)  # the one-write path
    trial, run = run_one(stores, 0.05, pruner=pruner, storage=storage)
    history = mlflow.MlflowClient().get_metric_history(run.info.run_id, "val_acc")
    assert trial.intermediate_values == {m.step: pytest.approx(m.value) for m in history}
    assert len(history) == (1 if pruned else 3)
    assert trial.state.name == ("PRUNED" if pruned else "COMPLETE")
    assert trial.value == pytest.approx(history[-1].value if pruned else max(m.value for m in history))


@pytest.mark.slow  # a pretraining, a search trial and a confirmation run
def test_confirmation_reruns_the_best_config_with_a_new_seed_and_tests_once(stores, tracking):
    eid, _ = tracking
    trial, search_run = run_one(stores, 0.05)
    ctx = RunContext(stores.checkpoints)
    slots = optuna.create_study(study_name="unit/sgd-unfrozen/confirm", direction="maximize")
    slots.enqueue_trial(trial.params, user_attrs={"search_trial": trial.number, "seed": 7})
    slots.optimize(make_confirmation(SPEC, ARM, ctx, "unit/sgd-unfrozen"), n_trials=1)
    assert slots.trials[0].user_attrs["mlflow_run_id"]
    (run,) = mlflow.search_runs([eid], filter_string="tags.phase = 'confirm'", output_format="list")
    assert run.data.tags["seed"] == "7" and run.data.tags["optuna_trial"] == "0"
    assert run.data.tags["mlflow.runName"] == "sgd-unfrozen #00 s7"  # 20 trials: numbers padded to 2 digits
    assert run.data.tags["config_hash"] == search_run.data.tags["config_hash"]  # same config, other seed
    assert 0.2 < run.data.metrics["test_acc"] <= 1.0
    confusion = mlflow.artifacts.load_dict(f"{run.info.artifact_uri}/confusion.json")
    test_size = len(next(iter(ctx.tasks.values())).test)
    assert sum(map(sum, confusion["matrix"])) == test_size
    assert confusion["classes"] == ["5", "6", "7", "8", "9"]
    assert json.loads(json.dumps(confusion))  # plain JSON, readable without the harness


@pytest.mark.parametrize("seed", range(3))
def test_the_pruning_view_decides_as_optunas_should_prune_on_the_trials_complete_when_the_trial_began(seed):
    """The view reads the study once; its decisions are should_prune's, epoch by epoch, pruned or not."""
    import random

    from harness.run.pruning import PruningView

    rng = random.Random(seed)
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.MedianPruner(n_startup_trials=5,
                                                                                          n_warmup_steps=3))
    for _ in range(12):  # finished trials with curves of their own, some pruned, some complete
        trial = study.ask()
        curve = [rng.random() for _ in range(rng.randint(2, 10))]
        for step, value in enumerate(curve):
            trial.report(value, step)
        study.tell(trial, max(curve) if len(curve) > 4 else None,
                   state=optuna.trial.TrialState.COMPLETE if len(curve) > 4 else optuna.trial.TrialState.PRUNED)
    decided = []
    for _ in range(20):
        trial, view, scale = study.ask(), PruningView(study), rng.choice([0.5, 1.0])  # weak and strong curves
        for step in range(10):
            value = rng.random() * scale
            trial.report(value, step)
            expected = trial.should_prune()
            assert view.should_prune(step, value) == expected, (step, value)
            decided.append(expected)
            if expected:
                break
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)  # pruned or abandoned: the complete set stays
    assert any(decided) and not all(decided)  # both decisions were exercised


@pytest.mark.slow  # three trained runs, one of them logging the model (torch.export)
def test_seed_1_logs_the_model_and_a_model_that_cannot_be_written_leaves_the_result_standing(
        stores, tracking, monkeypatch, capsys):
    from harness.run import objective

    eid, _ = tracking
    trial, _ = run_one(stores, 0.05)
    slots = optuna.create_study(study_name="unit/sgd-unfrozen/confirm", direction="maximize")
    for seed in (1, 2):
        slots.enqueue_trial(trial.params, user_attrs={"search_trial": trial.number, "seed": seed})
    slots.optimize(make_confirmation(SPEC, ARM, RunContext(stores.checkpoints), "unit/sgd-unfrozen"), n_trials=2)
    runs = {r.data.tags["seed"]: r for r in
            mlflow.search_runs([eid], filter_string="tags.phase = 'confirm'", output_format="list")}
    assert runs["1"].data.tags["model"] == "model" and "model" not in runs["2"].data.tags  # the declared seed only

    def broken(model, task):
        raise RuntimeError("this layer does not export")

    monkeypatch.setattr(objective, "log_run_model", broken)
    again = optuna.create_study(study_name="unit/sgd-unfrozen/confirm2", direction="maximize")
    again.enqueue_trial(trial.params, user_attrs={"search_trial": trial.number, "seed": 1})
    again.optimize(make_confirmation(SPEC, ARM, RunContext(stores.checkpoints), "unit/sgd-unfrozen"), n_trials=1)
    assert again.trials[0].state == optuna.trial.TrialState.COMPLETE  # the verdict's data does not depend on it
    (run,) = [r for r in mlflow.search_runs([eid], filter_string="tags.phase = 'confirm'", output_format="list")
              if r.info.run_id == again.trials[0].user_attrs["mlflow_run_id"]]
    assert run.data.tags["model_error"] == "RuntimeError: this layer does not export" and "model" not in run.data.tags
    assert "could not be logged" in capsys.readouterr().err
