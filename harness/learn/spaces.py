"""Each optimizer's default search space (`SPACES`), as TrialConfig overrides: what a study file's search space
calls. Needs neither torch nor Optuna (a space only calls `trial.suggest_*`), so reading a study is cheap.

Choi et al. 2019: a comparison that does not tune epsilon of the adaptive methods is biased, so every
default space tunes it; each optimizer's lr range is wide around its own usual values.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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


def _rmsprop_space(trial: optuna.Trial) -> dict[str, Any]:
    space = _adaptive_space(trial, beta1=False)
    space["optimizer_params"] |= {
        "alpha": trial.suggest_float("alpha", 0.8, 0.999),
        "momentum": trial.suggest_float("momentum", 0.0, 0.99),
    }
    return space


SPACES: dict[str, tuple[Callable[[optuna.Trial], dict[str, Any]], tuple[float, float]]] = {
    # optimizer -> (its default space, the lr range it searches on a log scale)
    "sgd": (_sgd_space, SGD_LR),
    "adam": (_adaptive_space, ADAPTIVE_LR),
    "adamw": (lambda t: _adaptive_space(t, weight_decay=DECOUPLED_WD), ADAPTIVE_LR),
    "nadam": (_adaptive_space, ADAPTIVE_LR),
    "radam": (_adaptive_space, ADAPTIVE_LR),
    "rmsprop": (_rmsprop_space, ADAPTIVE_LR),
    # Adagrad's accumulated squares shrink the step over time: SGD-sized lrs
    "adagrad": (lambda t: _adaptive_space(t, beta1=False, lr=SGD_LR), SGD_LR),
}


def _space(optimizer: str) -> tuple[Callable, tuple[float, float]]:
    if optimizer not in SPACES:
        raise ValueError(f"unknown optimizer {optimizer!r}; choices: {', '.join(SPACES)}")
    return SPACES[optimizer]


def default_space(trial: optuna.Trial, optimizer: str) -> dict[str, Any]:
    """The registry's search space for `optimizer`, as TrialConfig overrides."""
    return _space(optimizer)[0](trial)


def lr_space(trial: optuna.Trial, optimizer: str) -> dict[str, Any]:
    """Only the learning rate, over the same range as `optimizer`'s default space (a narrow search)."""
    return {"lr": trial.suggest_float("lr", *_space(optimizer)[1], log=True)}
