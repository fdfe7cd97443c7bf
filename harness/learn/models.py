"""The `MODELS` registry (and `REGISTERED`, the networks a study adds with `harness.register_model`) and
`TransferNet`: a pretrained network with ordered, freezable stages and a new head.

Which stages are frozen is explicit state of the model (`TransferNet.frozen`), never a side effect.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torchvision
from torch import nn

from harness import internals
from harness.learn import timm_models
from harness.learn.nets import LeNet5, ResNet8
from harness.learn.stages import (
    StagePaths,
    alexnet_stages,
    derived_stages,
    head_path,
    resnet_stages,
    vgg_stages,
)
from harness.learn.weights import imagenet_file, load_checkpoint, unavailable, widen_input
from harness.spec import TrialConfig, weights_kind


@dataclass(frozen=True)
class ModelSpec:
    build: Callable[[], nn.Module]  # random initialisation, original head
    stages: Callable[[nn.Module], StagePaths]
    in_channels: int = 3
    input_size: int = 32  # what the harness feeds it on small tasks; ImageNet weights declare their own
    torchvision_name: str | None = None  # for ImageNet weights
    pretrain_lr: float = 1e-3  # Adam's lr for source pretraining from scratch (weights=source)
    # channels_last on a CPU too (it always is on a GPU): faster for narrow convolutions, slower for wide ones
    # (one thread, batches of 32: LeNet-5 and ResNet-8 10-13% faster a step, ResNet-18 20% slower)
    cpu_channels_last: bool = False
    mean: tuple[float, ...] | None = None  # normalisation without ImageNet weights; None: 0.5 for each channel
    std: tuple[float, ...] | None = None


def _tv(name: str, stages: Callable[[nn.Module], StagePaths] = derived_stages, input_size: int = 32,
        pretrain_lr: float = 1e-3) -> ModelSpec:
    return ModelSpec(
        build=lambda: torchvision.models.get_model(name, weights=None),
        stages=stages,
        input_size=input_size,
        pretrain_lr=pretrain_lr,
        torchvision_name=name,
    )


MODELS: dict[str, ModelSpec] = {
    "lenet5": ModelSpec(
        build=LeNet5,
        stages=lambda net: [(n, [n]) for n in ("conv1", "conv2", "fc1", "fc2")],
        in_channels=1,
        cpu_channels_last=True,
    ),
    "resnet8": ModelSpec(  # digits are 8x8: at 16 px it trains 4x faster than at 32, as well (measured)
        build=ResNet8,
        stages=lambda net: [("stem", ["conv1", "bn1"])] + [(f"layer{i}", [f"layer{i}"]) for i in range(1, 4)],
        in_channels=1,
        input_size=16,
        cpu_channels_last=True,
    ),
    # From scratch with Adam at 1e-3, AlexNet and VGG-16 stay at chance and VGG-16-BN at 41% on digits 0-4
    # (measured); at 1e-4 VGG-16-BN reaches 98% in 3 epochs and VGG-16 about 90% in 5.
    "alexnet": _tv("alexnet", alexnet_stages, input_size=64, pretrain_lr=1e-4),  # smaller inputs pool to nothing
    "vgg16": _tv("vgg16", vgg_stages, pretrain_lr=1e-4),
    "vgg16_bn": _tv("vgg16_bn", vgg_stages, pretrain_lr=1e-4),
    "resnet18": _tv("resnet18", resnet_stages),
    "resnet50": _tv("resnet50", resnet_stages),
}
REGISTERED: dict[str, ModelSpec] = {}  # harness.register_model's: a study file's or a notebook's own networks


def torchvision_classifiers() -> list[str]:
    return sorted(torchvision.models.list_models(module=torchvision.models))


def model_spec(name: str) -> ModelSpec:
    """The registry entry, a registered model's, or one derived for any other torchvision classification model."""
    if name in MODELS:
        return MODELS[name]
    if name in REGISTERED:
        return REGISTERED[name]
    if timm_models.is_timm(name):  # timm's, staged like torchvision's
        return ModelSpec(lambda: timm_models.build(name), derived_stages, 3, timm_models.input_size(name))
    if name in torchvision_classifiers():
        min_size = torchvision.models.get_model_weights(name).DEFAULT.meta["min_size"]  # metadata, no download
        return _tv(name, input_size=max(32, *min_size))  # ViT and Swin take nothing smaller than 224
    registered = f"; registered: {', '.join(REGISTERED)}" if REGISTERED else ""
    raise ValueError(f"unknown model {name!r}; registry: {', '.join(MODELS)}{registered}; or any torchvision "
                     "classification model (torchvision.models.list_models()), or timm's as timm:NAME "
                     "(timm.list_models()), or your own with harness.register_model")


