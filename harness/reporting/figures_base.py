"""The figures' shared parts: data and entry types, palette, house style, captions, and the dataset figures
(sample grid, class counts). Accuracies come in as fractions and are drawn in percent."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, never a window

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib import ticker

DPI = 110
PERCENT = 100.0
ACC = "accuracy (%)"
STATE_MARKERS = {"complete": "o", "pruned": "X"}  # failed trials have no score and are not drawn
MAX_CLASSES_SHOWN = 10  # sample grid rows: beyond this, a grid is unreadable
Colour = tuple[float, float, float]
Palette = Mapping[str, Colour]


@dataclass(frozen=True)
class Figure:
    """One entry of the report's figure section."""

    title: str
    caption: str
    file: str | None = None  # None: not drawn, and the caption says why


@dataclass(frozen=True)
class FigureData:
    """What the figures show, read from the stores by harness.report. Accuracies are fractions."""

    arms: list[str]  # the study's arm order, which fixes the colours
    sgd_arms: list[str]
    sampler: str
    classes: list[str]
    samples: Mapping[str, np.ndarray]  # <split>_x (N x C x H x W in [0, 1]) and <split>_y
    class_counts: Mapping[str, Sequence[int]]  # split -> images per class
    trials: pd.DataFrame  # finished search trials: arm, state, lr, effective_lr, best_val_acc, wall_seconds
    confirm: pd.DataFrame  # counted confirmation runs: arm, seed, run_id, test_acc
    history: pd.DataFrame  # their val_acc per epoch: arm, seed, epoch, val_acc
    importance: pd.DataFrame  # arm, param, importance
    setting: str | None  # StudySpec.x_axis
    setting_points: pd.DataFrame  # variant, arm, x, mean, ci_low, ci_high
    confusion: Mapping[str, list] | None  # the best confirmation run's confusion.json
    best_run: str  # "arm, seed s: test accuracy x%"
    params: pd.DataFrame = field(default_factory=pd.DataFrame)  # harness.analysis.records.param_frame
    min_importance_trials: int = 10  # importances need this many complete trials
    complete: Mapping[str, int] = field(default_factory=dict)  # complete trials per arm


def arm_palette(arms: Sequence[str]) -> dict[str, Colour]:
    """One colour per arm, in the study's arm order, shared by every figure."""
    colours = sns.color_palette("tab10" if len(arms) <= 10 else "husl", len(arms))  # tab10: distinct hues
    return dict(zip(arms, colours, strict=True))


@contextmanager
def _figure(path: Path, width: float = 6.5, height: float = 4.0, **subplots) -> Iterator[tuple]:
    """A figure in the house style, saved to `path` and closed however the drawing ends."""
    with sns.axes_style("whitegrid"), sns.plotting_context("notebook", font_scale=0.9):
        # constrained layout fits titles, labels and outside legends in one pass; tight_layout followed by a
        # tight bounding box at save measured every tick twice (most of a report's drawing time)
        fig, axes = plt.subplots(figsize=(width, height), layout="constrained", **subplots)
        try:
            yield fig, axes
            fig.savefig(path, dpi=DPI)
        finally:
            plt.close(fig)


@contextmanager
def seeded_jitter(seed: int = 0) -> Iterator[None]:
    """seaborn's strip plots jitter their dots with numpy's global generator: seeded here and put back after,
    so a figure is the same file on every rebuild of the same records."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def log_scale(ax: plt.Axes, which: str = "x") -> None:
    """A log axis with at most five labelled decades and no minor ticks: matplotlib's default labels every
    decade and ticks eight minor values in each, and measuring those labels was half a report's drawing."""
    getattr(ax, f"set_{which}scale")("log")
    axis = getattr(ax, f"{which}axis")
    axis.set_major_locator(ticker.LogLocator(numticks=5))
    axis.set_minor_locator(ticker.NullLocator())


def _legend_outside(ax: plt.Axes, title: str | None = None) -> None:
    if ax.get_legend() is not None:
        sns.move_legend(ax, "upper left", bbox_to_anchor=(1.02, 1), title=title, frameon=False)


def _present(palette: Palette, arms: pd.Series) -> list[str]:
    return [a for a in palette if a in set(arms)]


def _mosaic(images: np.ndarray, rows: list[np.ndarray], per_class: int, pad: int) -> np.ndarray:
    """One split's images as a classes x per_class tile (H x W x C in [0, 1]), white where images lack."""
    _, c, h, w = images.shape
    tile = np.ones((len(rows) * (h + pad), per_class * (w + pad), c), dtype=np.float32)
    for r, chosen in enumerate(rows):
        for j, index in enumerate(chosen[:per_class]):
            top, left = r * (h + pad), j * (w + pad)
            tile[top : top + h, left : left + w] = images[index].transpose(1, 2, 0)
    return tile


