"""harness.learn.models: the registry, stages and freezing, weights (none, checkpoint, ImageNet offline), preprocessing.

Nothing here downloads: ImageNet downloads are simulated to fail.
"""

from __future__ import annotations

import copy
import urllib.error

import pytest
import torch
import torchvision
from torch import nn

from harness.learn.models import (
    MODELS,
    build_model,
    model_spec,
    preprocessing,
    require_imagenet,
)
from harness.learn.weights import WeightsUnavailable
from tests.tiers import slow_except

DERIVED = ["mobilenet_v3_small", "efficientnet_b0", "squeezenet1_0"]  # not in the registry; SqueezeNet: a conv head
LIGHT = ("lenet5", "resnet8", "resnet18", "mobilenet_v3_small", "squeezenet1_0")  # the rest: seconds each, in CI


def tiny_batch(name: str, n: int = 2) -> torch.Tensor:
    spec = model_spec(name)
    return torch.randn(n, spec.in_channels, spec.input_size, spec.input_size)


@pytest.fixture(scope="module")
def fresh():
    """`build_model(name, 3)` with random weights, built once per model for the tests that take one: a copy is
    much faster than initialising VGG-16's 138M parameters again, and each test gets its own."""
    built = {}

    def make(name: str) -> nn.Module:
        if name not in built:
            built[name] = build_model(name, num_classes=3)
        return copy.deepcopy(built[name])

    yield make
    built.clear()


