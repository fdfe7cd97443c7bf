"""Source pretraining (`weights=source`): train a model on the source task once, cache it keyed by its config.

The source task is `source_classes` of `source_dataset` (default: the target's dataset), preprocessed for the
model's input like the target, so a digits-pretrained LeNet-5 can fine-tune on a user's colour photos. The
pretraining is recorded through a `Record` the caller passes (`harness.run.checkpoints` logs it as an MLflow
run); later runs reuse the file, and a cached file that no longer reads (truncated, overwritten) is pretrained
again. Plain PyTorch: nothing here imports Optuna or MLflow.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch

from harness.learn.data import make_task
from harness.learn.models import REGISTERED, Preprocess, build_model, model_spec, preprocessing
from harness.learn.train import device, fit, seed_everything
from harness.learn.weights import read_state_dict
from harness.spec import TrialConfig, digest

SLOW_EPOCH_SECONDS = 2.0  # pretraining epochs at least this long print a progress line each

# The recipe is fixed, not searched: every arm of a study must start from the same checkpoint. The lr is the
# model's own (ModelSpec.pretrain_lr) and is logged with the rest on the pretraining run.
PRETRAIN_RECIPE = {
    "arm": "pretrain", "weights": "none", "strategy": "full", "optimizer": "adam",
    "weight_decay": 1e-4, "optimizer_params": {}, "lr_schedule": "cosine", "augment": False, "partition_seed": 0,
    "shots": None, "freeze_k": 0, "lp_epochs": 0, "stage_lr_decay": 1.0, "transfer_stages": None,
    "bn_frozen_eval": True,
}


# what a fine-tuning config may set without changing its source checkpoint: the recipe replaces them all
FINE_TUNING_ONLY = frozenset({*PRETRAIN_RECIPE, "lr", "seed", "epochs", "target_classes", "study", "arm"})


@dataclass(frozen=True)
class Checkpoint:
    path: Path
    key: str  # <model>-<dataset>-<hash of the pretraining config>
    run_id: str  # the MLflow run that produced it


def pretrain_config(cfg: TrialConfig) -> TrialConfig:
    """The source task's config: its dataset and classes as the target, the same split settings, the fixed
    recipe, seeded by `pretrain_seed`. `source_dataset` is resolved, so naming the target's dataset as the
    source explicitly gives the same checkpoint as leaving it None."""
    recipe = {**PRETRAIN_RECIPE, "lr": model_spec(cfg.model).pretrain_lr, "seed": cfg.pretrain_seed}
    return dataclasses.replace(cfg, study="", dataset=cfg.source_dataset or cfg.dataset, source_dataset=None,
                               target_classes=cfg.source_classes, epochs=cfg.pretrain_epochs, **recipe)


def source_preprocessing(cfg: TrialConfig) -> Preprocess:
    """The input the source model is trained on: the model's own, as the target fine-tunes it (weights=source
    uses the same preprocessing), so grey digits feed an RGB model as 3 channels and colour images a LeNet as 1."""
    return preprocessing(cfg.model, "none")


def checkpoint_key(cfg: TrialConfig) -> str:
    pcfg = pretrain_config(cfg)
    flat = pcfg.flat()
    flat.pop("data_root")  # where the files are does not change what they are
    flat.pop("colour")  # the source trains on the model's own channels: a target's colour changes nothing here
    flat["preprocess"] = dataclasses.asdict(source_preprocessing(cfg))  # the input the weights were trained on
    del flat["preprocess"]["widened_from"]  # always None: the source trains on the model's own channels
    if cfg.model in REGISTERED:  # a network registered under a name it may keep while its layers change
        flat["architecture"] = digest({"net": repr(model_spec(cfg.model).build())})
    short = digest(flat, length=10)
    dataset = re.sub(r"[^\w.-]+", "_", pcfg.dataset)  # folder:/a/b -> folder_a_b: the key names files
    return f"{cfg.model}-{dataset}-{short}"


_readable: set[tuple[str, int, int]] = set()  # (path, size, mtime) of checkpoints already read in this process


def find_checkpoint(cfg: TrialConfig, folder: Path) -> Checkpoint | None:
    """The cached checkpoint, or None when it is missing or unreadable (then it is pretrained again)."""
    key = checkpoint_key(cfg)
    path, meta = folder / f"{key}.pt", folder / f"{key}.json"
    if not (path.is_file() and meta.is_file()):
        return None
    try:
        run_id = json.loads(meta.read_text())["run_id"]
        stat = path.stat()
        if (str(path), stat.st_size, stat.st_mtime_ns) not in _readable:
            read_state_dict(path)
            _readable.add((str(path), stat.st_size, stat.st_mtime_ns))
    except (ValueError, KeyError, TypeError, OSError) as error:  # JSONDecodeError is a ValueError
        print(f"cached source checkpoint {key} is unreadable ({error}); pretraining it again", file=sys.stderr,
              flush=True)
        return None
    return Checkpoint(path, key, run_id)


class Record(Protocol):
    """Where one pretraining is recorded: an id for the checkpoint's metadata, per-epoch metrics, the file."""

    run_id: str

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None: ...

    def log_checkpoint(self, path: Path) -> None: ...


