"""harness.learn.optim: the registry and its default spaces, parameter groups (frozen out, no decay,
discriminative lrs)."""

from __future__ import annotations

import dataclasses

import optuna
import pytest
import torch
import torch.nn.functional as F

from harness.learn.models import build_model
from harness.learn.optim import OPTIMIZERS, build_optimizer, optimizer_spec, param_groups
from harness.learn.spaces import SPACES, default_space
from harness.spec import TrialConfig


def lenet(frozen: int = 0):
    torch.manual_seed(0)
    model = build_model("lenet5", num_classes=5)
    model.freeze(frozen)
    return model


def optimizer_ids(optimizer: torch.optim.Optimizer) -> set[int]:
    return {id(p) for group in optimizer.param_groups for p in group["params"]}


def sampled_config(optimizer: str) -> TrialConfig:
    """One trial of the optimizer's default space, drawn by a real (in-memory) Optuna study."""
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    trial = study.ask()
    return dataclasses.replace(TrialConfig(optimizer=optimizer), **default_space(trial, optimizer))


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_every_optimizer_builds_from_its_default_space_and_takes_a_step(name):
    model = lenet()
    optimizer = build_optimizer(sampled_config(name), model)
    before = model.net.conv1[0].weight.detach().clone()
    loss = F.cross_entropy(model(torch.randn(4, 1, 32, 32)), torch.tensor([0, 1, 2, 3]))
    loss.backward()
    optimizer.step()
    assert isinstance(optimizer, OPTIMIZERS[name].cls)
    assert not torch.equal(model.net.conv1[0].weight, before)


@pytest.mark.parametrize("name", [n for n in OPTIMIZERS if n != "sgd"])
def test_every_adaptive_default_space_tunes_epsilon(name):
    assert "eps" in sampled_config(name).optimizer_params


def test_a_fixed_trial_replays_a_configuration():
    trial = optuna.trial.FixedTrial({"lr": 0.1, "weight_decay": 1e-4, "momentum": 0.9, "nesterov": True})
    space = default_space(trial, "sgd")
    assert space == {"lr": 0.1, "weight_decay": 1e-4, "optimizer_params": {"momentum": 0.9, "nesterov": True}}


def test_sgd_turns_nesterov_off_when_there_is_no_momentum():
    cfg = TrialConfig(optimizer="sgd", optimizer_params={"momentum": 0.0, "nesterov": True})
    optimizer = build_optimizer(cfg, lenet())  # torch refuses nesterov without momentum
    assert optimizer.param_groups[0]["nesterov"] is False


def test_sgd_keeps_nesterov_with_momentum():
    cfg = TrialConfig(optimizer="sgd", optimizer_params={"momentum": 0.9, "nesterov": True})
    assert build_optimizer(cfg, lenet()).param_groups[0]["nesterov"] is True


def test_adam_gets_its_betas_and_epsilon():
    cfg = TrialConfig(optimizer="adam", optimizer_params={"beta1": 0.8, "eps": 1e-3})
    group = build_optimizer(cfg, lenet()).param_groups[0]
    assert (group["betas"], group["eps"]) == ((0.8, 0.999), 1e-3)


def test_an_optimizer_param_the_optimizer_does_not_take_is_refused():
    cfg = TrialConfig(optimizer="adam", optimizer_params={"momentum": 0.9})  # would be silently ignored
    with pytest.raises(ValueError, match="adam takes optimizer_params beta1, beta2, eps; not momentum"):
        build_optimizer(cfg, lenet())


def test_unknown_optimizer_is_refused_naming_the_choices():
    with pytest.raises(ValueError, match="sgd, adam, adamw, nadam, radam, rmsprop, adagrad"):
        optimizer_spec("lamb")


def test_frozen_parameters_are_absent_from_the_optimizer():
    model = lenet(frozen=2)
    optimizer = build_optimizer(TrialConfig(optimizer="sgd"), model)
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert optimizer_ids(optimizer) == trainable
    assert id(model.net.conv1[0].weight) not in optimizer_ids(optimizer)


def test_every_trainable_parameter_is_in_exactly_one_group():
    model = build_model("resnet18", num_classes=5)
    model.freeze(2)
    groups = param_groups(model, lr=0.1, weight_decay=1e-4)
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids))
    assert set(ids) == {id(p) for p in model.parameters() if p.requires_grad}


