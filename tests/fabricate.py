"""Tiny datasets written to disk in the formats the harness reads: folders of PNGs, MNIST's raw idx files, and
CIFAR-10/100, STL-10, Flowers102 and Oxford-IIIT Pets as torchvision's downloads leave them.

The images are scikit-learn's handwritten digits (real data, no download), upscaled and, for RGB, coloured.
Run as a script to write a digits image folder for a study: `python tests/fabricate.py /tmp/imgs`.
"""

from __future__ import annotations

import struct
import sys
from pathlib import Path

import numpy as np
from PIL import Image


def digits(per_class: int | None = None, classes: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """(images N x 8 x 8 uint8 0..255, labels): the first `per_class` digits of each of the first `classes`."""
    from sklearn.datasets import load_digits

    data = load_digits()
    keep = np.concatenate([np.flatnonzero(data.target == c)[:per_class] for c in range(classes)])
    return (data.images[keep] * (255 / 16)).round().astype(np.uint8), data.target[keep]


def picture(digit: np.ndarray, size: tuple[int, int], rgb: bool, rng: np.random.Generator) -> Image.Image:
    """One digit upscaled to `size` (width, height); in RGB, a random bright ink on a random dark ground."""
    grey = Image.fromarray(digit, mode="L").resize(size, Image.Resampling.BILINEAR)
    if not rgb:
        return grey
    ink, ground = rng.uniform(0.6, 1.0, 3), rng.uniform(0.0, 0.3, 3)
    level = np.asarray(grey, dtype=np.float64)[..., None] / 255
    return Image.fromarray((255 * (ground + level * (ink - ground))).round().astype(np.uint8), mode="RGB")


def write_folder(folder: Path, images: np.ndarray, labels: np.ndarray, rgb: bool = True,
                 sizes: tuple[int, int] = (32, 32), seed: int = 0) -> Path:
    """`folder/<class>/<i>.png`, each image of a random width and height in `sizes` (inclusive)."""
    rng = np.random.default_rng(seed)
    for i, (digit, label) in enumerate(zip(images, labels, strict=True)):
        w, h = rng.integers(sizes[0], sizes[1] + 1, 2)
        (folder / f"class_{label}").mkdir(parents=True, exist_ok=True)
        picture(digit, (int(w), int(h)), rgb, rng).save(folder / f"class_{label}" / f"{i:05d}.png")
    return folder


def half_written_jpeg(path: Path) -> Path:
    """A real JPEG cut to half its bytes, as an interrupted copy leaves it: its structure still verifies, and
    only decoding its pixels shows the cut."""
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _idx(path: Path, array: np.ndarray) -> None:
    """MNIST's idx format: magic (0, 0, uint8 type 0x08, number of dimensions), big-endian sizes, the bytes."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def write_mnist(root: Path, train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray],
                folder: str = "MNIST") -> Path:
    """`root/<folder>/raw/` as torchvision's MNIST (or FashionMNIST) leaves it after download: 28x28 images."""
    raw = root / folder / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, (images, labels) in (("train", train), ("t10k", test)):
        big = np.stack([np.asarray(Image.fromarray(d).resize((28, 28), Image.Resampling.BILINEAR)) for d in images])
        _idx(raw / f"{prefix}-images-idx3-ubyte", big)
        _idx(raw / f"{prefix}-labels-idx1-ubyte", labels)
    return raw


# --- torchvision's own layouts, as each dataset's download leaves it (checksums aside: tests stand in for them) ---


def _rgb(n: int, size: int, seed: int) -> np.ndarray:
    """n coloured digits, N x size x size x 3 uint8, cycling through the ten digits."""
    images, _ = digits(per_class=max(1, n // 10 + 1))
    rng = np.random.default_rng(seed)
    return np.stack([np.asarray(picture(images[i % len(images)], (size, size), True, rng)) for i in range(n)])


def write_cifar(root: Path, classes: int, per_class: int) -> Path:
    """root/cifar-10-batches-py (classes 10) or root/cifar-100-python (100): pickled uint8 rows of 32x32 RGB."""
    import pickle

    cifar10 = classes == 10
    folder = root / ("cifar-10-batches-py" if cifar10 else "cifar-100-python")
    folder.mkdir(parents=True, exist_ok=True)
    key = "labels" if cifar10 else "fine_labels"
    names = ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch"] \
        if cifar10 else ["train", "test"]
    for i, name in enumerate(names):
        labels = np.repeat(np.arange(classes), per_class if name != "test_batch" and name != "test" else 2)
        data = _rgb(len(labels), 32, i).transpose(0, 3, 1, 2).reshape(len(labels), -1)
        (folder / name).write_bytes(pickle.dumps({"data": data, key: labels.tolist()}))
    meta = {"label_names" if cifar10 else "fine_label_names": [f"class {c}" for c in range(classes)]}
    (folder / ("batches.meta" if cifar10 else "meta")).write_bytes(pickle.dumps(meta))
    return folder


def write_stl10(root: Path, per_class: int) -> Path:
    """root/stl10_binary: 96x96 RGB images column-major, labels 1..10, class_names.txt."""
    folder = root / "stl10_binary"
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", per_class), ("test", 2)):
        labels = np.repeat(np.arange(10), n)
        images = _rgb(len(labels), 96, 0).transpose(0, 3, 2, 1)  # channels, then columns: STL-10's byte order
        (folder / f"{split}_X.bin").write_bytes(np.ascontiguousarray(images).tobytes())
        (folder / f"{split}_y.bin").write_bytes((labels + 1).astype(np.uint8).tobytes())
    (folder / "unlabeled_X.bin").write_bytes(b"")  # the unlabelled part: present, never read for a labelled split
    (folder / "class_names.txt").write_text("\n".join(f"class {c}" for c in range(10)) + "\n")
    return folder


def write_flowers102(root: Path, per_split: int = 2) -> Path:
    """root/flowers-102: jpg/image_NNNNN.jpg, imagelabels.mat (1..102), setid.mat (trnid, valid, tstid)."""
    from scipy.io import savemat

    folder = root / "flowers-102"
    (folder / "jpg").mkdir(parents=True, exist_ok=True)
    labels = np.repeat(np.arange(1, 103), 3 * per_split)
    for i, image in enumerate(_rgb(len(labels), 24, 1), 1):
        Image.fromarray(image).save(folder / "jpg" / f"image_{i:05d}.jpg")
    ids = np.arange(1, len(labels) + 1).reshape(102, 3, per_split)
    savemat(folder / "imagelabels.mat", {"labels": labels})
    savemat(folder / "setid.mat", {"trnid": ids[:, 0].ravel(), "valid": ids[:, 1].ravel(), "tstid": ids[:, 2].ravel()})
    return folder


def write_pets(root: Path, per_class: int, breeds: int = 37) -> Path:
    """root/oxford-iiit-pet: images/<Breed>_<n>.jpg and annotations/{trainval,test}.txt ("id class species breed")."""
    folder = root / "oxford-iiit-pet"
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "annotations").mkdir(parents=True, exist_ok=True)
    for split, n in (("trainval", per_class), ("test", 2)):
        lines = []
        for b in range(breeds):
            for k in range(n):
                image_id = f"Breed_{b:02d}_{split}{k}"
                Image.fromarray(_rgb(1, 24, b * 100 + k)[0]).save(folder / "images" / f"{image_id}.jpg")
                lines.append(f"{image_id} {b + 1} {1 + b % 2} 1")
        (folder / "annotations" / f"{split}.txt").write_text("\n".join(lines) + "\n")
    return folder


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/imgs")
    images, labels = digits()
    write_folder(out, images, labels, rgb=True, sizes=(28, 48))
    print(f"{len(labels)} coloured digit PNGs in {out}/class_0 .. class_9")
