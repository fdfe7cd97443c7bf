"""A network's stages, from input to output: each a name and the module paths it holds, named by hand for the
classic architectures and derived from the structure for any other classifier; and its head."""

from __future__ import annotations

from torch import nn

StagePaths = list[tuple[str, list[str]]]  # (stage name, module paths), from input to output


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
