"""Source pretraining (`weights=source`): train a model on the source classes once, cache it keyed by its config.

The pretraining run is logged to MLflow with its checkpoint as an artifact; later runs reuse the file.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import mlflow
import torch

from harness.data import make_task
from harness.models import build_model, model_spec, preprocessing
from harness.spec import TrialConfig, digest
from harness.tracking import start_child_run
from harness.train import device, fit, seed_everything

# The recipe is fixed, not searched: every arm of a study must start from the same checkpoint. The lr is the
# model's own (ModelSpec.pretrain_lr) and is logged with the rest on the pretraining run.
PRETRAIN_RECIPE = {
    "arm": "pretrain", "weights": "none", "strategy": "full", "optimizer": "adam",
    "weight_decay": 1e-4, "optimizer_params": {}, "lr_schedule": "cosine", "augment": False, "partition_seed": 0,
    "shots": None, "freeze_k": 0, "lp_epochs": 0, "stage_lr_decay": 1.0, "transfer_stages": None,
    "bn_frozen_eval": True,
}


@dataclass(frozen=True)
class Checkpoint:
    path: Path
    key: str  # <model>-<dataset>-<hash of the pretraining config>
    run_id: str  # the MLflow run that produced it


def pretrain_config(cfg: TrialConfig) -> TrialConfig:
    """The source task's config: the same data split, the source classes as the target, the fixed recipe."""
    recipe = {**PRETRAIN_RECIPE, "lr": model_spec(cfg.model).pretrain_lr, "seed": cfg.pretrain_seed}
    return dataclasses.replace(cfg, study="", target_classes=cfg.source_classes, epochs=cfg.pretrain_epochs, **recipe)


def checkpoint_key(cfg: TrialConfig) -> str:
    flat = pretrain_config(cfg).flat()
    flat.pop("data_root")  # where the files are does not change what they are
    short = digest(flat, length=10)
    dataset = re.sub(r"[^\w.-]+", "_", cfg.dataset)  # folder:/a/b -> folder_a_b: the key names files
    return f"{cfg.model}-{dataset}-{short}"


def find_checkpoint(cfg: TrialConfig, folder: Path) -> Checkpoint | None:
    key = checkpoint_key(cfg)
    path, meta = folder / f"{key}.pt", folder / f"{key}.json"
    if path.is_file() and meta.is_file():
        return Checkpoint(path, key, json.loads(meta.read_text())["run_id"])
    return None


def source_checkpoint(cfg: TrialConfig, folder: Path) -> Checkpoint:
    """The cached checkpoint for `cfg`'s source task, pretraining it (as a nested MLflow run) if missing."""
    found = find_checkpoint(cfg, folder)
    if found is not None:
        return found
    key, pcfg = checkpoint_key(cfg), pretrain_config(cfg)
    folder.mkdir(parents=True, exist_ok=True)
    task = make_task(pcfg, preprocessing(cfg.model, "none"), role="target", device=device())
    seed_everything(pcfg.seed)
    model = build_model(cfg.model, len(task.classes), "none").to(device())
    with start_child_run(f"pretrain {key}", {"phase": "pretrain", "checkpoint": key}) as run:
        mlflow.log_params(pcfg.flat())
        result = fit(model, task, pcfg, on_epoch=lambda epoch, m: mlflow.log_metrics(m, step=epoch))
        model.load_state_dict(result.best_state)
        mlflow.log_metrics({"best_val_acc": result.best_val_acc, "best_epoch": result.best_epoch})
        path, tmp = folder / f"{key}.pt", folder / f"{key}.{os.getpid()}.pt.tmp"  # workers never share a temp file
        torch.save(model.net.state_dict(), tmp)
        os.replace(tmp, path)  # atomic: an interrupted save never leaves a half-written checkpoint
        mlflow.log_artifact(str(path), artifact_path="checkpoint")
        (folder / f"{key}.json").write_text(json.dumps({"run_id": run.info.run_id, "config": pcfg.flat()}, default=str))
    return Checkpoint(path, key, run.info.run_id)
