"""harness.learn.features: a frozen, deterministic prefix is computed once per split and weights; results do not
change."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from harness.learn.data import Split, Task
from harness.learn.features import FeatureCache, cut
from harness.learn.models import TransferNet, build_model
from harness.learn.train import fit, seed_everything
from harness.spec import TrialConfig
from tests.test_train import synthetic_task


def config(**changes) -> TrialConfig:
    defaults = {"optimizer": "adam", "lr": 0.01, "lr_schedule": "cosine", "batch_size": 4, "epochs": 3, "seed": 3}
    return TrialConfig(**{**defaults, **changes})


def trained(model_name: str, task: Task, cfg: TrialConfig, features: FeatureCache | None):
    seed_everything(0)
    model = build_model(model_name, num_classes=3)
    return model, fit(model, task, cfg, features=features)


@pytest.mark.parametrize("model_name, changes", [
    ("lenet5", {"strategy": "linear_probe"}),
    ("lenet5", {"strategy": "freeze_k", "freeze_k": 2}),
    ("lenet5", {"strategy": "lp_ft", "lp_epochs": 2}),
    pytest.param("resnet18", {"strategy": "linear_probe"}, marks=pytest.mark.slow),  # seconds on a CPU
])
def test_a_cached_run_gives_the_same_result_as_an_uncached_one(model_name, changes):
    task, cfg, cache = synthetic_task(model_name, n_train=12), config(**changes), FeatureCache()
    plain_model, plain = trained(model_name, task, cfg, None)
    _, cached = trained(model_name, task, cfg, cache)
    assert cache.misses == 2 and cache.entries  # train and val features, computed once
    assert cached.best_val_acc == plain.best_val_acc and cached.best_epoch == plain.best_epoch
    for a, b in zip(plain.history, cached.history, strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-5)
    assert cached.best_state.keys() == plain_model.state_dict().keys()  # the whole model, ready to test
    for name, value in plain.best_state.items():
        torch.testing.assert_close(cached.best_state[name], value, rtol=1e-4, atol=1e-6)


def test_the_features_are_shared_by_later_runs_on_the_same_split_and_weights():
    task, cache = synthetic_task("lenet5"), FeatureCache()
    for seed in (1, 2):
        trained("lenet5", task, config(strategy="linear_probe", seed=seed), cache)
    assert (cache.misses, cache.hits) == (2, 2)


def test_other_weights_are_other_features():
    task, cache = synthetic_task("lenet5"), FeatureCache()
    trained("lenet5", task, config(strategy="linear_probe"), cache)
    torch.manual_seed(1)  # another random backbone
    fit(build_model("lenet5", num_classes=3), task, config(strategy="linear_probe"), features=cache)
    assert cache.misses == 4 and cache.hits == 0


def test_augmented_or_unfrozen_runs_never_use_the_cache():
    task, cache = synthetic_task("lenet5"), FeatureCache()
    trained("lenet5", task, config(strategy="linear_probe", augment=True), cache)
    trained("lenet5", task, config(strategy="full"), cache)
    assert cache.misses == cache.hits == 0


def test_the_prefix_stops_before_dropout_and_batchnorm_that_trains():
    net = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Dropout(0.5), nn.Linear(4, 4), nn.BatchNorm1d(4),
                        nn.Linear(4, 2))
    stages = [("a", ["0"]), ("b", ["3"]), ("c", ["4"])]
    model = TransferNet(net, stages, "5", bn_frozen_eval=False)
    model.freeze(3)
    c = cut(model)
    assert c.boundary == "_1"  # the ReLU's output: dropout is random while training, so it stays in the suffix
    x = torch.randn(5, 4)
    model.eval()
    torch.testing.assert_close(c.suffix(c.prefix(x)), net(x))


def test_the_cut_reproduces_the_network_and_shares_its_weights():
    model = build_model("resnet18", num_classes=3)
    model.freeze(3)
    c = cut(model)
    model.eval()
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(c.suffix(c.prefix(x)), model(x))
    assert c.suffix.get_submodule("fc") is model.net.fc  # training the suffix trains the model


def test_the_cache_drops_the_least_recently_used_features_beyond_its_budget():
    model = TransferNet(nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2)), [("a", ["0"])], "1")
    model.freeze(1)
    c = cut(model)
    split = [Split(torch.randn(10, 4), torch.zeros(10, dtype=torch.long), np.arange(10)) for _ in range(3)]
    cache = FeatureCache(max_bytes=2 * 10 * 4 * 4)  # room for two splits' float32 features
    for s in split:
        cache.features(c, s, "w")
    assert len(cache.entries) == 2 and cache.bytes <= cache.max_bytes
    cache.features(c, split[0], "w")
    assert cache.misses == 4  # the first split had been dropped