def sample_grid(samples: Mapping[str, np.ndarray], classes: Sequence[str], path: Path,
                per_class: int = 4) -> Path:
    """Rows are classes, column groups are splits; drawn as one image, fast and sharp at any size."""
    splits = [k.removesuffix("_x") for k in samples if k.endswith("_x")]
    shown = range(min(len(classes), MAX_CLASSES_SHOWN))
    h = samples[f"{splits[0]}_x"].shape[-2]
    pad = max(1, h // 16)
    chosen = {s: [np.flatnonzero(samples[f"{s}_y"] == c) for c in shown] for s in splits}
    tiles = [_mosaic(samples[f"{s}_x"], chosen[s], per_class, pad) for s in splits]
    gap = np.ones((tiles[0].shape[0], 3 * pad, tiles[0].shape[2]), dtype=np.float32)
    canvas = np.concatenate([part for tile in tiles for part in (tile, gap)][:-1], axis=1)
    grey, group = canvas.shape[2] == 1, tiles[0].shape[1] + gap.shape[1]
    with _figure(path, 0.7 * per_class * len(splits) + 1.2, 0.7 * len(shown) + 0.7) as (_, ax):
        ax.imshow(canvas[..., 0] if grey else canvas, cmap="gray" if grey else None, vmin=0, vmax=1,
                  interpolation="nearest")
        ax.set_xticks([i * group + tiles[0].shape[1] / 2 for i in range(len(splits))], splits)
        ax.set_yticks([(r + 0.5) * (h + pad) for r in shown], [f"class {classes[c]}" for c in shown])
        ax.xaxis.tick_top()
        ax.tick_params(length=0)
        ax.grid(False)
        ax.spines[:].set_visible(False)
        ax.set_title(f"{per_class} sample images per class and split", pad=24)
    return path


def class_counts(counts: Mapping[str, Sequence[int]], classes: Sequence[str], path: Path) -> Path:
    """Images per class in each split (grouped bars, one grey per split)."""
    rows = [(split, str(classes[i]), n) for split, ns in counts.items() for i, n in enumerate(ns)]
    frame = pd.DataFrame(rows, columns=["split", "class", "images"])
    with _figure(path, max(5.0, 0.45 * len(classes) * len(counts) + 2), 3.5) as (_, ax):
        sns.barplot(frame, x="class", y="images", hue="split", palette="Greys_r", edgecolor="black", ax=ax)
        ax.set(xlabel="class", ylabel="images (count)", title="class counts per split")
        _legend_outside(ax, "split")
    return path


# --- the report's figure section -------------------------------------------------------------------

CAPTIONS = {  # file -> (title, caption)
    "samples.png": ("Sample images", "A few images per class from each split, before normalisation."),
    "class_counts.png": ("Class counts", "Images per class in each split."),
    "expected_max.png": (
        "Expected best validation accuracy vs budget",
        ("Expected maximum validation accuracy after n trials (Dodge et al. 2019, as the unbiased estimator: "
         "subsets of n of the observed trials, drawn without replacement), counting every trial the budget paid "
         "for: a pruned trial at the best validation accuracy it reached before pruning, a diverged one at 0. "
         "Left against trials, right against the epochs they cost (pruned trials cost less). The median pruner "
         "makes trials not quite exchangeable, so with pruning on read the curves as indicative. No band: from "
         "one search per arm a bootstrap band covered 52-90% of the time instead of 95%."),
    ),
    "val_acc_vs_lr.png": (
        "Validation accuracy vs learning rate",
        "Each search trial's best validation accuracy; pruned trials (x) show their best before pruning.",
    ),
    "val_acc_vs_effective_lr.png": (
        "SGD: validation accuracy vs effective learning rate",
        "Li et al. 2020: at equal lr / (1 - momentum), momentum 0 and 0.9 should perform alike.",
    ),
    "acc_vs_wall_time.png": (
        "Accuracy vs wall time",
        "Each search trial's best validation accuracy against its wall time; pruned trials (x) stop early.",
    ),
    "importances.png": (
        "Hyperparameter importance",
        ("Optuna's fANOVA importance per arm, from its complete trials only ({counts}); arms with fewer "
        "than {minimum} complete trials are left out: fANOVA on fewer ranks noise."),
    ),
    "test_acc.png": (
        "Confirmation test accuracy",
        ("Each arm's best configuration rerun over seeds and scored once on the held-out test split: "
         "box over seeds, one dot per seed."),
    ),
    "learning_curves.png": (
        "Learning curves",
        "Validation accuracy per epoch of the confirmation runs: mean across seeds, band ± 1 sd.",
    ),
    "test_acc_vs_setting.png": (
        "Test accuracy vs {setting}",
        ("Mean and 95% t CI per arm; one line per variant (arms with the same optimizer, strategy "
         "and other fixed settings), colours marking variants, not arms; an arm without the setting is a "
         "dashed reference line."),
    ),
    "slices.png": (
        "Each searched hyperparameter's effect",
        ("Per arm, each search trial's validation accuracy against each parameter it searched (pruned "
         "trials, x, at their best before pruning): what a value gave, with the other parameters varying."),
    ),
    "pairs.png": (
        "Two hyperparameters together",
        "Per arm, its two {why} against each other; colour: validation accuracy.",
    ),
    "confusion.png": (
        "Confusion matrix of the best model",
        "The confirmation run with the highest test accuracy ({best_run}).",
    ),
}


def _shown(file: str, saved_as: str | None = None, **fill: str) -> Figure:
    title, caption = CAPTIONS[file]
    return Figure(title.format(**fill), caption.format(**fill), saved_as or file)


def _data_figures(data: FigureData, out: Path) -> list[Figure]:
    shown = []
    if data.samples and data.classes:
        sample_grid(data.samples, data.classes, out / "samples.png")
        shown.append(_shown("samples.png"))
    if data.class_counts and data.classes:
        class_counts(data.class_counts, data.classes, out / "class_counts.png")
        shown.append(_shown("class_counts.png"))
    return shown
