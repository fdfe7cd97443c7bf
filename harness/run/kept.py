"""Candidate weights kept from the confirmation runs that trained them, so publishing logs each arm's chosen
model without training it again: per (arm, search trial), the weights of the seed a logged model uses (best
validation accuracy, the lowest seed on ties). A file per candidate on this machine's disk; a model whose
weights were trained on another machine is retrained instead (deterministic on a CPU)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from filelock import FileLock


def _paths(folder: Path, arm: str, trial: int) -> tuple[Path, Path]:
    base = folder / arm / str(trial)
    return base.with_suffix(".pt"), base.with_suffix(".json")


def offer(folder: Path, arm: str, trial: int, seed: int, value: float, state: dict) -> None:
    """Keep `state` if it beats the kept one for (arm, trial): workers offer side by side, so under a lock."""
    weights, meta = _paths(folder, arm, trial)
    weights.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(weights.with_suffix(".lock")):
        if meta.is_file():
            kept = json.loads(meta.read_text())
            if (kept["value"], -kept["seed"]) >= (value, -seed):
                return
        tmp = weights.with_suffix(f".{os.getpid()}.tmp")
        torch.save({k: v.detach().cpu() for k, v in state.items()}, tmp)
        os.replace(tmp, weights)
        meta.write_text(json.dumps({"seed": seed, "value": value}))


def take(folder: Path, arm: str, trial: int, seed: int) -> dict | None:
    """The kept weights of (arm, trial) if they are seed `seed`'s, else None."""
    weights, meta = _paths(folder, arm, trial)
    try:
        if json.loads(meta.read_text())["seed"] != seed:
            return None
        return torch.load(weights, map_location="cpu", weights_only=True)
    except (OSError, ValueError, KeyError, RuntimeError):
        return None
