"""Folder-safe names for a study's variants: what differs from the study file, spelled so two different
settings never share a name."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def digest(values: Mapping[str, Any], length: int = 12) -> str:
    """A short, stable hash of a flat config: the same values give the same name across runs and machines."""
    return hashlib.sha1(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()[:length]


UNSAFE = re.compile(r"[^\w.-]+")  # what a folder name should not hold


def variant_name(name: str, differs: dict[str, Any]) -> str:
    """sgd_vs_adam + {epochs: 6, model: resnet18} -> sgd_vs_adam--epochs-6--model-resnet18 (a folder name).

    Paths are named by their last part and a digest of the absolute path, and any value the folder name
    cannot spell as it is gets a digest too, so two different settings never share a name."""
    def text(value: Any) -> str:
        if isinstance(value, tuple):
            return _ranges(value)
        value = "all" if value is None else str(value)
        kind, _, rest = value.rpartition(":") if value.startswith("folder:") else ("", "", value)
        if "/" in rest or Path(rest).exists():  # a path: where it is, not how it was typed, tells it apart
            full = f"{kind}:{Path(rest).expanduser().resolve()}" if kind else str(Path(rest).expanduser().resolve())
            return f"{UNSAFE.sub('_', Path(rest).name)[:24]}-{digest({'v': full}, 6)}"
        clean = UNSAFE.sub("_", value)
        return clean if clean == value and len(clean) <= 24 else f"{clean[:24]}-{digest({'v': value}, 6)}"

    short = {"n_trials": "trials", "source_classes": "source", "target_classes": "target"}
    return "--".join([name, *(f"{short.get(k, k)}-{text(v)}" for k, v in sorted(differs.items()))])


def _ranges(values: tuple) -> str:
    """(0, 1, 2, 3, 4, 7) -> 0..4_7: class lists stay short.

    >>> _ranges((0, 1, 2, 3, 4, 7))
    '0..4_7'
    """
    parts: list[str] = []
    for v in values:
        if parts and isinstance(v, int) and parts[-1][-1] == v - 1:
            parts[-1].append(v)
        else:
            parts.append([v])
    return "_".join(f"{run[0]}..{run[-1]}" if len(run) > 1 else str(run[0]) for run in parts)


# The registries' names (harness.learn.datasets.DATASETS, harness.learn.models.MODELS), here so that the command
# line's help and a rerun with nothing to do import no torch; tests/test_study_cli.py checks they agree.
DATASET_NAMES = ("digits", "mnist", "fashion_mnist", "cifar10", "cifar100", "svhn", "stl10", "flowers102",
                 "oxford_iiit_pet")
MODEL_NAMES = ("lenet5", "resnet8", "alexnet", "vgg16", "vgg16_bn", "resnet18", "resnet50")