class TransferNet(nn.Module):
    """A network, its stages from input to output, and its head; `frozen` names the frozen stages."""

    def __init__(self, net: nn.Module, stages: StagePaths, head: str, bn_frozen_eval: bool = True,
                 cpu_channels_last: bool = False):
        super().__init__()
        self.net = net
        self.stage_paths = dict(stages)
        self.head_path = head
        self.bn_frozen_eval = bn_frozen_eval
        self.cpu_channels_last = cpu_channels_last  # ModelSpec's: the memory format it trains faster in on a CPU
        self.frozen: tuple[str, ...] = ()

    @property
    def stage_names(self) -> list[str]:
        return list(self.stage_paths)

    def stage_modules(self, stage: str) -> list[nn.Module]:
        return [self.net.get_submodule(p) for p in self.stage_paths[stage]]

    def parameter_groups(self) -> list[tuple[str, list[nn.Parameter]]]:
        """Parameters by stage, input to output, then the head; every parameter exactly once."""
        groups = [
            (stage, [p for m in self.stage_modules(stage) for p in m.parameters()]) for stage in self.stage_names
        ]
        groups.append(("head", list(self.net.get_submodule(self.head_path).parameters())))
        # parameters held outside every stage (a ViT's class token) travel with the first stage
        seen = {id(p) for _, params in groups for p in params}
        groups[0][1].extend(p for p in self.net.parameters() if id(p) not in seen)
        return groups

    def freeze(self, n_stages: int) -> None:
        """Freeze the first `n_stages` stages (from the input side); everything above them trains."""
        if not 0 <= n_stages <= len(self.stage_paths):
            raise ValueError(f"can freeze 0..{len(self.stage_paths)} stages, not {n_stages}")
        self.frozen = tuple(self.stage_names[:n_stages])
        for stage, params in self.parameter_groups():
            for p in params:
                p.requires_grad_(stage not in self.frozen)
        self.train(self.training)

    def train(self, mode: bool = True) -> TransferNet:
        super().train(mode)
        if mode and self.bn_frozen_eval:  # frozen BatchNorm must not drift its running statistics
            batch_norm = internals.batch_norm_base()
            for stage in self.frozen:
                for module in self.stage_modules(stage):
                    for m in module.modules():
                        if isinstance(m, batch_norm):
                            m.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def imagenet_weights(name: str) -> torchvision.models.WeightsEnum:
    spec = model_spec(name)
    if spec.torchvision_name is None:
        raise ValueError(f"{name} has no ImageNet weights in torchvision; use weights=source or none")
    return torchvision.models.get_model_weights(spec.torchvision_name).DEFAULT


def require_imagenet(name: str) -> Path:
    """The cached weights file of `name`, downloaded through torchvision first if it is missing.

    A study calls this before it writes anything, so that offline it stops at once with `WeightsUnavailable`.
    """
    if timm_models.is_timm(name):  # through timm and the Hugging Face cache
        return timm_models.require(name)
    weights = imagenet_weights(name)
    file = imagenet_file(weights)
    if not file.is_file():
        try:
            weights.get_state_dict(progress=True, check_hash=True)
        except (OSError, RuntimeError) as error:  # URLError is an OSError; a bad hash a RuntimeError
            raise unavailable(name, weights, error) from error
    return file


def load_imagenet(name: str) -> nn.Module:
    """Torchvision's weights through its own API and cache; a clear message when offline, never random weights."""
    if timm_models.is_timm(name):
        return timm_models.build(name, pretrained=True)
    weights = imagenet_weights(name)
    try:
        return torchvision.models.get_model(model_spec(name).torchvision_name, weights=weights)
    except (OSError, RuntimeError) as error:  # URLError is an OSError; a bad hash a RuntimeError
        raise unavailable(name, weights, error) from error


def _replace_head(net: nn.Module, head: str, num_classes: int) -> None:
    old = net.get_submodule(head)
    if isinstance(old, nn.Linear):
        net.set_submodule(head, nn.Linear(old.in_features, num_classes))
    else:  # SqueezeNet classifies with a 1x1 convolution
        net.set_submodule(head, nn.Conv2d(old.in_channels, num_classes, old.kernel_size))


def _without_aux_heads(net: nn.Module) -> nn.Module:
    """GoogLeNet and Inception v3 add auxiliary logits while training; transfer uses the main head only."""
    if getattr(net, "aux_logits", False):
        net.aux_logits = False
        for name in ("aux1", "aux2", "AuxLogits"):
            if hasattr(net, name):
                setattr(net, name, None)
    return net


def check_weights_file(path: str | Path, model: str) -> None:
    """Fail before a study writes anything: `path` must be a safe, readable state dict that fits `model`."""
    if not Path(path).is_file():
        raise ValueError(f"weights must be source, imagenet, none or a checkpoint file; no such file: {path}")
    net = _without_aux_heads(model_spec(model).build())
    load_checkpoint(net, path, head_path(net))


