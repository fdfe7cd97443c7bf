"""A network's stages, from input to output: each a name and the module paths it holds, named by hand for the
classic architectures and derived from the structure for any other classifier; and its head."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from torch import nn

StagePaths = list[tuple[str, list[str]]]  # (stage name, module paths), from input to output
# how a user declares a model's stages: module paths (a stage each), (stage, paths) pairs, {stage: paths}, or a
# function of the built net returning any of those (timm's `group_matcher` plays that part for its models)
DeclaredStages = Sequence[str] | Sequence[tuple[str, Sequence[str]]] | Mapping[str, Sequence[str]] | Callable[..., Any]


def _blocks_between_pools(prefix: str, seq: nn.Sequential) -> StagePaths:
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
    return stages


def _each_conv(prefix: str, seq: nn.Sequential) -> StagePaths:
    convs = [i for i, m in enumerate(seq) if isinstance(m, nn.Conv2d)]
    return [(f"conv{n + 1}", [f"{prefix}.{i}"]) for n, i in enumerate(convs)]


def _hidden_linears(prefix: str, seq: nn.Sequential) -> StagePaths:
    """The classifier's Linear layers but the last (the head): fc1, fc2."""
    linears = [i for i, m in enumerate(seq) if isinstance(m, nn.Linear)][:-1]
    return [(f"fc{n + 1}", [f"{prefix}.{i}"]) for n, i in enumerate(linears)]


def resnet_stages(net: nn.Module) -> StagePaths:
    return [("stem", ["conv1", "bn1"])] + [(f"layer{i}", [f"layer{i}"]) for i in range(1, 5)]


def vgg_stages(net: nn.Module) -> StagePaths:
    return _blocks_between_pools("features", net.features) + _hidden_linears("classifier", net.classifier)


def alexnet_stages(net: nn.Module) -> StagePaths:
    return _each_conv("features", net.features) + _hidden_linears("classifier", net.classifier)


def head_path(net: nn.Module) -> str:
    """The classifier layer: the last Linear, or the last (1x1) convolution where there is none (SqueezeNet)."""
    linears = [name for name, m in net.named_modules() if isinstance(m, nn.Linear)]
    convs = [name for name, m in net.named_modules() if isinstance(m, nn.Conv2d)]
    if not linears and not convs:
        raise ValueError(f"{type(net).__name__} has no Linear or Conv2d layer to serve as its head")
    return (linears or convs)[-1]


def _n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def derived_stages(net: nn.Module, min_stages: int = 4) -> StagePaths:
    """Stages of any torchvision classifier, from its structure: its children that hold parameters.

    A child holding the head is opened (its hidden layers become stages); then, while there are fewer than
    `min_stages`, the largest stage that has children is opened, so a network that keeps all its blocks in
    one `features` Sequential (MobileNet, EfficientNet, DenseNet, ViT's encoder) gets one stage per block.
    """
    head = head_path(net)

    def opened(path: str) -> list[str]:
        prefix = f"{path}." if path else ""
        module = net.get_submodule(path)
        return [prefix + n for n, c in module.named_children() if prefix + n != head and _n_params(c)]

    paths = opened("")
    while True:
        holding_head = [p for p in paths if head.startswith(p + ".")]
        openable = [p for p in paths if opened(p)]
        if holding_head:
            target = holding_head[0]
        elif len(paths) < min_stages and openable:
            target = max(openable, key=lambda p: _n_params(net.get_submodule(p)))
        else:
            break
        at = paths.index(target)
        paths[at : at + 1] = opened(target)
    return [(p.replace(".", "_"), [p]) for p in paths]


def as_stage_paths(declared: Any) -> StagePaths:
    """A declared list of stages as `StagePaths`: a module path is a stage of its own, named after it.

    >>> as_stage_paths(["features.0", ("top", ["fc1", "fc2"])])
    [('features_0', ['features.0']), ('top', ['fc1', 'fc2'])]
    """
    items = list(declared.items()) if isinstance(declared, Mapping) else declared
    if isinstance(items, str) or not isinstance(items, Sequence):
        raise TypeError(f"stages must be a list of module names or of (stage, [module names]) pairs, not {declared!r}")
    stages: StagePaths = []
    for item in items:
        if isinstance(item, str):
            stages.append((item.replace(".", "_"), [item]))
        elif isinstance(item, Sequence) and len(item) == 2 and isinstance(item[0], str):
            paths = [item[1]] if isinstance(item[1], str) else list(item[1])
            if not paths or not all(isinstance(p, str) for p in paths):
                raise TypeError(f"stage {item[0]!r} must name one or more modules, not {item[1]!r}")
            stages.append((item[0], paths))
        else:
            raise TypeError(f"a stage is a module name or a (stage, [module names]) pair, not {item!r}")
    return stages


def stage_problem(net: nn.Module, stages: StagePaths, head: str) -> str | None:
    """What is wrong with `stages` of `net`, or None: each module must exist, belong to one stage only and lie
    outside the head (which is replaced), so that every parameter is frozen or trained exactly once."""
    names = [stage for stage, _ in stages]
    if not stages:
        return "it declares no stage"
    if len(set(names)) < len(names):
        return f"stage names must differ: {', '.join(names)}"
    children = ", ".join(name for name, _ in net.named_children()) or "(none)"
    modules = dict(net.named_modules())
    paths = [path for _, held in stages for path in held]
    for path in paths:
        if path not in modules or not path:
            return f"it has no module {path!r}; its top-level modules are: {children}"
    for path in paths:
        if path == head or head.startswith(path + ".") or path.startswith(head + "."):
            return (f"stage module {path!r} is or holds the head {head!r} (the last Linear layer, replaced for the "
                    "target classes): declare the layers below the head only")
        inside = [other for other in paths if other.startswith(path + ".")]
        if paths.count(path) > 1 or inside:
            twice = f"{inside[0]!r} lies inside {path!r}" if inside else f"{path!r} is declared twice"
            return f"module {twice}: a module belongs to one stage"
    return None