def test_biases_and_normalisation_parameters_get_no_weight_decay():
    model = build_model("resnet18", num_classes=5)
    groups = param_groups(model, lr=0.1, weight_decay=1e-2)
    decay_of = {id(p): g["weight_decay"] for g in groups for p in g["params"]}
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert all(decay_of[id(p)] == 0.0 for m in norms for p in m.parameters())
    assert decay_of[id(model.net.fc.bias)] == 0.0
    assert decay_of[id(model.net.fc.weight)] == 1e-2
    assert decay_of[id(model.net.conv1.weight)] == 1e-2


def test_discriminative_lrs_decay_by_stage_from_the_head_down():
    groups = param_groups(lenet(), lr=0.1, weight_decay=0.0, stage_lr_decay=0.5)
    lr_of = {g["stage"]: g["lr"] for g in groups}
    assert lr_of == pytest.approx({"head": 0.1, "fc2": 0.05, "fc1": 0.025, "conv2": 0.0125, "conv1": 0.00625})


def test_discriminative_lrs_count_frozen_stages_below_the_head():
    groups = param_groups(lenet(frozen=2), lr=0.1, weight_decay=0.0, stage_lr_decay=0.5)
    lr_of = {g["stage"]: g["lr"] for g in groups}
    assert lr_of == pytest.approx({"head": 0.1, "fc2": 0.05, "fc1": 0.025})  # conv1, conv2 frozen: absent


def test_the_optimizer_carries_each_group_s_own_lr():
    cfg = TrialConfig(optimizer="adam", lr=0.01, stage_lr_decay=0.1)
    optimizer = build_optimizer(cfg, lenet())
    head = next(g for g in optimizer.param_groups if g["stage"] == "head")
    conv1 = next(g for g in optimizer.param_groups if g["stage"] == "conv1")
    assert (head["lr"], conv1["lr"]) == pytest.approx((0.01, 1e-6))


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_the_lr_only_space_searches_the_default_spaces_lr_range(name):
    from harness.learn.spaces import lr_space

    def lr_range(space_fn):
        study = optuna.create_study()
        trial = study.ask()
        space_fn(trial)
        return trial.distributions["lr"]

    assert lr_range(lambda t: lr_space(t, name)) == lr_range(lambda t: default_space(t, name))


def test_every_optimizer_has_a_default_space_and_every_space_an_optimizer():
    assert list(SPACES) == list(OPTIMIZERS)


def test_reading_a_study_file_needs_no_torch():
    import subprocess
    import sys

    code = ("import sys; from harness.study_file import load_study; load_study('sgd_vs_adam'); "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw", "rmsprop"])
def test_stages_sharing_lr_and_decay_are_one_group_and_train_exactly_as_one_group_per_stage(name):
    """Without discriminative lrs LeNet-5 has 2 groups (weight decay or none), not 2 per stage: fewer optimizer
    calls, and every parameter's update the same, bit for bit."""
    import copy

    model = lenet()
    per_stage = copy.deepcopy(model)
    cfg = TrialConfig(optimizer=name, lr=0.01, weight_decay=1e-3)
    merged = build_optimizer(cfg, model)
    assert [g["weight_decay"] for g in merged.param_groups] == [1e-3, 0.0]
    assert merged.param_groups[0]["stage"].startswith("head+")  # the head's first: its lr is the one logged
    split = [{**g, "params": [p]} for g in param_groups(per_stage, 0.01, 1e-3, stage_lr_decay=0.999)
             for p in g["params"]]  # distinct lrs keep stages apart; then set back to the shared lr
    for group in split:
        group["lr"] = 0.01
    assert len(split) == 10
    reference = build_optimizer(cfg, per_stage)
    reference.param_groups = []
    for group in split:  # the same optimizer, one group per parameter
        reference.add_param_group(group)
    torch.manual_seed(0)
    for _ in range(5):
        x, y = torch.randn(8, 1, 32, 32), torch.randint(0, 5, (8,))
        for net, optimizer in ((model, merged), (per_stage, reference)):
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(net(x), y).backward()
            optimizer.step()
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), per_stage.parameters(), strict=True))
