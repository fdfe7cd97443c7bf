"""From a dataset to a `Task`: class-split, stratified train/val/test splits, preprocessed once.

Small splits are decoded and preprocessed once and kept as tensors (on the GPU when there is one), so an epoch
costs only the model's work. A split too large for that streams: a DataLoader's workers read and preprocess
it a batch at a time. Either way a split hands out its batches through `Split.batches`.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.model_selection import train_test_split
from torch.utils.data import DataLoader
from torchvision.transforms.v2 import functional as TF

from harness.learn.datasets import ImageFiles, Images, RawData, dataset_spec, load_raw, read_images
from harness.learn.models import Preprocess
from harness.spec import TrialConfig

TENSOR_BUDGET_BYTES = 1.5e9  # preprocessed float32 splits kept in memory up to this total; the rest stream
STREAM_WORKERS = min(8, max((os.cpu_count() or 2) - 1, 1))  # processes that read and preprocess batches
CHUNK = 256  # images read and preprocessed at a time when a split is built: bounds the peak memory


# --- splits -------------------------------------------------------------------------------------------------


def load_size(pre: Preprocess) -> int:
    """Files are decoded once at this square size: the model's resize (it then centre-crops), else its input."""
    return pre.resize or pre.size


class SplitReader(torch.utils.data.Dataset):
    """A split's images, read and preprocessed a batch at a time: an item is a list of positions in the split."""

    def __init__(self, images: Images, idx: np.ndarray, pre: Preprocess):
        self.images, self.idx, self.pre = images, idx, pre

    def __len__(self) -> int:
        return len(self.idx)

    def __getitem__(self, positions: list[int]) -> torch.Tensor:
        return preprocess(read_images(self.images, self.idx[positions], load_size(self.pre)), self.pre)


def _loader(reader: SplitReader, batches: list[list[int]], workers: int, pin: bool = False) -> DataLoader:
    # a private generator: a DataLoader otherwise draws its seed from the global RNG (dropout's)
    return DataLoader(reader, sampler=batches, batch_size=None, num_workers=workers, pin_memory=pin,
                      generator=torch.Generator())


