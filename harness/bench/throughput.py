"""The loops the harness is measured against (`python -m harness.bench`): the training loop a user writes by
hand, and images per second through `fit` beside a bare loop on the same data. Plain PyTorch."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from harness.learn.data import Split, Task
from harness.learn.models import build_model, frozen_stages_at, model_spec
from harness.learn.optim import build_optimizer
from harness.learn.train import autocast, device, fit, seed_everything
from harness.spec import TrialConfig


def bare_run(cfg: TrialConfig, task: Task, weights: str, on_epoch: Callable[[int, dict], None] | None = None) -> float:
    """The loop a user writes by hand: same model, optimizer, schedule and data order as the harness; no cache."""
    seed_everything(cfg.seed)
    model = build_model(cfg.model, len(task.classes), weights, cfg.bn_frozen_eval).to(device())
    model.freeze(frozen_stages_at(cfg, len(model.stage_names), 0))
    optimizer = build_optimizer(cfg, model)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.epochs)
    generator, best = torch.Generator().manual_seed(cfg.seed), 0.0
    for epoch in range(cfg.epochs):
        model.train()
        for x, y in task.train.batches(cfg.batch_size, torch.randperm(len(task.train), generator=generator)):
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        scheduler.step()
        model.eval()
        with torch.no_grad():
            val_acc = (torch.cat([model(x) for x, _ in task.val.batches(256)]).argmax(1) == task.val.y).float().mean()
        best = max(best, val_acc.item())
        if on_epoch is not None:
            on_epoch(epoch, {"train_loss": loss.item(), "val_acc": val_acc.item()})
    return best


def images_per_second(model_name: str, size: int, n: int, batch_size: int = 64) -> dict:
    """Training images per second through `fit` (full fine-tuning) and through a bare loop on the same data.

    On a GPU the bare loop is mixed precision and channels_last, the fastest a hand-written loop usually gets.
    """
    spec, where = model_spec(model_name), device()
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(n, spec.in_channels, size, size, generator=generator).to(where)
    if where.type == "cuda":
        x = x.contiguous(memory_format=torch.channels_last)
    y = (torch.arange(n) % 10).to(where)
    train, val = Split(x, y, np.arange(n)), Split(x[:batch_size], y[:batch_size], np.arange(batch_size))
    task = Task("synthetic", [str(c) for c in range(10)], train, val, Split(x[:1], y[:1], np.arange(1)), None, False)
    cfg = TrialConfig(model=model_name, weights="none", strategy="full", epochs=3, batch_size=batch_size,
                      optimizer="sgd", lr=1e-3, lr_schedule="constant")
    seed_everything(0)
    history = fit(build_model(model_name, 10).to(where), task, cfg, features=None).history
    harness = n / min(h["epoch_seconds"] for h in history[1:])  # the first epoch warms up kernels and caches
    model = build_model(model_name, 10).to(where)
    if where.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    times = []
    for _ in range(3):
        start = time.perf_counter()
        model.train()
        for xb, yb in task.train.batches(batch_size, torch.randperm(n, generator=generator)):
            with autocast(xb):
                loss = F.cross_entropy(model(xb).float(), yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.no_grad(), autocast(x):
            model(task.val.x).argmax(1).sum().item()  # the same evaluation work as fit, and a sync
        times.append(time.perf_counter() - start)
    bare = n / min(times[1:])
    return {"model": model_name, "size": size, "harness": harness, "bare": bare, "harness_over_bare": harness / bare}
