"""harness.learn.train.fit: the fine-tuning strategies change what trains at the right epochs; frozen BatchNorm holds
still."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from harness.learn.data import Split, Task
from harness.learn.models import build_model, model_spec
from harness.learn.train import fit
from harness.spec import TrialConfig


def synthetic_task(model: str, n_train: int = 8, n_classes: int = 3) -> Task:
    """Random images at the model's input size: enough to drive a few optimizer steps."""
    spec = model_spec(model)
    generator = torch.Generator().manual_seed(0)

    def split(n: int) -> Split:
        x = torch.randn(n, spec.in_channels, spec.input_size, spec.input_size, generator=generator)
        return Split(x, torch.arange(n) % n_classes, np.arange(n))

    pre = None  # fit never looks at the preprocessing
    return Task("synthetic", [str(c) for c in range(n_classes)], split(n_train), split(4), split(4), pre, False)


def config(**changes) -> TrialConfig:
    defaults = {"optimizer": "sgd", "lr": 0.05, "optimizer_params": {"momentum": 0.9}, "lr_schedule": "constant",
                "batch_size": 4, "epochs": 1, "seed": 0}
    return TrialConfig(**{**defaults, **changes})


def run(model_name: str, cfg: TrialConfig, watch: list[str]) -> tuple[list[int], list[dict]]:
    """Fit; record `frozen_stages` after every epoch, and copies of each watched stage's parameters before
    training (snapshot 0) and after every epoch."""
    torch.manual_seed(0)
    model = build_model(model_name, num_classes=3)

    def snapshot() -> dict[str, list[torch.Tensor]]:
        groups = dict(model.parameter_groups())
        return {stage: [p.detach().clone() for p in groups[stage]] for stage in watch}

    frozen, snapshots = [], [snapshot()]

    def on_epoch(epoch: int, metrics: dict[str, float]) -> None:
        frozen.append(int(metrics["frozen_stages"]))
        snapshots.append(snapshot())

    fit(model, synthetic_task(model_name), cfg, on_epoch)
    return frozen, snapshots


def changed(snapshots: list[dict], stage: str, epoch: int) -> bool:
    """Whether `stage`'s parameters moved during `epoch` (snapshot 0 is before training)."""
    before, after = snapshots[epoch][stage], snapshots[epoch + 1][stage]
    return any(not torch.equal(a, b) for a, b in zip(before, after, strict=True))


def test_gradual_unfreezing_thaws_one_stage_from_the_top_each_epoch():
    frozen, _ = run("lenet5", config(strategy="gradual", epochs=5), watch=[])
    assert frozen == [4, 3, 2, 1, 0]


def test_gradual_unfreezing_keeps_each_stage_still_until_its_epoch():
    _, snaps = run("lenet5", config(strategy="gradual", epochs=5), watch=["fc2", "conv1"])
    assert [changed(snaps, "fc2", e) for e in range(5)] == [False, True, True, True, True]
    assert [changed(snaps, "conv1", e) for e in range(5)] == [False, False, False, False, True]


def test_lp_ft_probes_linearly_then_fine_tunes_everything():
    frozen, snaps = run("lenet5", config(strategy="lp_ft", lp_epochs=2, epochs=4), watch=["conv1", "head"])
    assert frozen == [4, 4, 0, 0]
    assert [changed(snaps, "conv1", e) for e in range(4)] == [False, False, True, True]
    assert all(changed(snaps, "head", e) for e in range(4))


def test_linear_probe_trains_only_the_head():
    frozen, snaps = run("lenet5", config(strategy="linear_probe", epochs=2), watch=["conv1", "fc2", "head"])
    assert frozen == [4, 4]
    assert not any(changed(snaps, s, e) for s in ("conv1", "fc2") for e in range(2))
    assert changed(snaps, "head", 0)