def trainable(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize("name", slow_except([*MODELS, *DERIVED], *LIGHT))
def test_model_runs_forward_and_backward_with_random_weights(name, fresh):
    model = fresh(name).train()
    logits = model(tiny_batch(name))
    assert logits.shape == (2, 3)
    logits.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("name", slow_except([*MODELS, *DERIVED], *LIGHT))
def test_stages_and_head_cover_every_parameter_exactly_once(name, fresh):
    model = fresh(name)
    grouped = [id(p) for _, params in model.parameter_groups() for p in params]
    assert len(grouped) == len(set(grouped))
    assert set(grouped) == {id(p) for p in model.parameters()}


@pytest.mark.parametrize("name", ["mobilenet_v3_small", "efficientnet_b0"])
def test_a_derived_model_gets_one_stage_per_block_not_one_for_everything(name):
    # both keep every block in one `features` Sequential: a single stage would make freeze_k meaningless
    assert len(build_model(name, num_classes=3).stage_names) >= 4


@pytest.mark.slow  # GoogLeNet: seconds to build and run on a CPU
def test_a_googlenet_trains_on_its_main_head_only():
    model = build_model("googlenet", num_classes=3).train()
    assert isinstance(model(tiny_batch("googlenet")), torch.Tensor)  # no auxiliary-logits tuple


@pytest.mark.parametrize("name", ["vit_b_16", "inception_v3"])
def test_a_derived_model_is_fed_at_least_the_size_its_weights_declare(name):
    declared = torchvision.models.get_model_weights(name).DEFAULT.meta["min_size"][0]
    assert model_spec(name).input_size >= declared


def test_alexnet_is_fed_at_least_the_size_it_needs():
    assert model_spec("alexnet").input_size >= 63


def test_head_is_replaced_to_fit_the_number_of_classes():
    model = build_model("resnet18", num_classes=7)
    assert model.net.get_submodule(model.head_path).out_features == 7


@pytest.mark.parametrize("name", slow_except(MODELS, *LIGHT))
def test_trainable_parameters_grow_by_each_stage_unfrozen_from_the_top(name, fresh):
    model = fresh(name)
    stages, groups = model.stage_names, dict(model.parameter_groups())
    for k in range(len(stages), 0, -1):
        model.freeze(k)
        before = trainable(model)
        model.freeze(k - 1)  # stage k - 1 (counting from 0 at the input) thaws
        assert trainable(model) - before == sum(p.numel() for p in groups[stages[k - 1]]) > 0


def test_freeze_records_which_stages_are_frozen():
    model = build_model("lenet5", num_classes=3)
    model.freeze(2)
    assert model.frozen == ("conv1", "conv2")
    assert not any(p.requires_grad for p in model.net.conv1.parameters())
    assert all(p.requires_grad for p in model.net.fc1.parameters())


def test_freezing_more_stages_than_the_model_has_is_refused():
    model = build_model("lenet5", num_classes=3)
    with pytest.raises(ValueError, match="0..4"):
        model.freeze(5)


def test_frozen_batchnorm_stays_in_eval_mode_while_training():
    model = build_model("resnet18", num_classes=3)
    model.freeze(1)  # the stem: conv1 + bn1
    model.train()
    assert not model.net.bn1.training
    assert model.net.layer1[0].bn1.training


def test_frozen_batchnorm_trains_when_bn_frozen_eval_is_off():
    model = build_model("resnet18", num_classes=3, bn_frozen_eval=False)
    model.freeze(1)
    model.train()
    assert model.net.bn1.training


def test_unknown_model_is_refused_naming_the_choices():
    with pytest.raises(ValueError, match="lenet5.*resnet50"):
        model_spec("lenet6")


# --- weights from a local checkpoint -----------------------------------------------------------------


def saved_lenet(tmp_path, num_classes: int = 10) -> tuple[str, dict[str, torch.Tensor]]:
    state = build_model("lenet5", num_classes).net.state_dict()
    path = tmp_path / "lenet.pt"
    torch.save(state, path)
    return str(path), state


def test_a_local_checkpoint_loads_its_weights(tmp_path):
    path, state = saved_lenet(tmp_path)
    model = build_model("lenet5", num_classes=5, weights=path)
    for key in ("conv1.0.weight", "conv2.0.bias", "fc2.0.weight"):
        assert torch.equal(model.net.state_dict()[key], state[key])


def test_a_checkpoint_head_of_another_shape_is_replaced(tmp_path):
    path, _ = saved_lenet(tmp_path, num_classes=10)
    model = build_model("lenet5", num_classes=5, weights=path)
    assert model.net.head.weight.shape == (5, 84)


def test_a_transfernet_state_dict_loads_too(tmp_path):
    model = build_model("lenet5", num_classes=5)
    torch.save(model.state_dict(), tmp_path / "transfer.pt")  # keys prefixed net.
    loaded = build_model("lenet5", num_classes=5, weights=str(tmp_path / "transfer.pt"))
    assert torch.equal(loaded.net.conv1[0].weight, model.net.conv1[0].weight)


def test_a_checkpoint_of_another_architecture_is_refused(tmp_path):
    torch.save(build_model("resnet18", 5).net.state_dict(), tmp_path / "resnet.pt")
    with pytest.raises(ValueError, match="does not fit"):
        build_model("lenet5", num_classes=5, weights=str(tmp_path / "resnet.pt"))


def test_a_checkpoint_with_a_layer_of_the_wrong_shape_is_refused(tmp_path):
    path, state = saved_lenet(tmp_path)
    state["conv1.0.weight"] = torch.zeros(6, 3, 5, 5)  # an RGB first layer for a grey model
    torch.save(state, path)
    with pytest.raises(ValueError, match="wrong shape.*conv1.0.weight"):
        build_model("lenet5", num_classes=5, weights=path)


def test_weights_that_are_no_option_and_no_file_are_refused(tmp_path):
    with pytest.raises(ValueError, match="none, imagenet or an existing checkpoint file"):
        build_model("lenet5", num_classes=5, weights=str(tmp_path / "missing.pt"))


def test_transfer_stages_keeps_the_first_stages_and_reinitialises_the_rest(tmp_path):
    path, state = saved_lenet(tmp_path)
    model = build_model("lenet5", num_classes=5, weights=path, transfer_stages=2)
    own = model.net.state_dict()
    assert torch.equal(own["conv1.0.weight"], state["conv1.0.weight"])
    assert torch.equal(own["conv2.0.weight"], state["conv2.0.weight"])
    assert not torch.equal(own["fc1.1.weight"], state["fc1.1.weight"])
    assert not torch.equal(own["fc2.0.weight"], state["fc2.0.weight"])


def test_transfer_stages_resets_batchnorm_statistics_of_the_reinitialised_stages(tmp_path):
    net = build_model("resnet18", 5).net
    for layer in (net.layer3, net.layer4):
        layer[1].bn2.running_mean.fill_(3.0)  # pretend pretraining moved the statistics
    torch.save(net.state_dict(), tmp_path / "resnet.pt")
    model = build_model("resnet18", 5, weights=str(tmp_path / "resnet.pt"), transfer_stages=4)  # stem..layer3
    assert torch.all(model.net.layer3[1].bn2.running_mean == 3.0)
    assert torch.all(model.net.layer4[1].bn2.running_mean == 0.0)


def test_transfer_stages_beyond_the_model_is_refused():
    with pytest.raises(ValueError, match="0..4"):
        build_model("lenet5", num_classes=5, transfer_stages=5)


# --- ImageNet weights, offline ------------------------------------------------------------------------


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """An empty torch.hub cache and a network that fails the way an offline machine does."""
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))

    def no_network(url, *args, **kwargs):
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    return tmp_path / "hub" / "checkpoints"


