"""The `DATASETS` registry (plus `folder:PATH`), and from it a `Task`: class-split, stratified train/val/test splits.

Small splits are decoded and preprocessed once and kept as tensors (on the GPU when there is one), so an epoch
costs only the model's work. A split too large for that streams: a DataLoader's workers read and preprocess
it a batch at a time. Either way a split hands out its batches through `Split.batches`.
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.datasets as tvd
from PIL import Image
from sklearn.model_selection import train_test_split
from torch.utils.data import DataLoader
from torchvision.datasets.folder import IMG_EXTENSIONS, make_dataset
from torchvision.transforms.v2 import functional as TF

from harness.models import Preprocess

TENSOR_BUDGET_BYTES = 1.5e9  # preprocessed float32 splits kept in memory up to this total; the rest stream
STREAM_WORKERS = min(8, max((os.cpu_count() or 2) - 1, 1))  # processes that read and preprocess batches
CHUNK = 256  # images read and preprocessed at a time when a split is built: bounds the peak memory
DOWNLOAD_TIMEOUT_S = 30  # per socket operation: an unreachable server fails instead of hanging
FOLDER = "folder:"  # dataset names "folder:PATH" are a user's images, one subfolder per class


class DatasetUnavailable(ValueError):
    """A dataset is neither on disk nor downloadable; the message says what to put where."""


class ImageFiles:
    """Images of any size on disk, decoded on demand to one square size: shorter side resized, centre-cropped."""

    def __init__(self, paths: list[str]):
        self.paths = paths

    def __len__(self) -> int:
        return len(self.paths)

    def read(self, idx: np.ndarray, size: int) -> torch.Tensor:
        out = torch.empty(len(idx), 3, size, size, dtype=torch.uint8)
        for i, j in enumerate(idx):
            with Image.open(self.paths[j]) as image:
                image.draft("RGB", (size, size))  # JPEG decodes at a reduced scale: faster, less memory
                image = image.convert("RGB")
                w, h = image.size
                scale = size / min(w, h)
                w, h = max(size, round(w * scale)), max(size, round(h * scale))
                left, top = (w - size) // 2, (h - size) // 2
                image = image.resize((w, h), Image.Resampling.BILINEAR).crop((left, top, left + size, top + size))
                out[i] = torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1)
        return out


Images = torch.Tensor | ImageFiles  # N x C x H x W in memory (uint8, or floats in [0, 1]), or files


def read_images(images: Images, idx: np.ndarray, size: int) -> torch.Tensor:
    """Images `idx`; files come decoded at `size` x `size`, tensors as they are (preprocess resizes them)."""
    if isinstance(images, ImageFiles):
        return images.read(idx, size)
    return images[torch.as_tensor(idx, dtype=torch.long)]


@dataclass(frozen=True)
class RawData:
    """A whole dataset: its images, labels 0..n-1 and class names, and its official test part where there is one."""

    images: Images
    labels: torch.Tensor
    classes: list[str]
    test_images: Images | None = None
    test_labels: torch.Tensor | None = None


# --- the registry -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Download:
    """Where torchvision looks for a dataset under the data root, and the official files it downloads."""

    expects: tuple[str, ...]  # paths under the data root that torchvision checks
    into: str  # the folder under the data root that downloaded files go to (torchvision unpacks them there)
    urls: tuple[str, ...]


@dataclass(frozen=True)
class DatasetSpec:
    load: Callable[[str], RawData]  # data_root -> RawData
    num_classes: int  # known without loading the data, so a bad class split fails before a study starts
    hflip: bool = True  # horizontal flips keep the label (not for digits or text)
    download: Download | None = None  # torchvision datasets: what to put where when offline


def load_digits(data_root: str) -> RawData:
    """The 1,797 UCI handwritten digits that ship inside scikit-learn (8x8, grey levels 0..16)."""
    from sklearn.datasets import load_digits as sklearn_digits

    digits = sklearn_digits()
    images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    return RawData(images, torch.tensor(digits.target), [str(c) for c in digits.target_names])


def fetch(name: str, cls: type, data_root: str, **split) -> object:
    """`cls(data_root, **split)` from disk; a download only when its files are missing, bounded by a timeout."""
    try:
        return cls(data_root, download=False, **split)
    except RuntimeError:  # torchvision's "Dataset not found or corrupted"
        pass
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        return cls(data_root, download=True, **split)
    except Exception as error:  # offline, refused, timed out, checksum mismatch: all mean "not available"
        raise DatasetUnavailable(offline_message(name, data_root, error)) from error
    finally:
        socket.setdefaulttimeout(previous)


def offline_message(name: str, data_root: str, error: Exception) -> str:
    where = DATASETS[name].download
    expects = " and ".join(str(Path(data_root) / p) for p in where.expects)
    cause = " ".join(f"{type(error).__name__}: {error}".split())[:300]
    return (
        f"dataset {name!r} is not in {expects} and could not be downloaded ({cause}). "
        f"On a machine with internet, fetch {' '.join(where.urls)} and put the file(s) in "
        f"{Path(data_root) / where.into} (torchvision checks them, and unpacks archives, on the next run); "
        f"or point --data-root / HARNESS_DATA_ROOT at a folder that already holds {name}."
    )


def _array(data) -> torch.Tensor:
    return torch.as_tensor(np.ascontiguousarray(data))


def _mnist_like(name: str, cls: type) -> Callable[[str], RawData]:
    def load(data_root: str) -> RawData:
        train, test = fetch(name, cls, data_root, train=True), fetch(name, cls, data_root, train=False)
        return RawData(train.data.unsqueeze(1), train.targets, list(cls.classes),
                       test.data.unsqueeze(1), test.targets)

    return load


def _cifar(name: str, cls: type) -> Callable[[str], RawData]:
    def load(data_root: str) -> RawData:
        train, test = fetch(name, cls, data_root, train=True), fetch(name, cls, data_root, train=False)
        return RawData(_array(train.data.transpose(0, 3, 1, 2)), torch.tensor(train.targets), list(train.classes),
                       _array(test.data.transpose(0, 3, 1, 2)), torch.tensor(test.targets))

    return load


def load_svhn(data_root: str) -> RawData:
    train, test = (fetch("svhn", tvd.SVHN, data_root, split=s) for s in ("train", "test"))
    return RawData(_array(train.data), torch.as_tensor(train.labels), [str(d) for d in range(10)],
                   _array(test.data), torch.as_tensor(test.labels))


def load_stl10(data_root: str) -> RawData:
    train, test = (fetch("stl10", tvd.STL10, data_root, split=s) for s in ("train", "test"))
    return RawData(_array(train.data), torch.as_tensor(train.labels).long(), list(train.classes),
                   _array(test.data), torch.as_tensor(test.labels).long())


def load_flowers102(data_root: str) -> RawData:
    """The official train and val parts (10 images a class each) pool; the harness draws its own val from them."""
    parts = [fetch("flowers102", tvd.Flowers102, data_root, split=s) for s in ("train", "val", "test")]
    pool, test = parts[:2], parts[2]
    return RawData(ImageFiles([str(p) for d in pool for p in d._image_files]),
                   torch.tensor([y for d in pool for y in d._labels]), list(tvd.Flowers102.classes),
                   ImageFiles([str(p) for p in test._image_files]), torch.tensor(test._labels))


def load_oxford_iiit_pet(data_root: str) -> RawData:
    train, test = (fetch("oxford_iiit_pet", tvd.OxfordIIITPet, data_root, split=s) for s in ("trainval", "test"))
    return RawData(ImageFiles([str(p) for p in train._images]), torch.tensor(train._labels), list(train.classes),
                   ImageFiles([str(p) for p in test._images]), torch.tensor(test._labels))


def _mnist_urls(cls: type) -> tuple[str, ...]:
    return tuple(cls.mirrors[0] + filename for filename, _ in cls.resources)


DATASETS: dict[str, DatasetSpec] = {
    "digits": DatasetSpec(load_digits, 10, hflip=False),
    "mnist": DatasetSpec(_mnist_like("mnist", tvd.MNIST), 10, hflip=False,
                         download=Download(("MNIST/raw",), "MNIST/raw", _mnist_urls(tvd.MNIST))),
    "fashion_mnist": DatasetSpec(_mnist_like("fashion_mnist", tvd.FashionMNIST), 10,
                                 download=Download(("FashionMNIST/raw",), "FashionMNIST/raw",
                                                   _mnist_urls(tvd.FashionMNIST))),
    "cifar10": DatasetSpec(_cifar("cifar10", tvd.CIFAR10), 10,
                           download=Download(("cifar-10-batches-py",), ".", (tvd.CIFAR10.url,))),
    "cifar100": DatasetSpec(_cifar("cifar100", tvd.CIFAR100), 100,
                            download=Download(("cifar-100-python",), ".", (tvd.CIFAR100.url,))),
    "svhn": DatasetSpec(load_svhn, 10, hflip=False,
                        download=Download(tuple(v[1] for k, v in tvd.SVHN.split_list.items() if k != "extra"), ".",
                                          tuple(v[0] for k, v in tvd.SVHN.split_list.items() if k != "extra"))),
    "stl10": DatasetSpec(load_stl10, 10, download=Download(("stl10_binary",), ".", (tvd.STL10.url,))),
    "flowers102": DatasetSpec(load_flowers102, 102, download=Download(
        ("flowers-102",), "flowers-102",
        tuple(tvd.Flowers102._download_url_prefix + f for f, _ in tvd.Flowers102._file_dict.values()))),
    "oxford_iiit_pet": DatasetSpec(load_oxford_iiit_pet, 37, download=Download(
        ("oxford-iiit-pet",), "oxford-iiit-pet", tuple(url for url, _ in tvd.OxfordIIITPet._RESOURCES))),
}


# --- folder:PATH --------------------------------------------------------------------------------------------


def class_folders(folder: Path) -> list[str]:
    return sorted(e.name for e in os.scandir(folder) if e.is_dir() and not e.name.startswith("."))


def folder_layout(path: str) -> tuple[list[Path], Path | None, list[str]]:
    """(training folders, held-out folder or None, class names) of a user's image folder.

    `PATH/train/` with `PATH/test/` or `PATH/val/` (the ants-and-bees layout): the held-out folder is the test
    split, never seen by the search or the model selection, so its accuracy is comparable to what others
    report on it; the harness draws its own validation part from `train/`. With both `val/` and `test/`,
    `test/` is the test split and `val/` joins the training pool. Otherwise PATH holds one subfolder per
    class and the harness splits it three ways.
    """
    root = Path(path)
    if not root.is_dir():
        raise ValueError(f"{FOLDER}{path}: no such directory")
    if (root / "train").is_dir():
        held_out = next((root / n for n in ("test", "val") if (root / n).is_dir()), None)
        pool = [root / "train"] + ([root / "val"] if held_out == root / "test" and (root / "val").is_dir() else [])
    else:
        held_out, pool = None, [root]
    classes = class_folders(pool[0])
    if not classes:
        raise ValueError(f"{FOLDER}{path}: no class subfolders in {pool[0]}; put each class's images in "
                         f"{root}/<class>/ (or {root}/train/<class>/ and {root}/val/<class>/)")
    for extra in pool[1:] + ([held_out] if held_out else []):
        unknown = sorted(set(class_folders(extra)) - set(classes))
        if unknown:
            raise ValueError(f"{FOLDER}{path}: {extra} has classes {unknown} that {pool[0]} lacks")
    return pool, held_out, classes


def _image_list(folders: list[Path], classes: list[str], require_all: bool) -> tuple[list[str], list[int]]:
    to_index = {c: i for i, c in enumerate(classes)}
    found = [s for folder in folders for s in make_dataset(folder, to_index, IMG_EXTENSIONS, allow_empty=True)]
    missing = sorted(set(classes) - {classes[y] for _, y in found})
    if require_all and missing:
        raise ValueError(f"no images ({', '.join(IMG_EXTENSIONS)}) for classes {missing} in "
                         f"{' or '.join(map(str, folders))}")
    return [p for p, _ in found], [y for _, y in found]


def load_folder(path: str) -> RawData:
    pool, held_out, classes = folder_layout(path)
    paths, labels = _image_list(pool, classes, require_all=True)
    if held_out is None:
        return RawData(ImageFiles(paths), torch.tensor(labels), classes)
    test_paths, test_labels = _image_list([held_out], classes, require_all=False)
    return RawData(ImageFiles(paths), torch.tensor(labels), classes, ImageFiles(test_paths), torch.tensor(test_labels))


def dataset_spec(name: str) -> DatasetSpec:
    """The registry entry, or one for `folder:PATH` (checked here: the path and its class folders exist)."""
    if name.startswith(FOLDER):
        path = name.removeprefix(FOLDER)
        _, _, classes = folder_layout(path)
        return DatasetSpec(lambda data_root: load_folder(path), len(classes))  # a folder lives where it says
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choices: {', '.join(DATASETS)}, or {FOLDER}PATH "
                         "(a folder of class subfolders, or of train/ and val/ class subfolders)")
    return DATASETS[name]


def check_data(cfg) -> None:
    """Fail before a study writes anything: the dataset must exist and have the classes `cfg` names."""
    spec = dataset_spec(cfg.dataset)
    sides = {"target_classes": cfg.target_classes}
    if cfg.weights == "source":
        sides["source_classes"] = cfg.source_classes
    for side, classes in sides.items():
        unknown = sorted(c for c in classes or () if not 0 <= c < spec.num_classes)
        if unknown:
            raise ValueError(
                f"{side} {unknown} not in {cfg.dataset}, which has {spec.num_classes} classes "
                f"(0..{spec.num_classes - 1}); set source_classes and target_classes in the study's "
                "TrialConfig (None means all classes)"
            )


@functools.lru_cache(maxsize=4)
def load_raw(name: str, data_root: str) -> RawData:
    return dataset_spec(name).load(data_root)


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

    def batches(self, batch_size: int, order: torch.Tensor | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(x, y) on the training device, `batch_size` at a time, in `order` (positions) or as stored."""
        if self.x is not None:
            if order is None:
                for i in range(0, len(self), batch_size):
                    yield self.x[i : i + batch_size], self.y[i : i + batch_size]
            else:
                for batch in order.split(batch_size):
                    batch = batch.to(self.x.device)
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