@dataclass(frozen=True)
class Split:
    x: torch.Tensor | None  # preprocessed, on the training device; None when the split streams
    y: torch.Tensor  # 0..n_classes-1, on the training device
    indices: np.ndarray  # into the raw dataset (its official test part for `test` where there is one)
    reader: SplitReader | None = field(default=None, repr=False)  # how a streamed split reads its images

    def __len__(self) -> int:
        return len(self.y)

    def batches(self, batch_size: int,
                order: torch.Tensor | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(x, y) on the training device, `batch_size` at a time, in `order` (positions) or as stored."""
        if self.x is not None:
            if order is None:
                for i in range(0, len(self), batch_size):
                    yield self.x[i : i + batch_size], self.y[i : i + batch_size]
            else:
                for batch in order.to(self.x.device).split(batch_size):  # one copy of the order per epoch
                    yield self.x[batch], self.y[batch]
            return
        positions = (torch.arange(len(self)) if order is None else order.cpu()).split(batch_size)
        loader = _loader(self.reader, [p.tolist() for p in positions], STREAM_WORKERS, pin=self.y.is_cuda)
        for batch, x in zip(positions, loader, strict=True):
            yield x.to(self.y.device, non_blocking=True), self.y[batch.to(self.y.device)]

    def images(self, positions: np.ndarray) -> torch.Tensor:
        """Preprocessed images at `positions` in the split, wherever the split keeps them."""
        if self.x is not None:
            return self.x[torch.as_tensor(positions, dtype=torch.long, device=self.x.device)]
        return self.reader[list(positions)]


@dataclass(frozen=True)
class Task:
    dataset: str
    classes: list[str]
    train: Split
    val: Split
    test: Split
    pre: Preprocess
    hflip: bool

    def splits(self) -> dict[str, Split]:
        return {"train": self.train, "val": self.val, "test": self.test}

    def fingerprints(self) -> dict[str, str]:
        """A short hash of each split's indices: two runs with equal fingerprints saw the same images."""
        return {name: hashlib.sha1(np.sort(s.indices).tobytes()).hexdigest()[:12] for name, s in self.splits().items()}


def target_preprocessing(cfg: TrialConfig) -> Preprocess:
    """The input a run's target task is built for: the model's own (`preprocessing`), widened to three channels
    where the model takes one, the target's images are in colour and `cfg.colour` is "keep" (the model's first
    convolution is widened to match: `harness.learn.weights.widen_input`)."""
    import dataclasses

    from harness.learn.colour import dataset_in_colour
    from harness.learn.models import preprocessing
    from harness.spec import weights_kind

    pre = preprocessing(cfg.model, "imagenet" if weights_kind(cfg.weights) == "imagenet" else "none")
    if cfg.colour == "keep" and pre.channels == 1 and dataset_in_colour(cfg.dataset):
        return dataclasses.replace(pre, channels=3, mean=pre.mean * 3, std=pre.std * 3, widened_from=1)
    return pre


def preprocess(images: torch.Tensor, pre: Preprocess) -> torch.Tensor:
    """Resize (and crop), match channels, normalise: deterministic, so evaluation sees the same input.

    Preprocessing that names its weights runs their own `transforms()` whole (interpolation included).
    """
    if images.dtype == torch.uint8:
        images = images.float() / 255.0
    own = pre.transforms()
    if own is not None:  # ImageNet weights: 3 channels in, their own resize, crop and normalisation
        return own(images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images).contiguous()
    interpolation = TF.InterpolationMode(pre.interpolation)
    if pre.resize is not None:
        resized = TF.resize(images, [pre.resize], interpolation=interpolation, antialias=pre.antialias)
        images = TF.center_crop(resized, [pre.size])
    elif images.shape[-1] != pre.size or images.shape[-2] != pre.size:
        images = TF.resize(images, [pre.size, pre.size], interpolation=interpolation, antialias=pre.antialias)
    if images.shape[1] == 1 and pre.channels == 3:  # a grey image feeds an RGB model
        images = images.expand(-1, 3, -1, -1)
    elif images.shape[1] == 3 and pre.channels == 1:
        images = TF.rgb_to_grayscale(images)
    mean = torch.tensor(pre.mean).view(1, -1, 1, 1)
    std = torch.tensor(pre.std).view(1, -1, 1, 1)
    return ((images - mean) / std).contiguous()


def _stratified(indices: np.ndarray, labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(rest, part): `fraction` of `indices` split off with the class proportions kept."""
    rest, part = train_test_split(indices, test_size=fraction, stratify=labels[indices], random_state=seed)
    return np.sort(rest), np.sort(part)


def few_shot(indices: np.ndarray, labels: np.ndarray, shots: int, seed: int,
             names: list[str] | None = None) -> np.ndarray:
    """The first `shots` images of each class in a seeded order; a class with fewer is an error, not a surprise."""
    counts = dict(zip(*np.unique(labels[indices], return_counts=True), strict=True))
    short = {(names[int(c)] if names else int(c)): int(n) for c, n in counts.items() if n < shots}
    if short:
        fewest = min(short.values())
        listed = ", ".join(f"{name!r}: {n}" for name, n in short.items())
        raise ValueError(f"shots={shots}, but the training part (after the validation and test splits) has fewer "
                         f"images of some classes: {listed}; use --shots {fewest} or less, or add images")
    order = np.random.default_rng(seed).permutation(indices)
    chosen = [order[labels[order] == c][:shots] for c in counts]
    return np.sort(np.concatenate(chosen))


def _tensor_bytes(n: int, pre: Preprocess) -> int:
    return n * pre.channels * pre.size * pre.size * 4  # float32


def materialise(reader: SplitReader) -> torch.Tensor:
    """All of a split's images preprocessed, CHUNK at a time (files decoded by workers)."""
    n = len(reader)
    out = torch.empty(n, reader.pre.channels, reader.pre.size, reader.pre.size)
    if n == 0:
        return out
    chunks = [c.tolist() for c in np.array_split(np.arange(n), max(math.ceil(n / CHUNK), 1))]
    workers = STREAM_WORKERS if isinstance(reader.images, ImageFiles) and len(chunks) > 1 else 0
    for chunk, x in zip(chunks, _loader(reader, chunks, workers), strict=True):
        out[chunk[0] : chunk[-1] + 1] = x
    return out


def _on_device(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A whole split on the GPU: copied from pinned memory, channels_last as the convolutions want it."""
    if device.type != "cuda":
        return x.to(device)
    return x.pin_memory().to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)


def split_indices(cfg: TrialConfig, raw: RawData,
                  role: str = "target") -> tuple[list[int], np.ndarray, np.ndarray, np.ndarray]:
    """(the classes kept, train, val and test indices) of `cfg`'s `role` side: labels only, no image read."""
    labels = raw.labels.numpy()
    wanted = cfg.target_classes if role == "target" else cfg.source_classes
    wanted = list(range(len(raw.classes))) if wanted is None else list(wanted)
    unknown = sorted(set(wanted) - set(range(len(raw.classes))))
    if unknown:
        raise ValueError(f"classes {unknown} not in {cfg.dataset}, which has classes 0..{len(raw.classes) - 1}")
    pool = np.flatnonzero(np.isin(labels, wanted))
    if raw.test_labels is not None:
        test_idx = np.flatnonzero(np.isin(raw.test_labels.numpy(), wanted))
    else:
        pool, test_idx = _stratified(pool, labels, cfg.test_fraction, cfg.split_seed)
    partition = cfg.split_seed + cfg.partition_seed  # the test split above depends on split_seed alone
    train_idx, val_idx = _stratified(pool, labels, cfg.val_fraction, partition)
    if role == "target" and cfg.shots is not None:
        train_idx = few_shot(train_idx, labels, cfg.shots, partition, raw.classes)
    return wanted, train_idx, val_idx, test_idx


def make_task(cfg: TrialConfig, pre: Preprocess, role: str = "target", device: str | torch.device = "cpu") -> Task:
    """The `role` ("target" or "source") side of `cfg`'s class split, preprocessed for `pre`.

    The source side keeps its whole training part: it exists to pretrain a model, not to be few-shot.
    Splits are kept as tensors on `device`, train first (it is read every batch), then val, then test, while
    their total stays under TENSOR_BUDGET_BYTES; the others stream. Either way the numbers are the same.
    """
    raw = load_raw(cfg.dataset, cfg.data_root)
    labels = raw.labels.numpy()
    wanted, train_idx, val_idx, test_idx = split_indices(cfg, raw, role)
    if raw.test_labels is not None:
        test_images, test_labels = raw.test_images, raw.test_labels.numpy()
    else:
        test_images, test_labels = raw.images, labels
    relabel = np.full(len(raw.classes), -1)
    relabel[wanted] = np.arange(len(wanted))
    parts = {"train": (raw.images, labels, train_idx), "val": (raw.images, labels, val_idx),
             "test": (test_images, test_labels, test_idx)}
    budget, splits = TENSOR_BUDGET_BYTES, {}
    for name, (images, part_labels, idx) in parts.items():
        y = torch.as_tensor(relabel[part_labels[idx]], dtype=torch.long).to(device)
        reader = SplitReader(images, idx, pre)
        if _tensor_bytes(len(idx), pre) <= budget:
            budget -= _tensor_bytes(len(idx), pre)
            splits[name] = Split(_on_device(materialise(reader), torch.device(device)), y, idx)
        else:
            splits[name] = Split(None, y, idx, reader)
    return Task(dataset=cfg.dataset, classes=[raw.classes[c] for c in wanted], **splits, pre=pre,
                hflip=dataset_spec(cfg.dataset).hflip)


def augment(x: torch.Tensor, hflip: bool, generator: torch.Generator) -> torch.Tensor:
    """Random crop with padding of 1/8 the size (and a horizontal flip where allowed), per image."""
    n, _, h, w = x.shape
    pad = max(h // 8, 1)
    padded = F.pad(x, (pad, pad, pad, pad), mode="replicate")
    dy, dx = torch.randint(0, 2 * pad + 1, (2, n), generator=generator).tolist()
    x = torch.stack([padded[i, :, dy[i] : dy[i] + h, dx[i] : dx[i] + w] for i in range(n)])
    if hflip:
        flip = (torch.rand(n, generator=generator) < 0.5).to(x.device).view(-1, 1, 1, 1)
        x = torch.where(flip, x.flip(-1), x)
    return x


def class_counts(task: Task) -> dict[str, list[int]]:
    n = len(task.classes)
    return {name: torch.bincount(s.y.cpu(), minlength=n).tolist() for name, s in task.splits().items()}


def sample_images(task: Task, per_class: int = 4) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """A few images per class from each split, un-normalised to [0, 1] for display."""
    mean = torch.tensor(task.pre.mean).view(1, -1, 1, 1)
    std = torch.tensor(task.pre.std).view(1, -1, 1, 1)
    samples = {}
    for name, s in task.splits().items():
        y = s.y.cpu().numpy()
        chosen = np.concatenate([np.flatnonzero(y == c)[:per_class] for c in range(len(task.classes))])
        images = (s.images(chosen).cpu() * std + mean).clamp(0, 1).numpy()
        samples[name] = (images, y[chosen])
    return samples
