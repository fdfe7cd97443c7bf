"""Whether a target's images are in colour: the registry says for its datasets, a sample of a folder's images is
looked at (grey stored as RGB is grey). A model that takes one channel then keeps the colour (its first
convolution widened: `harness.learn.weights.widen_input`) unless the study asks for grey."""

from __future__ import annotations

import functools

import numpy as np
from PIL import Image

from harness.learn.datasets import FOLDER, _image_list, dataset_spec, folder_layout

COLOUR_SPREAD = 12  # mean max-minus-min channel value (of 255) above which an image carries colour
COLOUR_SAMPLE = 40  # images looked at


@functools.lru_cache(maxsize=8)
def in_colour(path: str) -> bool:
    """Whether most of a sample of a folder's images carry colour (not grey stored as RGB)."""
    pool, held_out, classes = folder_layout(path)
    files, _ = _image_list(pool + ([held_out] if held_out else []), classes, require_all=False)
    step = max(1, len(files) // COLOUR_SAMPLE)
    spreads = []
    for file in files[::step][:COLOUR_SAMPLE]:
        with Image.open(file) as image:
            rgb = np.asarray(image.convert("RGB").resize((32, 32)), dtype=np.int16)
        spreads.append(float((rgb.max(axis=2) - rgb.min(axis=2)).mean()))
    return bool(spreads) and float(np.median(spreads)) > COLOUR_SPREAD


def dataset_in_colour(name: str) -> bool:
    """Whether a dataset's images are in colour: the registry says, a folder's images are looked at."""
    return in_colour(name.removeprefix(FOLDER)) if name.startswith(FOLDER) else dataset_spec(name).colour