class _Unrecorded:
    run_id = ""

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        pass

    def log_checkpoint(self, path: Path) -> None:
        pass


@contextlib.contextmanager
def unrecorded(key: str, pcfg: TrialConfig) -> Iterator[Record]:
    yield _Unrecorded()


Recorder = Callable[[str, TrialConfig], contextlib.AbstractContextManager[Record]]


def write_meta(folder: Path, key: str, run_id: str, pcfg: TrialConfig) -> None:
    """The checkpoint's metadata, the one way it is written: which run made it, from which pretraining config."""
    (folder / f"{key}.json").write_text(json.dumps({"run_id": run_id, "config": pcfg.flat()}, default=str))


def source_checkpoint(cfg: TrialConfig, folder: Path, record: Recorder = unrecorded) -> Checkpoint:
    """The cached checkpoint for `cfg`'s source task, pretraining it (recorded by `record`) if missing."""
    found = find_checkpoint(cfg, folder)
    if found is not None:
        return found
    key, pcfg = checkpoint_key(cfg), pretrain_config(cfg)
    folder.mkdir(parents=True, exist_ok=True)
    task = make_task(pcfg, source_preprocessing(cfg), role="target", device=device())
    print(f"pretraining the source model: {cfg.model} on {pcfg.dataset} classes {', '.join(task.classes)}, "
          f"{pcfg.epochs} epochs, seed {pcfg.seed} (once; cached as {folder / key}.pt)", file=sys.stderr, flush=True)
    seed_everything(pcfg.seed)
    model = build_model(cfg.model, len(task.classes), "none").to(device())
    start = time.perf_counter()
    with record(key, pcfg) as rec:
        def on_epoch(epoch: int, metrics: dict[str, float]) -> None:
            rec.log_metrics(metrics, step=epoch)
            if metrics["epoch_seconds"] >= SLOW_EPOCH_SECONDS:  # a line per epoch only where one is worth waiting for
                print(f"  pretrain epoch {epoch + 1}/{pcfg.epochs}: val acc {metrics['val_acc']:.1%} "
                      f"({metrics['epoch_seconds']:.1f} s)", file=sys.stderr, flush=True)

        result = fit(model, task, pcfg, on_epoch=on_epoch)
        print(f"  pretrained {key}: best val acc {result.best_val_acc:.1%} at epoch {result.best_epoch + 1} "
              f"({time.perf_counter() - start:.1f} s)", file=sys.stderr, flush=True)
        model.load_state_dict(result.best_state)
        rec.log_metrics({"best_val_acc": result.best_val_acc, "best_epoch": result.best_epoch})
        path, tmp = folder / f"{key}.pt", folder / f"{key}.{os.getpid()}.pt.tmp"  # workers never share a temp file
        torch.save(model.net.state_dict(), tmp)
        os.replace(tmp, path)  # atomic: an interrupted save never leaves a half-written checkpoint
        rec.log_checkpoint(path)
        write_meta(folder, key, rec.run_id, pcfg)
    return Checkpoint(path, key, rec.run_id)
