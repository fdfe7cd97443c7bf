"""The `MODELS` registry and `TransferNet`: a pretrained network with ordered, freezable stages and a new head.

Which stages are frozen is explicit state of the model (`TransferNet.frozen`), never a side effect.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torchvision
from torch import nn

StagePaths = list[tuple[str, list[str]]]  # (stage name, module paths), from input to output


class LeNet5(nn.Module):
    """LeNet-5 (LeCun et al. 1998) on 32x32 grey images; ReLU and max-pooling, as it is trained today."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv2d(1, 6, 5), nn.ReLU(), nn.MaxPool2d(2))
        self.conv2 = nn.Sequential(nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2))
        self.fc1 = nn.Sequential(nn.Flatten(), nn.Linear(16 * 5 * 5, 120), nn.ReLU())
        self.fc2 = nn.Sequential(nn.Linear(120, 84), nn.ReLU())
        self.head = nn.Linear(84, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.fc2(self.fc1(self.conv2(self.conv1(x)))))


def _blocks_between_pools(prefix: str, seq: nn.Sequential, names: list[str] | None = None) -> StagePaths:
    """Split a conv `features` Sequential into blocks ending at each MaxPool (VGG's five blocks)."""
    stages, current = [], []
    for index, module in enumerate(seq):
        if any(True for _ in module.parameters()):
            current.append(f"{prefix}.{index}")
        if isinstance(module, nn.MaxPool2d) and current:
            stages.append((f"block{len(stages) + 1}", current))
            current = []
    if current:
        stages.append((f"block{len(stages) + 1}", current))
    if names:
        stages = [(name, paths) for name, (_, paths) in zip(names, stages, strict=True)]
    return stages


def _each_conv(prefix: str, seq: nn.Sequential) -> StagePaths:
    convs = [i for i, m in enumerate(seq) if isinstance(m, nn.Conv2d)]
    return [(f"conv{n + 1}", [f"{prefix}.{i}"]) for n, i in enumerate(convs)]


def _hidden_linears(prefix: str, seq: nn.Sequential) -> StagePaths:
    """The classifier's Linear layers but the last (the head): fc1, fc2."""
    linears = [i for i, m in enumerate(seq) if isinstance(m, nn.Linear)][:-1]
    return [(f"fc{n + 1}", [f"{prefix}.{i}"]) for n, i in enumerate(linears)]


def _resnet_stages(net: nn.Module) -> StagePaths:
    return [("stem", ["conv1", "bn1"])] + [(f"layer{i}", [f"layer{i}"]) for i in range(1, 5)]


def _vgg_stages(net: nn.Module) -> StagePaths:
    return _blocks_between_pools("features", net.features) + _hidden_linears("classifier", net.classifier)


def _alexnet_stages(net: nn.Module) -> StagePaths:
    return _each_conv("features", net.features) + _hidden_linears("classifier", net.classifier)


def _last_linear(net: nn.Module) -> str:
    return [name for name, m in net.named_modules() if isinstance(m, nn.Linear)][-1]


def derived_stages(net: nn.Module) -> StagePaths:
    """Stages of any torchvision classifier: its top-level children that hold parameters, the head aside.

    A child that contains the head (a `classifier` Sequential) is opened one level, so its hidden layers
    become stages of their own.
    """
    head = _last_linear(net)
    stages = []
    for name, child in net.named_children():
        if not any(True for _ in child.parameters()) or name == head:
            continue
        if head.startswith(name + "."):
            for sub, grandchild in child.named_children():
                path = f"{name}.{sub}"
                if path != head and any(True for _ in grandchild.parameters()):
                    stages.append((path.replace(".", "_"), [path]))
        else:
            stages.append((name, [name]))
    return stages


@dataclass(frozen=True)
class ModelSpec:
    build: Callable[[], nn.Module]  # random initialisation, original head
    stages: Callable[[nn.Module], StagePaths]
    in_channels: int = 3
    input_size: int = 32  # what the harness feeds it on small tasks; ImageNet weights declare their own
    torchvision_name: str | None = None  # for ImageNet weights


def _tv(name: str, stages: Callable[[nn.Module], StagePaths] = derived_stages, input_size: int = 32) -> ModelSpec:
    return ModelSpec(
        build=lambda: torchvision.models.get_model(name, weights=None),
        stages=stages,
        input_size=input_size,
        torchvision_name=name,
    )


MODELS: dict[str, ModelSpec] = {
    "lenet5": ModelSpec(
        build=LeNet5,
        stages=lambda net: [(n, [n]) for n in ("conv1", "conv2", "fc1", "fc2")],
        in_channels=1,
    ),
    "alexnet": _tv("alexnet", _alexnet_stages, input_size=64),  # smaller inputs pool down to nothing
    "vgg16": _tv("vgg16", _vgg_stages),
    "vgg16_bn": _tv("vgg16_bn", _vgg_stages),
    "resnet18": _tv("resnet18", _resnet_stages),
    "resnet50": _tv("resnet50", _resnet_stages),
}


def torchvision_classifiers() -> list[str]:
    return sorted(torchvision.models.list_models(module=torchvision.models))


def model_spec(name: str) -> ModelSpec:
    """The registry entry, or one derived for any other torchvision classification model."""
    if name in MODELS:
        return MODELS[name]
    if name in torchvision_classifiers():
        return _tv(name)
    raise ValueError(
        f"unknown model {name!r}; registry: {', '.join(MODELS)}; "
        "or any torchvision classification model (torchvision.models.list_models())"
    )


