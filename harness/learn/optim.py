"""The `OPTIMIZERS` registry: how each optimizer is built and searched, and the parameter groups it gets.

Choi et al. 2019: a comparison that does not tune epsilon of the adaptive methods is biased, so every
default space tunes it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from harness.learn.models import TransferNet

if TYPE_CHECKING:  # a search space only calls trial.suggest_*: the training code needs no Optuna
    import optuna

SGD_LR = (1e-4, 1.0)  # four decades around SGD's usual 0.01-0.1


def _lr_wd(trial: optuna.Trial, lr: tuple[float, float] = SGD_LR,
           weight_decay: tuple[float, float] = (1e-6, 1e-2)) -> dict[str, Any]:
    return {
        "lr": trial.suggest_float("lr", *lr, log=True),
        "weight_decay": trial.suggest_float("weight_decay", *weight_decay, log=True),
    }


def _sgd_space(trial: optuna.Trial) -> dict[str, Any]:
    return _lr_wd(trial) | {
        "optimizer_params": {
            "momentum": trial.suggest_float("momentum", 0.0, 0.99),
            "nesterov": trial.suggest_categorical("nesterov", [False, True]),
        }
    }


ADAPTIVE_LR = (1e-5, 1e-1)  # four decades around Adam's usual 1e-3; fine-tuning often wants 1e-5..1e-4
DECOUPLED_WD = (1e-4, 1.0)  # AdamW shrinks weights by lr * weight_decay per step: L2-sized values do nothing


def _adaptive_space(trial: optuna.Trial, beta1: bool = True, lr: tuple[float, float] = ADAPTIVE_LR,
                    weight_decay: tuple[float, float] = (1e-6, 1e-2)) -> dict[str, Any]:
    # each optimizer's lr range is wide around its own usual values: a range that cuts off one optimizer's
    # optimum biases the comparison against it (Choi et al. 2019)
    space = _lr_wd(trial, lr, weight_decay)
    params = {"eps": trial.suggest_float("eps", 1e-10, 1e-1, log=True)}
    if beta1:
        params["beta1"] = trial.suggest_float("beta1", 0.5, 0.99)
    return space | {"optimizer_params": params}


def _sgd_kwargs(p: dict[str, Any]) -> dict[str, Any]:
    momentum = p.get("momentum", 0.0)
    return {"momentum": momentum, "nesterov": bool(p.get("nesterov", False)) and momentum > 0}


def _adam_kwargs(p: dict[str, Any]) -> dict[str, Any]:
    return {"betas": (p.get("beta1", 0.9), p.get("beta2", 0.999)), "eps": p.get("eps", 1e-8)}


def _rmsprop_kwargs(p: dict[str, Any]) -> dict[str, Any]:
    return {"alpha": p.get("alpha", 0.99), "eps": p.get("eps", 1e-8), "momentum": p.get("momentum", 0.0)}


def _rmsprop_space(trial: optuna.Trial) -> dict[str, Any]:
    space = _adaptive_space(trial, beta1=False)
    space["optimizer_params"] |= {
        "alpha": trial.suggest_float("alpha", 0.8, 0.999),
        "momentum": trial.suggest_float("momentum", 0.0, 0.99),
    }
    return space


@dataclass(frozen=True)
class OptimizerSpec:
    cls: type[torch.optim.Optimizer]
    kwargs: Callable[[dict[str, Any]], dict[str, Any]]  # optimizer_params -> constructor keywords
    space: Callable[[optuna.Trial], dict[str, Any]]  # default search space -> TrialConfig overrides
    params: tuple[str, ...]  # the optimizer_params it takes; any other is a mistake, not silently ignored
    lr: tuple[float, float] = SGD_LR  # the lr range its default space searches (log scale)


ADAM_PARAMS = ("beta1", "beta2", "eps")

OPTIMIZERS: dict[str, OptimizerSpec] = {
    "sgd": OptimizerSpec(torch.optim.SGD, _sgd_kwargs, _sgd_space, ("momentum", "nesterov")),
    "adam": OptimizerSpec(torch.optim.Adam, _adam_kwargs, _adaptive_space, ADAM_PARAMS, ADAPTIVE_LR),
    "adamw": OptimizerSpec(torch.optim.AdamW, _adam_kwargs,
                           lambda t: _adaptive_space(t, weight_decay=DECOUPLED_WD), ADAM_PARAMS, ADAPTIVE_LR),
    "nadam": OptimizerSpec(torch.optim.NAdam, _adam_kwargs, _adaptive_space, ADAM_PARAMS, ADAPTIVE_LR),
    "radam": OptimizerSpec(torch.optim.RAdam, _adam_kwargs, _adaptive_space, ADAM_PARAMS, ADAPTIVE_LR),
    "rmsprop": OptimizerSpec(torch.optim.RMSprop, _rmsprop_kwargs, _rmsprop_space, ("alpha", "eps", "momentum"),
                             ADAPTIVE_LR),
    "adagrad": OptimizerSpec(  # its accumulated squares shrink the step over time: SGD-sized lrs
        torch.optim.Adagrad, lambda p: {"eps": p.get("eps", 1e-10)},
        lambda t: _adaptive_space(t, beta1=False, lr=SGD_LR), ("eps",), SGD_LR,
    ),
}


def optimizer_spec(name: str) -> OptimizerSpec:
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; choices: {', '.join(OPTIMIZERS)}")
    return OPTIMIZERS[name]


def default_space(trial: optuna.Trial, optimizer: str) -> dict[str, Any]:
    """The registry's search space for `optimizer`, as TrialConfig overrides."""
    return optimizer_spec(optimizer).space(trial)


def lr_space(trial: optuna.Trial, optimizer: str) -> dict[str, Any]:
    """Only the learning rate, over the same range as `optimizer`'s default space (a narrow search)."""
    return {"lr": trial.suggest_float("lr", *optimizer_spec(optimizer).lr, log=True)}


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


def build_optimizer(cfg, model: TransferNet) -> torch.optim.Optimizer:
    """Freeze first, then build: the optimizer holds no parameter of a stage frozen when it is built."""
    spec = optimizer_spec(cfg.optimizer)
    unknown = sorted(set(cfg.optimizer_params) - set(spec.params))
    if unknown:
        raise ValueError(f"{cfg.optimizer} takes optimizer_params {', '.join(spec.params)}; not {', '.join(unknown)}")
    groups = param_groups(model, cfg.lr, cfg.weight_decay, cfg.stage_lr_decay)
    return spec.cls(groups, lr=cfg.lr, **spec.kwargs(dict(cfg.optimizer_params)))
