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
    _param_figures,
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
    groups = {"data": (_data_figures, (data, out)), "search": (_search_figures, (data, palette, out, False)),
              "params": (_param_figures, (data, palette, out)), "confirm": (_confirm_figures, (data, palette, out))}
    drawn = {name: draw(*args) for name, (draw, args) in groups.items()}
    return [figure for name in ("data", "search", "params", "confirm") for figure in drawn[name]]