def build_model(name: str, num_classes: int, weights: str = "none", bn_frozen_eval: bool = True,
                transfer_stages: int | None = None, in_channels: int | None = None) -> TransferNet:
    """Build `name` with `weights` (none | imagenet | a checkpoint path) and a head for `num_classes`.

    `transfer_stages=n` keeps the pretrained weights of the first n stages only and re-initialises the rest
    (Yosinski et al. 2014's AnB networks); None keeps them all. Other `in_channels` widen the first convolution.

    >>> build_model("lenet5", 5).stage_names
    ['conv1', 'conv2', 'fc1', 'fc2']
    """
    spec = model_spec(name)
    kind = weights_kind(weights)
    if kind == "source" or (kind == "path" and not Path(weights).is_file()):
        raise ValueError(f"weights must be none, imagenet or an existing checkpoint file, not {weights!r} "
                         "(weights=source is pretrained by harness.learn.pretrain, which passes its checkpoint file)")
    net = _without_aux_heads(load_imagenet(name) if kind == "imagenet" else spec.build())
    head = head_path(net)
    if kind == "path":
        load_checkpoint(net, weights, head)
    stages = spec.stages(net)
    if transfer_stages is not None:
        if not 0 <= transfer_stages <= len(stages):
            raise ValueError(f"{name} has {len(stages)} stages: transfer_stages must be 0..{len(stages)}")
        fresh = spec.build()
        for _, paths in stages[transfer_stages:]:
            for path in paths:
                net.get_submodule(path).load_state_dict(fresh.get_submodule(path).state_dict())
    if in_channels is not None and in_channels != spec.in_channels:
        widen_input(net, in_channels)
    _replace_head(net, head, num_classes)
    return TransferNet(net, stages, head, bn_frozen_eval, spec.cpu_channels_last)


@functools.cache
def stage_names(name: str) -> tuple[str, ...]:
    """`name`'s stages, from the input side: built without weights (ImageNet's are not needed to count them)."""
    return tuple(build_model(name, 2).stage_names)


@dataclass(frozen=True)
class Preprocess:
    """What a model wants its input to be: size, channels, normalisation, and how to resize to it.

    With `weights` set, the pipeline *is* those weights' own `transforms()` (harness.learn.data.preprocess calls
    it), and the fields here are read from it: the record, the pipeline and every cache key agree.
    """

    size: int
    channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    resize: int | None = None  # resize the short side to this, then centre-crop to `size`
    interpolation: str = "bilinear"  # torchvision InterpolationMode value (Swin's weights declare bicubic)
    antialias: bool = True
    weights: str | None = None  # torchvision weights whose transforms() this is, e.g. "Swin_T_Weights.IMAGENET1K_V1"
    widened_from: int | None = None  # the model's own input channels, where its first convolution was widened

    def transforms(self) -> torch.nn.Module | None:
        """The weights' own transform (resize, crop, normalise), or None for ours."""
        return None if self.weights is None else torchvision.models.get_weight(self.weights).transforms()


def preprocessing(name: str, weights: str) -> Preprocess:
    """ImageNet weights carry their own transforms (torchvision's Weights API), whole; other weights use ours."""
    spec = model_spec(name)
    if weights_kind(weights) == "imagenet" and timm_models.is_timm(name):  # timm's cfg: size, normalisation, crop
        return Preprocess(**timm_models.imagenet_preprocessing(name))
    if weights_kind(weights) == "imagenet":  # torchvision's Weights API
        w = imagenet_weights(name)
        t = w.transforms()
        return Preprocess(t.crop_size[0], 3, tuple(t.mean), tuple(t.std), t.resize_size[0], t.interpolation.value,
                          bool(t.antialias), f"{type(w).__name__}.{w.name}")
    half = (0.5,) * spec.in_channels
    return Preprocess(spec.input_size, spec.in_channels, spec.mean or half, spec.std or half)


# Fine-tuning strategies: how many stages (from the input side) are frozen at a given epoch.
STRATEGIES: dict[str, Callable[[int, int, TrialConfig], int]] = {
    "linear_probe": lambda n, epoch, cfg: n,  # only the new head trains
    "freeze_k": lambda n, epoch, cfg: cfg.freeze_k,  # Yosinski et al. 2014: the first k stages frozen
    "full": lambda n, epoch, cfg: 0,  # every layer fine-tunes
    "gradual": lambda n, epoch, cfg: max(n - epoch, 0),  # ULMFiT: one more stage from the top each epoch
    "lp_ft": lambda n, epoch, cfg: n if epoch < cfg.lp_epochs else 0,  # Kumar et al. 2022
}


def frozen_stages_at(cfg: TrialConfig, n_stages: int, epoch: int) -> int:
    """Stages frozen at `epoch`; a freeze_k beyond the model's stages is left for `freeze` to refuse, not clamped."""
    if cfg.strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {cfg.strategy!r}; choices: {', '.join(STRATEGIES)}")
    return STRATEGIES[cfg.strategy](n_stages, epoch, cfg)