def test_freeze_k_keeps_the_first_k_stages_still_and_trains_the_rest():
    frozen, snaps = run("lenet5", config(strategy="freeze_k", freeze_k=2), watch=["conv2", "fc1"])
    assert frozen == [2]
    assert not changed(snaps, "conv2", 0)
    assert changed(snaps, "fc1", 0)


def test_full_fine_tuning_trains_every_stage():
    frozen, snaps = run("lenet5", config(strategy="full"), watch=["conv1", "fc2"])
    assert frozen == [0]
    assert changed(snaps, "conv1", 0) and changed(snaps, "fc2", 0)


def running_stats(model) -> list[torch.Tensor]:
    return [model.net.bn1.running_mean.clone(), model.net.layer1[0].bn1.running_var.clone()]


@pytest.fixture(scope="module")
def resnet_linear_probe():
    """ResNet-18 with every stage frozen, before and after one epoch, frozen BatchNorm in eval mode or not."""
    results = {}
    for bn_frozen_eval in (True, False):
        torch.manual_seed(0)
        model = build_model("resnet18", num_classes=3, bn_frozen_eval=bn_frozen_eval)
        before = running_stats(model)
        fit(model, synthetic_task("resnet18"), config(strategy="linear_probe"))
        results[bn_frozen_eval] = (before, running_stats(model))
    return results


@pytest.mark.slow  # resnet_linear_probe trains two ResNet-18s
def test_frozen_batchnorm_keeps_its_running_statistics_through_an_epoch(resnet_linear_probe):
    before, after = resnet_linear_probe[True]
    assert all(torch.equal(b, a) for b, a in zip(before, after, strict=True))


@pytest.mark.slow  # resnet_linear_probe trains two ResNet-18s
def test_frozen_batchnorm_updates_its_statistics_when_bn_frozen_eval_is_off(resnet_linear_probe):
    before, after = resnet_linear_probe[False]
    assert not any(torch.equal(b, a) for b, a in zip(before, after, strict=True))


def test_freeze_k_beyond_the_model_s_stages_is_refused_not_clamped():
    with pytest.raises(ValueError, match="can freeze 0..4 stages, not 6"):
        run("lenet5", config(strategy="freeze_k", freeze_k=6), watch=[])


@pytest.mark.slow  # trains a ResNet-18
def test_a_last_batch_of_one_image_does_not_break_batchnorm_training():
    task = synthetic_task("resnet18", n_train=5)  # batches of 2, 2 and 1: a ResNet's top maps are 1x1 at 32 px
    model = build_model("resnet18", 3)
    result = fit(model, task, config(model="resnet18", batch_size=2, epochs=1))
    assert np.isfinite(result.history[0]["train_loss"])


@pytest.mark.parametrize(("model_name", "strategy", "optimizer", "lr", "seed"), [
    ("lenet5", "linear_probe", "adam", 0.05, 0), ("lenet5", "full", "adam", 0.05, 0),
    ("lenet5", "full", "rmsprop", 0.01, 5),  # no fused kernel: the per-tensor step
    # BatchNorm's running statistics change inside its kernel; the best epoch here is the 4th, not the first
    ("resnet8", "full", "sgd", 0.05, 4),
])
def test_best_state_is_the_whole_model_as_it_was_after_the_best_epoch(model_name, strategy, optimizer, lr, seed):
    torch.manual_seed(seed)
    model = build_model(model_name, num_classes=3)
    states = []
    cfg = config(model=model_name, strategy=strategy, epochs=5, optimizer=optimizer, lr=lr, optimizer_params={},
                 seed=seed)
    result = fit(model, synthetic_task(model_name, n_train=24), cfg,
                 lambda epoch, m: states.append({k: v.clone() for k, v in model.state_dict().items()}))
    assert result.best_epoch > 0  # else the first copy is the answer and nothing is tested
    assert result.best_state.keys() == states[0].keys()
    for name, value in states[result.best_epoch].items():
        assert torch.equal(result.best_state[name], value), name
    assert not any(result.best_state[k] is v for k, v in model.state_dict().items())  # copies, not the live weights
