"""The `DATASETS` registry, and from it a `Task`: class-split, stratified train/val/test tensors, preprocessed once.

Small datasets are decoded and transformed once and kept as tensors (on the GPU when there is one), so an
epoch costs only the model's work.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.model_selection import train_test_split
from torchvision.transforms.v2 import functional as TF

from harness.models import Preprocess


@dataclass(frozen=True)
class RawData:
    """A whole dataset in memory: images N x C x H x W as floats in [0, 1]."""

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]
    test_images: torch.Tensor | None = None  # the official test split, where there is one
    test_labels: torch.Tensor | None = None


def load_digits(data_root: str) -> RawData:
    """The 1,797 UCI handwritten digits that ship inside scikit-learn (8x8, grey levels 0..16)."""
    from sklearn.datasets import load_digits as sklearn_digits

    digits = sklearn_digits()
    images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    return RawData(images, torch.tensor(digits.target), [str(c) for c in digits.target_names])


@dataclass(frozen=True)
class DatasetSpec:
    load: Callable[[str], RawData]  # data_root -> RawData
    hflip: bool = True  # horizontal flips keep the label (not for digits or text)


DATASETS: dict[str, DatasetSpec] = {
    "digits": DatasetSpec(load_digits, hflip=False),
}


def dataset_spec(name: str) -> DatasetSpec:
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choices: {', '.join(DATASETS)}")
    return DATASETS[name]


@functools.lru_cache(maxsize=4)
def load_raw(name: str, data_root: str) -> RawData:
    return dataset_spec(name).load(data_root)


@dataclass(frozen=True)
class Split:
    x: torch.Tensor  # preprocessed, on the training device
    y: torch.Tensor  # 0..n_classes-1
    indices: np.ndarray  # into the raw dataset (its official test part for `test` where there is one)

    def __len__(self) -> int:
        return len(self.y)


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


def preprocess(images: torch.Tensor, pre: Preprocess) -> torch.Tensor:
    """Resize (and crop), match channels, normalise: deterministic, so evaluation sees the same input."""
    if pre.resize is not None:
        images = TF.center_crop(TF.resize(images, [pre.resize], antialias=True), [pre.size])
    elif images.shape[-1] != pre.size or images.shape[-2] != pre.size:
        images = F.interpolate(images, size=(pre.size, pre.size), mode="bilinear", antialias=True)
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


def few_shot(indices: np.ndarray, labels: np.ndarray, shots: int, seed: int) -> np.ndarray:
    """The first `shots` images of each class in a seeded order."""
    order = np.random.default_rng(seed).permutation(indices)
    chosen = [order[labels[order] == c][:shots] for c in np.unique(labels[indices])]
    return np.sort(np.concatenate(chosen))


def make_task(cfg, pre: Preprocess, role: str = "target", device: str | torch.device = "cpu") -> Task:
    """The `role` ("target" or "source") side of `cfg`'s class split, as preprocessed tensors.

    The source side keeps its whole training part: it exists to pretrain a model, not to be few-shot.
    """
    raw = load_raw(cfg.dataset, cfg.data_root)
    labels = raw.labels.numpy()
    wanted = cfg.target_classes if role == "target" else cfg.source_classes
    wanted = list(range(len(raw.classes))) if wanted is None else list(wanted)
    unknown = sorted(set(wanted) - set(range(len(raw.classes))))
    if unknown:
        raise ValueError(f"classes {unknown} not in {cfg.dataset}, which has classes 0..{len(raw.classes) - 1}")
    pool = np.flatnonzero(np.isin(labels, wanted))
    if raw.test_labels is not None:
        test_labels = raw.test_labels.numpy()
        test_idx = np.flatnonzero(np.isin(test_labels, wanted))
        test_x, test_y = raw.test_images[test_idx], test_labels[test_idx]
    else:
        pool, test_idx = _stratified(pool, labels, cfg.test_fraction, cfg.split_seed)
        test_x, test_y = raw.images[test_idx], labels[test_idx]
    train_idx, val_idx = _stratified(pool, labels, cfg.val_fraction, cfg.split_seed)
    if role == "target" and cfg.shots is not None:
        train_idx = few_shot(train_idx, labels, cfg.shots, cfg.split_seed)
    relabel = {c: i for i, c in enumerate(wanted)}

    def split(x: torch.Tensor, y: np.ndarray, idx: np.ndarray) -> Split:
        targets = torch.tensor([relabel[int(c)] for c in y], dtype=torch.long)
        return Split(preprocess(x, pre).to(device), targets.to(device), idx)

    return Task(
        dataset=cfg.dataset,
        classes=[raw.classes[c] for c in wanted],
        train=split(raw.images[train_idx], labels[train_idx], train_idx),
        val=split(raw.images[val_idx], labels[val_idx], val_idx),
        test=split(test_x, test_y, test_idx),
        pre=pre,
        hflip=dataset_spec(cfg.dataset).hflip,
    )


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
        images = (s.x[chosen].cpu() * std + mean).clamp(0, 1).numpy()
        samples[name] = (images, y[chosen])
    return samples
