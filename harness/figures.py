"""The report's seaborn figures: each function takes plain frames, writes one PNG and closes its figure.

Accuracies come in as fractions and are drawn in percent. Arms keep one colour everywhere (`arm_palette`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, never a window

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from harness.stats import expected_max_band

DPI = 110
PERCENT = 100.0
ACC = "accuracy (%)"
STATE_MARKERS = {"COMPLETE": "o", "PRUNED": "X"}  # failed trials have no score and are not drawn
MAX_CLASSES_SHOWN = 10  # sample grid rows: beyond this, a grid is unreadable
Colour = tuple[float, float, float]


def arm_palette(arms: Sequence[str]) -> dict[str, Colour]:
    """One colour per arm, in the study's arm order, shared by every figure."""
    colours = sns.color_palette("colorblind" if len(arms) <= 10 else "husl", len(arms))
    return dict(zip(arms, colours, strict=True))


@contextmanager
def _figure(path: Path, width: float = 6.5, height: float = 4.0, **subplots) -> Iterator[tuple]:
    """A figure in the house style, saved to `path` and closed however the drawing ends."""
    with sns.axes_style("whitegrid"), sns.plotting_context("notebook", font_scale=0.9):
        fig, axes = plt.subplots(figsize=(width, height), **subplots)
        try:
            yield fig, axes
            fig.savefig(path, dpi=DPI, bbox_inches="tight")
        finally:
            plt.close(fig)


def _legend_outside(ax: plt.Axes, title: str | None = None) -> None:
    if ax.get_legend() is not None:
        sns.move_legend(ax, "upper left", bbox_to_anchor=(1.02, 1), title=title, frameon=False)


def sample_grid(samples: Mapping[str, np.ndarray], classes: Sequence[str], path: Path, per_class: int = 4) -> Path:
    """Rows are classes, column groups are splits: `<split>_x` (N x C x H x W in [0, 1]) and `<split>_y`."""
    splits = [k.removesuffix("_x") for k in samples if k.endswith("_x")]
    shown = list(range(min(len(classes), MAX_CLASSES_SHOWN)))
    rows, cols = len(shown), per_class * len(splits)
    with _figure(path, 0.75 * cols + 0.8, 0.8 * rows + 0.6, nrows=rows, ncols=cols, squeeze=False) as (fig, axes):
        for s, split in enumerate(splits):
            x, y = samples[f"{split}_x"], samples[f"{split}_y"]
            for r, c in enumerate(shown):
                chosen = np.flatnonzero(y == c)[:per_class]
                for j in range(per_class):
                    ax = axes[r, s * per_class + j]
                    ax.set_xticks([]), ax.set_yticks([]), ax.grid(False)
                    if j < len(chosen):
                        image = x[chosen[j]]
                        grey = image.shape[0] == 1
                        ax.imshow(image[0] if grey else image.transpose(1, 2, 0), cmap="gray" if grey else None,
                                  vmin=0, vmax=1)
                    if s == 0 and j == 0:
                        ax.set_ylabel(f"class {classes[c]}", rotation=0, ha="right", va="center")
            axes[0, s * per_class].set_title(f"{split}", loc="left", fontweight="bold")
        fig.subplots_adjust(wspace=0.08, hspace=0.08)
    return path


def class_counts(counts: Mapping[str, Sequence[int]], classes: Sequence[str], path: Path) -> Path:
    """Images per class in each split (grouped bars, one colour per split)."""
    frame = pd.DataFrame([(split, str(classes[i]), n) for split, ns in counts.items() for i, n in enumerate(ns)],
                         columns=["split", "class", "images"])
    with _figure(path, max(5.0, 0.45 * len(classes) * len(counts) + 2), 3.5) as (_, ax):
        sns.barplot(frame, x="class", y="images", hue="split", palette="Greys_r", edgecolor="black", ax=ax)
        ax.set(xlabel="class", ylabel="images (count)", title="class counts per split")
        _legend_outside(ax, "split")
    return path


def expected_max_curves(values: Mapping[str, Sequence[float]], palette: Mapping[str, Colour], path: Path) -> Path:
    """Expected best validation accuracy after n i.i.d. trials (Dodge et al. 2019), 95% bootstrap band."""
    with _figure(path) as (_, ax):
        for arm, v in values.items():
            curve, low, high = expected_max_band(v)
            n = np.arange(1, len(curve) + 1)
            ax.plot(n, curve * PERCENT, marker=".", color=palette[arm], label=arm)
            ax.fill_between(n, low * PERCENT, high * PERCENT, color=palette[arm], alpha=0.2, linewidth=0)
        ax.set(xlabel="trials (n, complete only)", ylabel=f"expected max validation {ACC}",
               title="expected best validation accuracy vs budget")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.legend()
        _legend_outside(ax, "arm")
    return path


