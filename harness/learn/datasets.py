"""The `DATASETS` registry (plus `folder:PATH`): each dataset as raw images, labels and class names.

Torchvision datasets download through torchvision itself; offline, a clear message says what to put where.
"""

from __future__ import annotations

import functools
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torchvision.datasets as tvd
from PIL import Image
from torchvision.datasets.folder import IMG_EXTENSIONS, make_dataset

from harness import internals
from harness.learn.images import BrokenImage, broken_image_message, check_files, too_large_message
from harness.spec import TrialConfig, weights_kind

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
            out[i] = self._decode(self.paths[j], size)
        return out

    @staticmethod
    def _decode(path: str, size: int) -> torch.Tensor:
        try:
            with Image.open(path) as image:
                image.draft("RGB", (size, size))  # JPEG decodes at a reduced scale: faster, less memory
                image = image.convert("RGB")
                w, h = image.size
                scale = size / min(w, h)
                w, h = max(size, round(w * scale)), max(size, round(h * scale))
                left, top = (w - size) // 2, (h - size) // 2
                image = image.resize((w, h), Image.Resampling.BILINEAR).crop((left, top, left + size, top + size))
                return torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1)
        except (OSError, ValueError, SyntaxError) as error:  # PIL's errors for broken, truncated, non-image files
            raise BrokenImage(broken_image_message(path, error)) from None
        except Image.DecompressionBombError as error:
            raise BrokenImage(too_large_message(path, error)) from None


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
    colour: bool = False  # its images are RGB (a folder's are looked at: `in_colour`)


def load_digits(data_root: str) -> RawData:
    """The 1,797 UCI handwritten digits that ship inside scikit-learn (8x8, grey levels 0..16)."""
    from sklearn.datasets import load_digits as sklearn_digits

    digits = sklearn_digits()
    images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    return RawData(images, torch.tensor(digits.target), [str(c) for c in digits.target_names])


def fetch(name: str, cls: type, data_root: str, **split: bool | str) -> object:
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
    (train, train_y), (val, val_y), (test, test_y) = map(internals.image_files, parts)
    return RawData(ImageFiles(train + val), torch.tensor(train_y + val_y), list(tvd.Flowers102.classes),
                   ImageFiles(test), torch.tensor(test_y))


def load_oxford_iiit_pet(data_root: str) -> RawData:
    train, test = (fetch("oxford_iiit_pet", tvd.OxfordIIITPet, data_root, split=s) for s in ("trainval", "test"))
    (train_x, train_y), (test_x, test_y) = internals.image_files(train), internals.image_files(test)
    return RawData(ImageFiles(train_x), torch.tensor(train_y), list(train.classes), ImageFiles(test_x),
                   torch.tensor(test_y))


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
                           download=Download(("cifar-10-batches-py",), ".", (tvd.CIFAR10.url,)), colour=True),
    "cifar100": DatasetSpec(_cifar("cifar100", tvd.CIFAR100), 100,
                            download=Download(("cifar-100-python",), ".", (tvd.CIFAR100.url,)), colour=True),
    "svhn": DatasetSpec(load_svhn, 10, hflip=False, colour=True,
                        download=Download(tuple(v[1] for k, v in tvd.SVHN.split_list.items() if k != "extra"), ".",
                                          tuple(v[0] for k, v in tvd.SVHN.split_list.items() if k != "extra"))),
    "stl10": DatasetSpec(load_stl10, 10, download=Download(("stl10_binary",), ".", (tvd.STL10.url,)), colour=True),
    "flowers102": DatasetSpec(load_flowers102, 102, download=Download(
        ("flowers-102",), "flowers-102", internals.download_urls(tvd.Flowers102)), colour=True),
    "oxford_iiit_pet": DatasetSpec(load_oxford_iiit_pet, 37, download=Download(
        ("oxford-iiit-pet",), "oxford-iiit-pet", internals.download_urls(tvd.OxfordIIITPet)), colour=True),
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


def _check_classes(name: str, spec: DatasetSpec, side: str, classes: tuple[int, ...] | None) -> None:
    unknown = sorted(c for c in classes or () if not 0 <= c < spec.num_classes)
    if unknown:
        raise ValueError(
            f"{side} {unknown} not in {name}, which has {spec.num_classes} classes "
            f"(0..{spec.num_classes - 1}); set source_classes and target_classes in the study's "
            "TrialConfig, or --source-classes / --target-classes (None or 'all' means all classes)"
        )
    n_classes = len(set(classes)) if classes is not None else spec.num_classes
    if n_classes < 2:
        chosen = f"{side} {list(classes)}" if classes is not None else f"{name}, which has one class"
        raise ValueError(f"{chosen}: a classifier needs at least 2 classes; choose two or more "
                         f"(a folder dataset needs a subfolder per class)")


def check_data(cfg: TrialConfig) -> None:
    """Fail before a study writes anything: the datasets must exist, be readable and have the classes `cfg`
    names, for the target and (with weights=source) the source task."""
    target = dataset_spec(cfg.dataset)
    _check_classes(cfg.dataset, target, "target_classes", cfg.target_classes)
    names = [cfg.dataset]
    if weights_kind(cfg.weights) == "source":
        source_name = cfg.source_dataset or cfg.dataset
        try:
            source = target if source_name == cfg.dataset else dataset_spec(source_name)
        except ValueError as error:
            raise ValueError(f"source_dataset: {error}") from None
        _check_classes(source_name, source, "source_classes", cfg.source_classes)
        names.append(source_name)
        if source_name == cfg.dataset:
            # the source task splits its own pool: shared classes would put target val/test images in pretraining
            every = range(target.num_classes)
            shared = sorted(set(every if cfg.source_classes is None else cfg.source_classes)
                            & set(every if cfg.target_classes is None else cfg.target_classes))
            if shared:
                raise ValueError(f"source_classes and target_classes share {shared}: with weights=source the "
                                 "pretraining would see the target's validation and test images; make them "
                                 "disjoint, or pretrain on another dataset (source_dataset)")
    for name in dict.fromkeys(names):
        if name.startswith(FOLDER):
            check_images(name.removeprefix(FOLDER))


def check_images(path: str) -> None:
    """Every image file of a folder dataset decodes whole, or the first broken one is named: before a study writes
    anything, not in the first run of every worker (`harness.learn.images.check_files`)."""
    pool, held_out, classes = folder_layout(path)
    files, _ = _image_list(pool + ([held_out] if held_out else []), classes, require_all=False)
    check_files(path, files)


@functools.lru_cache(maxsize=4)
def load_raw(name: str, data_root: str) -> RawData:
    return dataset_spec(name).load(data_root)

