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