def val_acc_vs(trials: pd.DataFrame, x: str, xlabel: str, title: str, palette: Mapping[str, Colour],
               path: Path) -> Path:
    """Each trial's best validation accuracy against a (log-scaled) hyperparameter, hue = arm."""
    frame = trials.assign(acc=trials["best_val_acc"] * PERCENT)
    with _figure(path) as (_, ax):
        sns.scatterplot(frame, x=x, y="acc", hue="arm", style="state", markers=STATE_MARKERS, palette=palette,
                        hue_order=[a for a in palette if a in set(frame["arm"])], s=45, alpha=0.85, ax=ax)
        ax.set(xscale="log", xlabel=xlabel, ylabel=f"best validation {ACC}", title=title)
        _legend_outside(ax)
    return path


def accuracy_vs_wall_time(trials: pd.DataFrame, palette: Mapping[str, Colour], path: Path) -> Path:
    return val_acc_vs(trials, "wall_seconds", "wall time per trial (s, log)",
                      "validation accuracy vs cost per trial", palette, path)


def learning_curves(history: pd.DataFrame, palette: Mapping[str, Colour], path: Path) -> Path:
    """Validation accuracy per epoch of the confirmation runs: mean line, band = +-1 sd across seeds."""
    frame = history.assign(acc=history["val_acc"] * PERCENT)
    with _figure(path) as (_, ax):
        sns.lineplot(frame, x="epoch", y="acc", hue="arm", palette=palette, errorbar="sd",
                     hue_order=[a for a in palette if a in set(frame["arm"])], ax=ax)
        ax.set(xlabel="epoch", ylabel=f"validation {ACC}", title="confirmation runs: mean +- sd across seeds")
        ax.xaxis.get_major_locator().set_params(integer=True)
        _legend_outside(ax, "arm")
    return path


def test_accuracy(confirm: pd.DataFrame, palette: Mapping[str, Colour], path: Path) -> Path:
    """Confirmation test accuracy per arm: a box over the seeds, with every seed as a dot."""
    frame = confirm.assign(acc=confirm["test_acc"] * PERCENT)
    order = [a for a in palette if a in set(frame["arm"])]
    with _figure(path, max(4.5, 1.3 * len(order) + 1.5), 4.0) as (_, ax):
        sns.boxplot(frame, x="arm", y="acc", hue="arm", order=order, palette=palette, fill=False,
                    showfliers=False, width=0.5, legend=False, ax=ax)
        sns.stripplot(frame, x="arm", y="acc", hue="arm", order=order, palette=palette, size=6,
                      jitter=0.12, edgecolor="black", linewidth=0.5, legend=False, ax=ax)
        ax.set(xlabel="arm", ylabel=f"test {ACC}", title="confirmation test accuracy (one dot per seed)")
        if len(order) > 4:
            ax.tick_params(axis="x", labelrotation=30)
    return path


def importances(frame: pd.DataFrame, palette: Mapping[str, Colour], path: Path) -> Path:
    """Optuna parameter importances per arm (normalised to sum to 1 within an arm)."""
    params = frame["param"].nunique()
    with _figure(path, 6.5, max(2.5, 0.35 * len(frame) + 1)) as (_, ax):
        sns.barplot(frame, x="importance", y="param", hue="arm", palette=palette,
                    hue_order=[a for a in palette if a in set(frame["arm"])], ax=ax)
        ax.set(xlabel="importance (fraction of the arm's total)", ylabel="hyperparameter",
               title=f"hyperparameter importance ({params} parameters)")
        _legend_outside(ax, "arm")
    return path


def accuracy_vs_setting(points: pd.DataFrame, setting: str, path: Path) -> Path:
    """Test accuracy (mean, 95% CI) against an arm setting; columns variant, x, mean, ci_low, ci_high.

    Lines are variants (arms equal but for the setting), so colours here mark variants, not arms."""
    colours = dict(zip(points["variant"].unique(), sns.color_palette("dark", points["variant"].nunique())))
    with _figure(path) as (_, ax):
        for variant, group in points.sort_values("x").groupby("variant", sort=False):
            mean = group["mean"] * PERCENT
            err = [mean - group["ci_low"] * PERCENT, group["ci_high"] * PERCENT - mean]
            ax.errorbar(group["x"], mean, yerr=err, marker="o", capsize=4, color=colours[variant], label=variant)
        ax.set(xlabel=setting, ylabel=f"test {ACC}, mean and 95% CI", title=f"test accuracy vs {setting}")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.legend()
        _legend_outside(ax, "variant")
    return path


def confusion(classes: Sequence[str], matrix: Sequence[Sequence[int]], title: str, path: Path) -> Path:
    """Counts of true (rows) against predicted (columns) classes."""
    size = min(9.0, 2.5 + 0.5 * len(classes))
    with _figure(path, size + 1.0, size) as (_, ax):
        sns.heatmap(np.asarray(matrix), annot=len(classes) <= 20, fmt="d", cmap="Blues", square=True,
                    xticklabels=classes, yticklabels=classes, cbar_kws={"label": "test images (count)"}, ax=ax)
        ax.set(xlabel="predicted class", ylabel="true class")
        ax.set_title(title, fontsize="medium")
        ax.tick_params(axis="y", labelrotation=0)
    return path