class TransferNet(nn.Module):
    """A network, its stages from input to output, and its head; `frozen` names the frozen stages."""

    def __init__(self, net: nn.Module, stages: StagePaths, head: str, bn_frozen_eval: bool = True):
        super().__init__()
        self.net = net
        self.stage_paths = dict(stages)
        self.head_path = head
        self.bn_frozen_eval = bn_frozen_eval
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
            for stage in self.frozen:
                for module in self.stage_modules(stage):
                    for m in module.modules():
                        if isinstance(m, nn.modules.batchnorm._BatchNorm):
                            m.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class WeightsUnavailable(RuntimeError):
    """Pretrained weights are neither cached nor downloadable."""


def imagenet_weights(name: str) -> torchvision.models.WeightsEnum:
    spec = model_spec(name)
    if spec.torchvision_name is None:
        raise ValueError(f"{name} has no ImageNet weights in torchvision; use weights=source or none")
    return torchvision.models.get_model_weights(spec.torchvision_name).DEFAULT


def load_imagenet(name: str) -> nn.Module:
    """Torchvision's weights through its own API and cache; a clear message when offline."""
    weights = imagenet_weights(name)
    try:
        return torchvision.models.get_model(model_spec(name).torchvision_name, weights=weights)
    except (OSError, RuntimeError) as error:  # URLError is an OSError
        folder = Path(torch.hub.get_dir()) / "checkpoints"
        raise WeightsUnavailable(
            f"ImageNet weights for {name} are not cached and could not be downloaded ({error}). "
            f"Download {weights.url} and put {Path(weights.url).name} in {folder}"
        ) from error


def _replace_head(net: nn.Module, head: str, num_classes: int) -> None:
    old = net.get_submodule(head)
    net.set_submodule(head, nn.Linear(old.in_features, num_classes))


def load_checkpoint(net: nn.Module, path: str | Path, head: str) -> None:
    """Load a state dict safely (weights_only); a head of another shape is left to be replaced."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    own = net.state_dict()
    state = {k: v for k, v in state.items() if not (k.startswith(head + ".") and v.shape != own[k].shape)}
    missing, unexpected = net.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith(head + ".")]
    if missing or unexpected:
        raise ValueError(f"checkpoint {path} does not fit: missing {missing[:5]}, unexpected {unexpected[:5]}")


def build_model(name: str, num_classes: int, weights: str = "none", bn_frozen_eval: bool = True,
                transfer_stages: int | None = None) -> TransferNet:
    """Build `name` with `weights` (none | imagenet | a checkpoint path) and a head for `num_classes`.

    `transfer_stages=n` keeps the pretrained weights of the first n stages only and re-initialises the rest
    (Yosinski et al. 2014's AnB networks); None keeps them all.

    >>> build_model("lenet5", 5).stage_names
    ['conv1', 'conv2', 'fc1', 'fc2']
    """
    spec = model_spec(name)
    net = load_imagenet(name) if weights == "imagenet" else spec.build()
    head = _last_linear(net)
    if weights not in ("none", "imagenet"):
        if not Path(weights).is_file():
            raise ValueError(f"weights must be none, imagenet, source or an existing checkpoint file; not {weights!r}")
        load_checkpoint(net, weights, head)
    stages = spec.stages(net)
    if transfer_stages is not None:
        if not 0 <= transfer_stages <= len(stages):
            raise ValueError(f"{name} has {len(stages)} stages: transfer_stages must be 0..{len(stages)}")
        fresh = spec.build()
        for _, paths in stages[transfer_stages:]:
            for path in paths:
                net.get_submodule(path).load_state_dict(fresh.get_submodule(path).state_dict())
    _replace_head(net, head, num_classes)
    return TransferNet(net, stages, head, bn_frozen_eval)


@dataclass(frozen=True)
class Preprocess:
    """What a model wants its input to be: size, channels, normalisation."""

    size: int
    channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    resize: int | None = None  # resize the short side to this, then centre-crop to `size`


def preprocessing(name: str, weights: str) -> Preprocess:
    """ImageNet weights carry their own transforms (torchvision's Weights API); other weights use ours."""
    spec = model_spec(name)
    if weights == "imagenet":
        t = imagenet_weights(name).transforms()
        return Preprocess(t.crop_size[0], 3, tuple(t.mean), tuple(t.std), t.resize_size[0])
    return Preprocess(spec.input_size, spec.in_channels, (0.5,) * spec.in_channels, (0.5,) * spec.in_channels)


def _n_frozen_static(n_stages: int, epoch: int, cfg) -> int:
    return {"linear_probe": n_stages, "full": 0, "freeze_k": cfg.freeze_k}[cfg.strategy]


# Fine-tuning strategies: how many stages (from the input side) are frozen at a given epoch.
STRATEGIES: dict[str, Callable[[int, int, object], int]] = {
    "linear_probe": _n_frozen_static,  # only the new head trains
    "freeze_k": _n_frozen_static,  # Yosinski et al. 2014: the first k transferred stages frozen
    "full": _n_frozen_static,  # every layer fine-tunes
    "gradual": lambda n, epoch, cfg: max(n - epoch, 0),  # ULMFiT: one more stage from the top each epoch
    "lp_ft": lambda n, epoch, cfg: n if epoch < cfg.lp_epochs else 0,  # Kumar et al. 2022
}


def frozen_stages_at(cfg, n_stages: int, epoch: int) -> int:
    return min(STRATEGIES[cfg.strategy](n_stages, epoch, cfg), n_stages)
