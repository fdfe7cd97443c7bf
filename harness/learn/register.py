"""`register_model`: your own network as a model a study can name, checked at once as the registry's models are
(its stages, its head, a forward pass of the declared input)."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import torch
from torch import nn

from harness.learn.models import (
    MODELS,
    REGISTERED,
    ModelSpec,
    _replace_head,
    _without_aux_heads,
    stage_names,
    torchvision_classifiers,
)
from harness.learn.stages import DeclaredStages, StagePaths, as_stage_paths, head_path, stage_problem

MODEL_NAME = re.compile(r"[A-Za-z][\w.-]*")  # a model's name names checkpoint files and variant folders


def register_model(name: str, build: Callable[[], nn.Module], stages: DeclaredStages, input_size: int = 32,
                   in_channels: int = 3, mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                   pretrain_lr: float = 1e-3) -> ModelSpec:
    """Make your own network a model that a study names (`TrialConfig(model=name)`, `--model name`).

    `build()` returns the network with random weights and its own classifier, the last Linear layer (replaced
    for the target's classes). `stages` are what freezes together, from the input side: module paths (a stage
    each), (stage, [module paths]) pairs, or a function of the built net returning either, as timm's
    `group_matcher`. The net takes `in_channels` x `input_size` x `input_size` images, normalised by `mean` and
    `std` (default 0.5 a channel); `pretrain_lr` is Adam's lr when weights=source pretrains it from scratch.

    The net is built, its stages and head found and a dummy batch run through it now: a mistake stops here,
    named. A study file calls this at import (the workers import it too), so registering a name again replaces
    it; a built-in model's name is refused.
    """
    _check_name(name)
    for field, value in (("input_size", input_size), ("in_channels", in_channels)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"model {name}: {field} must be a positive whole number, not {value!r}")
    if not isinstance(pretrain_lr, int | float) or not pretrain_lr > 0:
        raise ValueError(f"model {name}: pretrain_lr must be a positive number, not {pretrain_lr!r}")
    half = (0.5,) * in_channels
    spec = ModelSpec(build=build, stages=_declared_stages(stages), in_channels=in_channels,
                     input_size=input_size, pretrain_lr=pretrain_lr,
                     mean=_per_channel(name, "mean", half if mean is None else mean, in_channels),
                     std=_per_channel(name, "std", half if std is None else std, in_channels))
    if any(v <= 0 for v in spec.std):
        raise ValueError(f"model {name}: std must be positive, not {spec.std}")
    _check_net(name, spec)
    REGISTERED[name] = spec
    stage_names.cache_clear()  # a name registered again may have other stages
    return spec


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not MODEL_NAME.fullmatch(name):
        raise ValueError(f"a model's name is a letter, then letters, digits, '_', '.' or '-': not {name!r}")
    if name in MODELS or name in torchvision_classifiers():
        raise ValueError(f"{name!r} is a built-in model (the registry, or torchvision's); give yours another name")


def _per_channel(name: str, field: str, values: Sequence[float], channels: int) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        raise ValueError(f"model {name}: {field} must be numbers, one a channel, not {values!r}") from None
    if len(values) != channels:
        raise ValueError(f"model {name}: {field} needs one value a channel ({channels}), not {values}")
    return values


def _declared_stages(declared: DeclaredStages) -> Callable[[nn.Module], StagePaths]:
    """`declared` as a ModelSpec's `stages`: a function of the built net, each call a fresh list."""
    if callable(declared):
        return lambda net: as_stage_paths(declared(net))
    fixed = as_stage_paths(declared)
    return lambda net: [(stage, list(paths)) for stage, paths in fixed]


def _check_net(name: str, spec: ModelSpec) -> None:
    """What the harness asks of a model, tried on a fresh one: its stages name modules of it, outside its head,
    and a batch of the declared size comes out as logits of the classes its new head has."""
    net = spec.build()
    if not isinstance(net, nn.Module):
        raise TypeError(f"model {name}: build() must return a torch.nn.Module, not {type(net).__name__}")
    net = _without_aux_heads(net)
    try:
        head = head_path(net)
    except ValueError as error:
        raise ValueError(f"model {name}: {error}; the head is its last Linear layer") from None
    try:
        stages = spec.stages(net)
    except (TypeError, ValueError, AttributeError, KeyError, IndexError) as error:
        raise ValueError(f"model {name}: its stages function fails on the built net: {error}") from None
    problem = stage_problem(net, stages, head)
    if problem:
        raise ValueError(f"model {name}: its stages do not fit the net: {problem}")
    x = torch.zeros(2, spec.in_channels, spec.input_size, spec.input_size)
    try:
        with torch.no_grad():
            net.eval()(x)
    except Exception as error:  # noqa: BLE001 - whatever the user's forward raises, said with the input it got
        raise ValueError(f"model {name}: a batch of shape {tuple(x.shape)} (in_channels={spec.in_channels}, "
                         f"input_size={spec.input_size}) fails in its forward pass ({type(error).__name__}: "
                         f"{error}); declare the channels and size it takes") from None
    _replace_head(net, head, 3)
    where = (f"model {name}: the harness replaces its last Linear layer, {head!r}, to classify the target's "
             "classes (3 here)")
    try:
        with torch.no_grad():
            out = net(x)
    except Exception as error:  # noqa: BLE001 - as above: the head it found is not the one that makes the output
        raise ValueError(f"{where}, and then its forward pass fails ({type(error).__name__}: {error}): define "
                         "the classifier last in __init__") from None
    shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
    if shape != (2, 3):
        raise ValueError(f"{where}, but a batch of 2 then comes out as {shape}, not logits of shape (2, 3): the "
                         "forward pass must return the classifier's output")