def preprocess(images: torch.Tensor, pre: Preprocess) -> torch.Tensor:
    """Resize (and crop), match channels, normalise: deterministic, so evaluation sees the same input."""
    if images.dtype == torch.uint8:
        images = images.float() / 255.0
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
    """The first `shots` images of each class in a seeded order; a class with fewer is an error, not a surprise."""
    counts = dict(zip(*np.unique(labels[indices], return_counts=True), strict=True))
    short = {int(c): int(n) for c, n in counts.items() if n < shots}
    if short:
        raise ValueError(f"shots={shots}, but the training part has fewer images of some classes "
                         f"(class: images) {short}; use fewer shots or more images")
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


def make_task(cfg, pre: Preprocess, role: str = "target", device: str | torch.device = "cpu") -> Task:
    """The `role` ("target" or "source") side of `cfg`'s class split, preprocessed for `pre`.

    The source side keeps its whole training part: it exists to pretrain a model, not to be few-shot.
    Splits are kept as tensors on `device`, train first (it is read every batch), then val, then test, while
    their total stays under TENSOR_BUDGET_BYTES; the others stream. Either way the numbers are the same.
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
        test_images, test_labels = raw.test_images, raw.test_labels.numpy()
        test_idx = np.flatnonzero(np.isin(test_labels, wanted))
    else:
        pool, test_idx = _stratified(pool, labels, cfg.test_fraction, cfg.split_seed)
        test_images, test_labels = raw.images, labels
    train_idx, val_idx = _stratified(pool, labels, cfg.val_fraction, cfg.split_seed)
    if role == "target" and cfg.shots is not None:
        train_idx = few_shot(train_idx, labels, cfg.shots, cfg.split_seed)
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
            splits[name] = Split(materialise(reader).to(device), y, idx)
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
