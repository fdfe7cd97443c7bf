"""Tiny datasets written to disk in the formats the harness reads: folders of PNGs, MNIST's raw idx files.

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


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/imgs")
    images, labels = digits()
    write_folder(out, images, labels, rgb=True, sizes=(28, 48))
    print(f"{len(labels)} coloured digit PNGs in {out}/class_0 .. class_9")
