"""The report's seaborn figures, the entry point: `draw_all` draws the figure section from `FigureData`.

Each figure function takes plain frames, writes one PNG and closes it; they live in figures_base (shared
parts, dataset figures), figures_search and figures_confirm, and are all importable from here."""

from __future__ import annotations

from pathlib import Path

from harness.reporting.figures_base import (
    ACC,
    CAPTIONS,
    DPI,
    MAX_CLASSES_SHOWN,
    PERCENT,
    STATE_MARKERS,
    Colour,
    Figure,
    FigureData,
    Palette,
    _data_figures,
    arm_palette,
    class_counts,
    sample_grid,
)
from harness.reporting.figures_confirm import (
    _confirm_figures,
    accuracy_vs_setting,
    confusion,
    learning_curves,
    test_accuracy,
)
from harness.reporting.figures_search import (
    _search_figures,
    expected_max_curves,
    importances,
    pair_view,
    slices,
    val_acc_vs,
)

__all__ = [
    "ACC", "CAPTIONS", "DPI", "MAX_CLASSES_SHOWN", "PERCENT", "STATE_MARKERS", "Colour", "Figure", "FigureData",
    "Palette", "accuracy_vs_setting", "arm_palette", "class_counts", "confusion", "draw_all",
    "expected_max_curves", "importances", "learning_curves", "pair_view", "sample_grid", "slices",
    "test_accuracy", "val_acc_vs",
]


def draw_all(data: FigureData, out: Path) -> list[Figure]:
    """Draw every figure the data allows into `out`; the list says what was drawn, and why not otherwise."""
    palette = arm_palette(data.arms)
    search, confirm = _search_figures(data, palette, out), _confirm_figures(data, palette, out)
    return _data_figures(data, out) + search + confirm
