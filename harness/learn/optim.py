"""The `OPTIMIZERS` registry: how each optimizer is built, the parameters it takes, and the parameter groups
it gets. How each is searched by default is `harness.learn.spaces` (no torch needed to read a study file).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from harness import internals
from harness.learn.models import TransferNet, frozen_stages_at
from harness.learn.spaces import default_space, lr_space  # noqa: F401 - where study files used to find them
from harness.spec import TrialConfig


def _sgd_kwargs(p: dict[str, Any]) -> dict[str, Any]:
    momentum = p.get("momentum", 0.0)
    return {"momentum": momentum, "nesterov": bool(p.get("nesterov", False)) and momentum > 0}


def _adam_kwargs(p: dict[str, Any]) -> dict[str, Any]:
    return {"betas": (p.get("beta1", 0.9), p.get("beta2", 0.999)), "eps": p.get("eps", 1e-8)}


def _rmsprop_kwargs(p: dict[str, Any]) -> dict[str, Any]:
    return {"alpha": p.get("alpha", 0.99), "eps": p.get("eps", 1e-8), "momentum": p.get("momentum", 0.0)}


@dataclass(frozen=True)
class OptimizerSpec:
    cls: type[torch.optim.Optimizer]
    kwargs: Callable[[dict[str, Any]], dict[str, Any]]  # optimizer_params -> constructor keywords
    params: tuple[str, ...]  # the optimizer_params it takes; any other is a mistake, not silently ignored


ADAM_PARAMS = ("beta1", "beta2", "eps")

OPTIMIZERS: dict[str, OptimizerSpec] = {  # their default search spaces: `harness.learn.spaces.SPACES`
    "sgd": OptimizerSpec(torch.optim.SGD, _sgd_kwargs, ("momentum", "nesterov")),
    "adam": OptimizerSpec(torch.optim.Adam, _adam_kwargs, ADAM_PARAMS),
    "adamw": OptimizerSpec(torch.optim.AdamW, _adam_kwargs, ADAM_PARAMS),
    "nadam": OptimizerSpec(torch.optim.NAdam, _adam_kwargs, ADAM_PARAMS),
    "radam": OptimizerSpec(torch.optim.RAdam, _adam_kwargs, ADAM_PARAMS),
    "rmsprop": OptimizerSpec(torch.optim.RMSprop, _rmsprop_kwargs, ("alpha", "eps", "momentum")),
    "adagrad": OptimizerSpec(torch.optim.Adagrad, lambda p: {"eps": p.get("eps", 1e-10)}, ("eps",)),
}


def optimizer_spec(name: str) -> OptimizerSpec:
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; choices: {', '.join(OPTIMIZERS)}")
    return OPTIMIZERS[name]


def _no_decay(param: torch.nn.Parameter) -> bool:
    return param.ndim <= 1  # biases and normalisation weights/biases: decay only pulls them to zero


def param_groups(model: TransferNet, lr: float, weight_decay: float, stage_lr_decay: float = 1.0) -> list[dict]:
    """Groups over the parameters that train now or will (frozen stages stay out).

    Discriminative learning rates (Howard & Ruder 2018): the head gets `lr`, the stage below it
    `lr * stage_lr_decay`, the next `lr * stage_lr_decay**2`, and so on down to the input.
    """
    groups = []
    for depth, (stage, params) in enumerate(reversed(model.parameter_groups())):
        if stage in model.frozen:
            continue
        stage_lr = lr * stage_lr_decay**depth
        decay = [p for p in params if not _no_decay(p)]
        no_decay = [p for p in params if _no_decay(p)]
        for chosen, wd in ((decay, weight_decay), (no_decay, 0.0)):
            if chosen:
                groups.append({"params": chosen, "lr": stage_lr, "weight_decay": wd, "stage": stage})
    return groups


def _merged(groups: list[dict]) -> list[dict]:
    """Stages that share their lr and weight decay as one group (`stage` names them all, head first): one
    optimizer step per group is a kernel call and its Python, and a LeNet-5 without discriminative lrs had 10
    groups, a sixth of its optimizer's time (2 now). Each parameter's update is the same, bit for bit."""
    merged: dict[tuple[float, float], dict] = {}
    for group in groups:
        same = merged.setdefault((group["lr"], group["weight_decay"]), {**group, "params": []})
        same["params"] = same["params"] + group["params"]
        if same["stage"] != group["stage"]:
            same["stage"] = f"{same['stage']}+{group['stage']}"
    return list(merged.values())


def params_problem(optimizer: str, params) -> str | None:
    """What is wrong with `params` for `optimizer` (names it does not take), or None: the one rule, which the
    dry run applies to every point of a search space and `build_optimizer` to what it builds."""
    known = optimizer_spec(optimizer).params
    unknown = sorted(set(params) - set(known))
    return f"{optimizer} takes optimizer_params {', '.join(known)}; not {', '.join(unknown)}" if unknown else None


def build_optimizer(cfg: TrialConfig, model: TransferNet) -> torch.optim.Optimizer:
    """Freeze first, then build: the optimizer holds no parameter of a stage frozen when it is built."""
    spec = optimizer_spec(cfg.optimizer)
    problem = params_problem(cfg.optimizer, cfg.optimizer_params)
    if problem:
        raise ValueError(problem)
    groups = param_groups(model, cfg.lr, cfg.weight_decay, cfg.stage_lr_decay)
    n_stages = len(model.stage_names)
    if len({frozen_stages_at(cfg, n_stages, e) for e in range(cfg.epochs)}) == 1:
        groups = _merged(groups)  # not where stages thaw later: fused SGD cannot step half-made momentum buffers
    return spec.cls(groups, lr=cfg.lr, **spec.kwargs(dict(cfg.optimizer_params)), **_fused(spec.cls, groups))


def _fused(cls: type[torch.optim.Optimizer], groups: list[dict]) -> dict[str, bool]:
    """`fused=True` where the optimizer has a fused kernel for these parameters (SGD, Adam, AdamW and Adagrad, on
    a CPU or a GPU, floating point): one kernel a step instead of a few per tensor, the same update up to float
    rounding (3e-6 after 30 Adam steps). A small model's step is mostly that per-tensor overhead (LeNet-5: 7% of
    a training step, one CPU thread)."""
    devices = internals.fused_kernel_devices()  # private in torch: a rename costs speed only
    if devices is None:
        return {}

    params = [p for group in groups for p in group["params"]]
    usable = "fused" in inspect.signature(cls).parameters and params and all(
        p.device.type in devices and torch.is_floating_point(p) for p in params)
    return {"fused": True} if usable else {}