def test_offline_imagenet_weights_stop_with_the_file_and_the_folder(offline):
    with pytest.raises(WeightsUnavailable) as raised:
        build_model("resnet18", num_classes=5, weights="imagenet")
    message = str(raised.value)
    assert "resnet18-f37072fd.pth" in message
    assert str(offline) in message


def test_offline_imagenet_weights_are_caught_before_a_model_is_built(offline):
    with pytest.raises(WeightsUnavailable, match=f"alexnet-owt-7be5be79.pth in {offline}"):
        require_imagenet("alexnet")


def test_a_model_without_imagenet_weights_says_so():
    with pytest.raises(ValueError, match="lenet5 has no ImageNet weights"):
        build_model("lenet5", num_classes=5, weights="imagenet")


def test_imagenet_preprocessing_is_what_the_weights_declare():
    pre = preprocessing("resnet18", "imagenet")
    assert (pre.size, pre.resize, pre.channels) == (224, 256, 3)
    assert pre.mean == pytest.approx((0.485, 0.456, 0.406))
    assert pre.std == pytest.approx((0.229, 0.224, 0.225))


def test_imagenet_preprocessing_follows_each_model_s_weights():
    declared = torchvision.models.get_model_weights("efficientnet_b1").DEFAULT.transforms()
    pre = preprocessing("efficientnet_b1", "imagenet")
    assert (pre.size, pre.resize) == (declared.crop_size[0], declared.resize_size[0]) == (240, 255)


def test_random_weights_use_the_model_s_own_input_size_and_channels():
    assert preprocessing("lenet5", "none").size == 32
    assert preprocessing("lenet5", "none").channels == 1
    assert preprocessing("alexnet", "source").size == 64


@pytest.mark.parametrize("size", [(28, 28), (10, 10), (7, 9)])
def test_lenet_pooling_gives_max_pool2d_s_output_with_or_without_a_gradient(size):
    from harness.learn.nets import MaxPool2x2

    x = torch.randn(3, 6, *size)
    expected = torch.nn.functional.max_pool2d(x, 2)
    with torch.no_grad():  # the fast path: pairwise maxima
        assert torch.equal(MaxPool2x2()(x), expected)
    leaf = x.clone().requires_grad_()
    out = MaxPool2x2()(leaf)  # training: max_pool2d itself, for its gradient
    assert torch.equal(out, expected) and out.grad_fn is not None


@pytest.mark.slow  # two LeNets side by side through 30 steps
def test_lenet_pooling_before_relu_trains_exactly_as_relu_then_pool():
    """The order LeNet5 uses (pool, then ReLU: a quarter of the ReLUs) against the textbook one, over a run of
    Adam steps on digit-like inputs with flat backgrounds (ties in the pooling windows): the same weights, bit for
    bit, so the reorder changes the speed and nothing else."""
    import copy

    from harness.learn.nets import LeNet5

    torch.manual_seed(0)
    ours = LeNet5(5)
    textbook = copy.deepcopy(ours)
    for stage in (textbook.conv1, textbook.conv2):
        assert isinstance(stage[2], torch.nn.ReLU)  # pooling sits before the ReLU in ours
        stage[1], stage[2] = stage[2], stage[1]
    models = [ours, textbook]
    optimizers = [torch.optim.Adam(m.parameters(), lr=1e-2) for m in models]
    for _ in range(30):
        x = (torch.rand(16, 1, 32, 32) > 0.7).float()  # mostly zeros: equal values in many windows
        y = torch.randint(0, 5, (16,))
        for model, optimizer in zip(models, optimizers, strict=True):
            loss = torch.nn.functional.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    pairs = zip(ours.state_dict().values(), textbook.state_dict().values(), strict=True)
    assert all(torch.equal(a, b) for a, b in pairs)
    with torch.no_grad():
        assert torch.equal(ours.eval()(x), textbook.eval()(x))
