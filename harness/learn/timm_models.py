"""timm's models by name (`--model timm:convnext_tiny`): built by timm, staged and frozen like any torchvision
classifier (`derived_stages`), with ImageNet weights through timm's own download (the Hugging Face hub and its
cache) or, offline, from a local weights file (`--weights PATH`). timm is optional: `pip install timm`."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from torch import nn

from harness.learn.weights import WeightsUnavailable

PREFIX = "timm:"


def is_timm(name: str) -> bool:
    return name.startswith(PREFIX)


def _timm() -> Any:
    try:
        import timm
    except ImportError:
        raise ValueError("timm models need the timm package: pip install timm") from None
    return timm


def architecture(name: str) -> str:
    """The timm architecture a `timm:` name means; unknown ones are refused, naming where to find them."""
    arch = name.removeprefix(PREFIX)
    if arch not in _timm().list_models():
        raise ValueError(f"unknown timm model {arch!r} (from {name!r}); timm.list_models() lists them, "
                         "e.g. timm:resnet18, timm:convnext_tiny, timm:vit_tiny_patch16_224")
    return arch


def pretrained_cfg(name: str) -> dict:
    """The default pretrained configuration timm declares for the architecture: sizes, normalisation, hub id.
    Metadata only: nothing is downloaded."""
    cfg = _timm().models.get_pretrained_cfg(architecture(name))
    return {} if cfg is None else cfg.to_dict()


def input_size(name: str) -> int:
    """What the harness feeds it on small tasks: 32 px, or the size a fixed-size architecture (ViT) declares."""
    cfg = pretrained_cfg(name)
    if cfg.get("fixed_input_size"):
        return int(cfg["input_size"][-1])
    return max(32, int(cfg.get("min_input_size", (3, 32, 32))[-1]))


def build(name: str, pretrained: bool = False) -> nn.Module:
    """timm's network with its original head; with `pretrained`, its default ImageNet weights through timm
    (downloaded into the Hugging Face cache, or read from it), a clear message when they cannot be had."""
    timm, arch = _timm(), architecture(name)
    if not pretrained:
        return timm.create_model(arch, pretrained=False)
    try:
        return timm.create_model(arch, pretrained=True)
    except (OSError, RuntimeError, ValueError) as error:  # offline: the hub's errors are OSErrors
        raise unavailable(name, error) from error


def cache() -> Path:
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def require(name: str) -> Path:
    """The pretrained weights are in the cache (downloaded first if missing), else `WeightsUnavailable`."""
    build(name, pretrained=True)
    return cache()


def unavailable(name: str, error: Exception) -> WeightsUnavailable:
    cfg = pretrained_cfg(name)
    where = cfg.get("hf_hub_id") or cfg.get("url") or "timm's pretrained configuration"
    reason = " ".join(str(error).split())[:300]
    return WeightsUnavailable(
        f"ImageNet weights for {name} could not be loaded from the Hugging Face cache ({cache()}) "
        f"or downloaded from {where} ({type(error).__name__}: {reason}). Online, the first run downloads them; "
        f"offline, download that model's weights file elsewhere and pass it with --weights PATH")


def imagenet_preprocessing(name: str) -> dict:
    """The pretrained weights' own input: size, normalisation, and resize-then-crop (timm's crop_pct)."""
    cfg = pretrained_cfg(name)
    size = int(cfg.get("input_size", (3, 224, 224))[-1])
    crop = float(cfg.get("crop_pct") or 0.875)
    return {"size": size, "channels": int(cfg.get("input_size", (3,))[0]),
            "mean": tuple(float(m) for m in cfg.get("mean", (0.485, 0.456, 0.406))),
            "std": tuple(float(s) for s in cfg.get("std", (0.229, 0.224, 0.225))),
            "resize": math.floor(size / crop), "interpolation": cfg.get("interpolation") or "bilinear"}
