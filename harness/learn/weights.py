"""Weights files: reading a state dict safely (`weights_only`: no code from the file runs), fitting it to a
network, and where torch.hub caches torchvision's ImageNet weights (with the message to give when offline)."""

from __future__ import annotations

import pickle
import re
import struct
from pathlib import Path
from urllib.parse import urlparse

import torch
import torchvision
from torch import nn


class WeightsUnavailable(RuntimeError):
    """Pretrained weights are neither cached nor downloadable."""


def imagenet_file(weights: torchvision.models.WeightsEnum) -> Path:
    """Where torch.hub caches a weights file: <torch.hub.get_dir()>/checkpoints/<the file name in its URL>."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(weights.url).path).name


def unavailable(name: str, weights: torchvision.models.WeightsEnum, error: Exception) -> WeightsUnavailable:
    file = imagenet_file(weights)
    return WeightsUnavailable(
        f"ImageNet weights for {name} ({weights}) could not be loaded from torch's cache or downloaded "
        f"({error}). Download {weights.url} and put {file.name} in {file.parent}"
    )


SAVE_HINT = "save one with torch.save(model.state_dict(), PATH)"


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from a file, loaded safely: `weights_only` runs no code from the file, and anything that is
    not a readable mapping of names to tensors is a `ValueError` that says what the file is instead. A
    `.safetensors` file (the Hugging Face hub's format, timm's weights) holds tensors only, by design."""
    if str(path).endswith(".safetensors"):
        return _read_safetensors(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        found = re.search(r"unsupported global:? (?:GLOBAL )?(\S+)", str(error), re.IGNORECASE)
        if found:  # a pickle of Python objects (code to run, perhaps): refused before any of it ran
            raise ValueError(f"checkpoint {path} holds Python objects ({found.group(1)}), not just tensors; it "
                             f"was refused unread, so none of its code ran. Use a plain state dict: {SAVE_HINT}"
                             ) from None
        raise ValueError(f"checkpoint {path} is not a readable PyTorch file (its bytes are no pickle torch can "
                         f"read); it may be corrupted or another format: {SAVE_HINT}") from None
    # truncated, or not torch's: random bytes reach the unpickler's own stack and memo (IndexError, KeyError...)
    except (RuntimeError, EOFError, OSError, ValueError, AttributeError, IndexError, KeyError, TypeError,
            struct.error) as error:
        reason = " ".join(str(error).split()).split(". ")[0][:200]  # torch's first sentence says what failed
        raise ValueError(f"checkpoint {path} is not a readable PyTorch file ({type(error).__name__}: {reason}); "
                         f"it may be truncated or another format: {SAVE_HINT}") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"checkpoint {path} is not a state dict (a mapping of names to tensors): {SAVE_HINT}")
    return state


def _read_safetensors(path: str | Path) -> dict[str, torch.Tensor]:
    try:
        from safetensors.torch import load_file
    except ImportError:
        raise ValueError(f"checkpoint {path} is a .safetensors file: pip install safetensors to read it") from None
    try:
        return load_file(str(path), device="cpu")
    except Exception as error:  # noqa: BLE001 - safetensors raises its own SafetensorError on a bad header
        reason = " ".join(str(error).split())[:200]
        raise ValueError(f"checkpoint {path} is not a readable safetensors file ({reason}): {SAVE_HINT}") from None


def load_checkpoint(net: nn.Module, path: str | Path, head: str) -> None:
    """Load a state dict safely (weights_only); a head of another shape is left to be replaced.

    Takes the state dict of the bare network or of a `TransferNet` (keys prefixed `net.`).
    """
    state = read_state_dict(path)
    if state and all(k.startswith("net.") for k in state):
        state = {k.removeprefix("net."): v for k, v in state.items()}
    own, in_head = net.state_dict(), head + "."
    state = {k: v for k, v in state.items() if not k.startswith(in_head)}  # the head is replaced anyway
    wrong = [f"{k} {tuple(v.shape)} (model: {tuple(own[k].shape)})"
             for k, v in state.items() if k in own and v.shape != own[k].shape]
    missing = [k for k in own if k not in state and not k.startswith(in_head)]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected or wrong:
        raise ValueError(f"checkpoint {path} does not fit this model: missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]}, wrong shape {wrong[:5]}")
    net.load_state_dict(state, strict=False)


def widen_input(net: nn.Module, channels: int) -> None:
    """The first convolution takes `channels` input channels: its filters repeated over them and scaled so a grey
    image given as equal channels gives the same output as before (timm's `adapt_input_conv`, for a 1-channel
    model and colour images: the model starts where its pretraining left it and can learn colour)."""
    path, conv = next((p, m) for p, m in net.named_modules() if isinstance(m, nn.Conv2d))
    if conv.in_channels == channels:
        return
    if conv.in_channels != 1 or conv.groups != 1:
        raise ValueError(f"cannot widen a first convolution of {conv.in_channels} channels to {channels}")
    wide = nn.Conv2d(channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
                     bias=conv.bias is not None, padding_mode=conv.padding_mode)
    with torch.no_grad():
        wide.weight.copy_(conv.weight.repeat(1, channels, 1, 1) / channels)
        if conv.bias is not None:
            wide.bias.copy_(conv.bias)
    net.set_submodule(path, wide)
