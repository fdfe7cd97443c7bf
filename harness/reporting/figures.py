"""The report's seaborn figures, the entry point: `draw_all` draws the figure section from `FigureData`.

Each figure function takes plain frames, writes one PNG and closes it; they live in figures_base (shared
parts, dataset figures), figures_search and figures_confirm, and are all importable from here."""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
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


def _warm(out: Path) -> None:
    """Draw and save one small figure here, so the forked children inherit matplotlib's loaded fonts and
    text caches instead of each paying for them (measured: 0.2 s here, 0.7 s off the report's drawing)."""
    from harness.reporting.figures_base import _figure, log_scale

    warm = out / ".warm.png"
    with _figure(warm, 2.0, 2.0) as (_, ax):
        ax.scatter([1e-3, 1e-1], [1.0, 2.0], label="warm")
        log_scale(ax)
        ax.set(title="warm", xlabel="x", ylabel="y")
        ax.legend()
    warm.unlink()


def draw_all(data: FigureData, out: Path, processes: int | None = None) -> list[Figure]:
    """Draw every figure the data allows into `out`; the list says what was drawn, and why not otherwise.

    The groups draw side by side in forked processes, one per usable core (drawing is most of a report's
    time, and each figure is its own file); `processes=1` draws them here, one after another."""
    palette = arm_palette(data.arms)
    groups = {"data": (_data_figures, (data, out)), "search": (_search_figures, (data, palette, out, False)),
              "params": (_param_figures, (data, palette, out)), "confirm": (_confirm_figures, (data, palette, out))}
    processes = processes or min(len(groups), len(os.sched_getaffinity(0)))
    if processes < 2 or "fork" not in multiprocessing.get_all_start_methods():
        drawn = {name: draw(*args) for name, (draw, args) in groups.items()}
    else:  # forked children run no atexit hooks, so the parent's open MLflow run is left alone
        _warm(out)
        # a free process takes the next group, params (the longest) first: for sgd_vs_adam (CPU s in a child: params
        # 1.3, search 0.7, data 0.3, confirm 0.5) one draws params while the other draws the rest, 1.5 s
        # against 1.6 s in the figures' order (data then params in one); slices and pairs as groups of their
        # own measured 1.5 s in the children against 1.3 s together, which undid the finer split's balance
        order = ["params", "search", "data", "confirm"]
        with ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("fork")) as pool:
            jobs = {name: pool.submit(groups[name][0], *groups[name][1]) for name in order}
            drawn = {name: job.result() for name, job in jobs.items()}
    return [figure for name in ("data", "search", "params", "confirm") for figure in drawn[name]]
