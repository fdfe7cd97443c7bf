"""The confirmation figures: test accuracy over seeds, learning curves, test accuracy vs the study's setting
and the best run's confusion matrix; `_confirm_figures` draws them."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns

from harness.reporting.figures_base import (
    ACC,
    PERCENT,
    Figure,
    FigureData,
    Palette,
    _figure,
    _legend_outside,
    _present,
    _shown,
    seeded_jitter,
)


def learning_curves(history: pd.DataFrame, palette: Palette, path: Path) -> Path:
    """Validation accuracy per epoch of the confirmation runs: mean line, band = ± 1 sd across seeds."""
    frame = history.assign(acc=history["val_acc"] * PERCENT)
    with _figure(path) as (_, ax):
        sns.lineplot(frame, x="epoch", y="acc", hue="arm", palette=palette, errorbar="sd",
                     hue_order=_present(palette, frame["arm"]), ax=ax)
        ax.set(xlabel="epoch", ylabel=f"validation {ACC}", title="confirmation runs: mean ± sd across seeds")
        ax.xaxis.get_major_locator().set_params(integer=True)
        _legend_outside(ax, "arm")
    return path


def test_accuracy(confirm: pd.DataFrame, palette: Palette, path: Path) -> Path:
    """Confirmation test accuracy per arm: a box over the seeds, with every seed as a dot."""
    frame = confirm.assign(acc=confirm["test_acc"] * PERCENT)
    order = _present(palette, frame["arm"])
    common = {"x": "arm", "y": "acc", "hue": "arm", "order": order, "palette": palette, "legend": False}
    with _figure(path, max(4.5, 1.3 * len(order) + 1.5), 4.0) as (_, ax):
        sns.boxplot(frame, fill=False, saturation=1, showfliers=False, width=0.5, ax=ax, **common)
        with seeded_jitter():
            sns.stripplot(frame, size=6, jitter=0.12, edgecolor="black", linewidth=0.5, ax=ax, **common)
        ax.set(xlabel="arm", ylabel=f"test {ACC}", title="confirmation test accuracy (one dot per seed)")
        if len(order) > 4:
            ax.tick_params(axis="x", labelrotation=30)
    return path


def accuracy_vs_setting(points: pd.DataFrame, setting: str, path: Path) -> Path:
    """Test accuracy (mean, 95% CI) against an arm setting; columns variant, x, mean, ci_low, ci_high.

    Lines are variants (arms equal but for the setting), so colours here mark variants, not arms. A
    variant without the setting (x NaN, e.g. a baseline) is a dashed reference line with its CI band."""
    swept, references = points[points["x"].notna()], points[points["x"].isna()]
    variants = list(swept["variant"].unique())
    colours = dict(zip(variants, sns.color_palette("dark", len(variants)), strict=True))
    steps = np.diff(np.unique(swept["x"]))
    dodge = 0.04 * (steps.min() if len(steps) else 1.0)  # side by side: equal results must not hide
    with _figure(path) as (_, ax):
        for i, (variant, group) in enumerate(swept.sort_values("x").groupby("variant", sort=False)):
            mean = group["mean"] * PERCENT
            err = [mean - group["ci_low"] * PERCENT, group["ci_high"] * PERCENT - mean]
            ax.errorbar(group["x"] + (i - (len(variants) - 1) / 2) * dodge, mean, yerr=err, capsize=4,
                        marker="osD^v<>"[i % 7], color=colours[variant], label=variant)
        greys = sns.color_palette("Greys_r", len(references) + 2)
        for grey, ref in zip(greys, references.itertuples()):
            ax.axhline(ref.mean * PERCENT, color=grey, linestyle="--", label=f"{ref.variant} (no {setting})")
            ax.axhspan(ref.ci_low * PERCENT, ref.ci_high * PERCENT, color=grey, alpha=0.12, linewidth=0)
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
                    xticklabels=classes, yticklabels=classes, ax=ax,
                    cbar_kws={"label": "test images (count)"})
        ax.set(xlabel="predicted class", ylabel="true class")
        ax.set_title(title, fontsize="medium")
        ax.tick_params(axis="y", labelrotation=0)
    return path


# --- the report's figure section -------------------------------------------------------------------

def _confirm_figures(data: FigureData, palette: Palette, out: Path) -> list[Figure]:
    if data.confirm.empty:
        return [Figure("Confirmation runs", "Not drawn: no arm has confirmation runs yet.")]
    test_accuracy(data.confirm, palette, out / "test_acc.png")
    shown = [_shown("test_acc.png")]
    if not data.history.empty:
        learning_curves(data.history, palette, out / "learning_curves.png")
        shown.append(_shown("learning_curves.png"))
    if data.setting and not data.setting_points.empty:
        file = f"test_acc_vs_{data.setting}.png"
        accuracy_vs_setting(data.setting_points, data.setting, out / file)
        shown.append(_shown("test_acc_vs_setting.png", file, setting=data.setting))
    if data.confusion:
        confusion([str(c) for c in data.confusion["classes"]], data.confusion["matrix"], data.best_run,
                  out / "confusion.png")
        shown.append(_shown("confusion.png", best_run=data.best_run))
    return shown
