"""Training and evaluation in plain PyTorch: `fit` one configuration, `evaluate` a split. No Optuna, no MLflow."""

from __future__ import annotations

import contextlib
import functools
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from harness.learn.data import Split, Task, augment
from harness.learn.features import CACHE, CachedRun, FeatureCache, cached_run
from harness.learn.models import TransferNet, frozen_stages_at
from harness.learn.optim import build_optimizer
from harness.spec import TrialConfig


class Diverged(RuntimeError):
    """The training loss became NaN or infinite: the run stops at once."""


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@functools.cache
def _gpu_has_bf16() -> bool:
    return torch.cuda.is_bf16_supported()  # asked once: the answer does not change, and batches are many


def autocast(x: torch.Tensor) -> contextlib.AbstractContextManager:
    """bf16 mixed precision on a GPU that has it; on the CPU nothing changes (fp32, bit for bit as before)."""
    if x.is_cuda and _gpu_has_bf16():
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@dataclass
class Evaluation:
    loss: float
    acc: float
    predictions: np.ndarray


@torch.no_grad()
def evaluate(model: torch.nn.Module, split: Split, batch_size: int = 256) -> Evaluation:  # VGG at 224 px fits
    model.eval()
    logits = torch.cat([_forward(model, x).float() for x, _ in split.batches(batch_size)])
    predictions = logits.argmax(1)
    return Evaluation(
        loss=F.cross_entropy(logits, split.y).item(),
        acc=(predictions == split.y).float().mean().item(),
        predictions=predictions.cpu().numpy(),
    )


@dataclass
class FitResult:
    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = -1
    best_val_acc: float = -math.inf
    best_state: dict[str, torch.Tensor] | None = None  # weights at the best validation epoch


EpochCallback = Callable[[int, dict[str, float]], None]

LR_SCHEDULES: dict[str, Callable[[torch.optim.Optimizer, int], torch.optim.lr_scheduler.LRScheduler | None]] = {
    "cosine": lambda optimizer, epochs: torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs),
    "constant": lambda optimizer, epochs: None,  # no scheduler: the lr stays as built
}


def _forward(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with autocast(x):
        return model(x)


def _snapshot(model: torch.nn.Module, previous: dict[str, torch.Tensor] | None) -> dict[str, torch.Tensor]:
    """A copy of the model's state; tensors equal to their copy in `previous` (a frozen backbone) reuse it.

    Compared by value: a tensor's `_version` misses in-place updates made inside a kernel (BatchNorm's running
    statistics, a fused optimizer's step), which once left a best state with the first epoch's statistics.
    """
    state = {}
    for name, tensor in model.state_dict().items():
        if previous is not None and torch.equal(previous[name], tensor):
            state[name] = previous[name]
        else:
            state[name] = tensor.detach().clone()
    return state


def fit(model: TransferNet, task: Task, cfg: TrialConfig, on_epoch: EpochCallback | None = None,
        features: FeatureCache | None = CACHE) -> FitResult:
    """Train `model` on `task.train` for `cfg.epochs`, following `cfg.strategy`; select by validation accuracy.

    `on_epoch(epoch, metrics)` is called after every epoch; it may raise to stop the run (pruning).
    In an epoch whose frozen stages are deterministic (no augmentation), their output comes from `features`
    (computed once per split and weights, see harness.learn.features); None computes it every batch. Either way
    the result is the same and `best_state` is the whole model's.
    Raises `Diverged` when the training loss is not finite.
    """
    seed_everything(cfg.seed)
    if next(model.parameters()).is_cuda or model.cpu_channels_last:  # on a CPU, as the model's spec measured
        model.to(memory_format=torch.channels_last)
    generator = torch.Generator().manual_seed(cfg.seed)
    n_stages = len(model.stage_names)
    # stages frozen at every epoch never enter the optimizer; gradual/lp_ft stages join it frozen, then thaw
    model.freeze(min(frozen_stages_at(cfg, n_stages, e) for e in range(cfg.epochs)))
    optimizer = build_optimizer(cfg, model)
    scheduler = LR_SCHEDULES[cfg.lr_schedule](optimizer, cfg.epochs)
    result = FitResult()
    n = len(task.train)
    runs: dict[int, CachedRun | None] = {}  # per number of frozen stages: the frozen weights do not change
    for epoch in range(cfg.epochs):
        start = time.perf_counter()
        k = frozen_stages_at(cfg, n_stages, epoch)
        model.freeze(k)
        model.train()
        if k not in runs:
            usable = features is not None and k > 0 and not cfg.augment
            runs[k] = cached_run(model, task.train, task.val, features) if usable else None
        run = runs[k]
        forward, train, val_split = (run.forward, run.train, run.val) if run else (model, task.train, task.val)
        lr = optimizer.param_groups[0]["lr"]  # the head's group: discriminative lrs scale down from it
        total_loss = torch.zeros((), device=task.train.y.device)
        correct = torch.zeros((), device=task.train.y.device)
        for x, y in train.batches(cfg.batch_size, torch.randperm(n, generator=generator)):
            if len(y) == 1:  # BatchNorm cannot train on one image (1x1 maps at the top of a ResNet): skip it
                continue
            if cfg.augment:
                x = augment(x, task.hflip, generator)
            logits = _forward(forward, x).float()  # the loss in fp32 under mixed precision
            loss = F.cross_entropy(logits, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total_loss += loss.detach() * len(y)
            correct += (logits.argmax(1) == y).sum()
        train_loss = total_loss.item() / n  # one host sync per epoch, not per batch
        if not math.isfinite(train_loss):
            raise Diverged(f"training loss became {train_loss} in epoch {epoch}")
        if scheduler is not None:
            scheduler.step()
        val = evaluate(forward, val_split)
        metrics = {
            "train_loss": train_loss,
            "train_acc": correct.item() / n,
            "val_loss": val.loss,
            "val_acc": val.acc,
            "lr": lr,
            "frozen_stages": float(len(model.frozen)),
            "epoch_seconds": time.perf_counter() - start,
        }
        result.history.append(metrics)
        if val.acc > result.best_val_acc:
            result.best_epoch, result.best_val_acc = epoch, val.acc
            result.best_state = _snapshot(model, result.best_state)
        if on_epoch is not None:
            on_epoch(epoch, metrics)
    return result
