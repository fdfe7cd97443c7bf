"""The report's seaborn figures: each function takes plain frames, writes one PNG and closes its figure.

Accuracies come in as fractions and are drawn in percent. Arms keep one colour everywhere (`arm_palette`).
"""

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

from harness.stats import expected_max_band

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
    params: pd.DataFrame = field(default_factory=pd.DataFrame)  # harness.records.param_frame
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
        fig, axes = plt.subplots(figsize=(width, height), **subplots)
        try:
            yield fig, axes
            fig.savefig(path, dpi=DPI, bbox_inches="tight")
        finally:
            plt.close(fig)


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


def expected_max_curves(values: Mapping[str, Sequence[float]], palette: Palette, path: Path) -> Path:
    """Expected best validation accuracy after n i.i.d. trials (Dodge et al. 2019), 95% bootstrap band."""
    with _figure(path) as (_, ax):
        for arm, v in values.items():
            curve, low, high = expected_max_band(v)
            n = np.arange(1, len(curve) + 1)
            ax.plot(n, curve * PERCENT, marker=".", color=palette[arm], label=arm)
            ax.fill_between(n, low * PERCENT, high * PERCENT, color=palette[arm], alpha=0.1, linewidth=0)
            for edge in (low, high):  # bands overlap: dotted edges keep each arm's readable
                ax.plot(n, edge * PERCENT, color=palette[arm], linestyle=":", linewidth=1)
        ax.set(xlabel="trials paid for (n)", ylabel=f"expected max validation {ACC}",
               title="expected best validation accuracy vs budget")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.legend()
        _legend_outside(ax, "arm")
    return path


def val_acc_vs(trials: pd.DataFrame, x: str, xlabel: str, title: str, palette: Palette, path: Path,
               log: bool = True) -> Path:
    """Each trial's best validation accuracy against `x`, hue = arm, marker = complete or pruned."""
    frame = trials.assign(acc=trials["best_val_acc"] * PERCENT, state=trials["state"].str.lower())
    with _figure(path) as (_, ax):
        sns.scatterplot(frame, x=x, y="acc", hue="arm", style="state", markers=STATE_MARKERS, palette=palette,
                        hue_order=_present(palette, frame["arm"]), s=45, alpha=0.85, ax=ax)
        ax.set(xscale="log" if log else "linear", xlabel=xlabel, ylabel=f"best validation {ACC}", title=title)
        _legend_outside(ax)
    return path


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
        sns.stripplot(frame, size=6, jitter=0.12, edgecolor="black", linewidth=0.5, ax=ax, **common)
        ax.set(xlabel="arm", ylabel=f"test {ACC}", title="confirmation test accuracy (one dot per seed)")
        if len(order) > 4:
            ax.tick_params(axis="x", labelrotation=30)
    return path


def importances(frame: pd.DataFrame, palette: Palette, path: Path) -> Path:
    """Optuna parameter importances, one panel per arm (its own parameters, largest first), arm colours."""
    arms = _present(palette, frame["arm"])
    cols = min(2, len(arms))
    rows = -(-len(arms) // cols)
    tallest = frame.groupby("arm").size().max()
    with _figure(path, 4.2 * cols, rows * (0.32 * tallest + 1.0), nrows=rows, ncols=cols, sharex=True,
                 squeeze=False) as (fig, axes):
        for ax, arm in zip(axes.flat, arms):
            mine = frame[frame["arm"] == arm].sort_values("importance", ascending=False)
            ax.barh(mine["param"], mine["importance"], color=palette[arm], height=0.6)
            ax.invert_yaxis()
            ax.set_title(arm, color=palette[arm], fontweight="bold")
            ax.set(xlim=(0, 1))
        for ax in axes.flat[len(arms):]:
            ax.set_visible(False)
        for ax in axes[-1]:
            ax.set_xlabel("importance (fraction of the arm's total)")
        fig.suptitle("hyperparameter importance (fANOVA)")
        fig.tight_layout()
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


def _panel_values(rows: pd.DataFrame) -> tuple[pd.Series, list[str] | None]:
    """x values for one parameter: numbers as they are; a categorical's choices as positions 0..k-1."""
    if not rows["categorical"].any():
        return rows["value"].astype(float), None
    choices = list(dict.fromkeys(sorted(rows["value"].astype(str))))
    return rows["value"].astype(str).map({c: i for i, c in enumerate(choices)}), choices


def _param_axis(ax: plt.Axes, rows: pd.DataFrame, param: str, choices: list[str] | None) -> None:
    if choices is not None:
        ax.set_xticks(range(len(choices)), choices)
    elif rows["log"].any():
        ax.set_xscale("log")
    ax.set_xlabel(param + (" (log)" if rows["log"].any() and choices is None else ""))


def slices(params: pd.DataFrame, palette: Palette, path: Path) -> Path:
    """Per arm (rows), validation accuracy against each searched parameter (columns): what each value gave."""
    arms = _present(palette, params["arm"])
    names = {a: list(dict.fromkeys(params.loc[params["arm"] == a, "param"])) for a in arms}
    cols = max(len(v) for v in names.values())
    with _figure(path, 2.7 * cols + 0.8, 2.0 * len(arms) + 0.8, nrows=len(arms), ncols=cols, squeeze=False,
                 sharey=True) as (fig, axes):
        for r, arm in enumerate(arms):
            for c, param in enumerate(names[arm]):
                ax, rows = axes[r, c], params[(params["arm"] == arm) & (params["param"] == param)]
                x, choices = _panel_values(rows)
                for state, marker in STATE_MARKERS.items():
                    chosen = rows["state"].str.lower() == state
                    ax.scatter(x[chosen], rows.loc[chosen, "val_acc"] * PERCENT, marker=marker, s=28, alpha=0.85,
                               color=palette[arm], label=state)
                _param_axis(ax, rows, param, choices)
            axes[r, 0].set_ylabel(f"{arm}\nval {ACC}", color=palette[arm])
            for ax in axes[r, len(names[arm]):]:
                ax.set_visible(False)
        axes[0, 0].legend(fontsize="small", title="trial")
        fig.suptitle("validation accuracy vs each searched hyperparameter, per arm")
        fig.tight_layout()
    return path


def pair_view(params: pd.DataFrame, chosen: Mapping[str, tuple[str, str]], path: Path) -> Path:
    """Per arm, its two chosen parameters against each other, colour = validation accuracy."""
    arms = list(chosen)
    cols = min(3, len(arms))
    n_rows = -(-len(arms) // cols)
    with _figure(path, 3.8 * cols + 0.6, 3.0 * n_rows + 0.6, nrows=n_rows, ncols=cols, squeeze=False) as (fig, axes):
        for ax, arm in zip(axes.flat, arms):
            mine, (px, py) = params[params["arm"] == arm], chosen[arm]
            x_rows, y_rows = (mine[mine["param"] == p].set_index("number") for p in (px, py))
            both = x_rows.index.intersection(y_rows.index)
            (x, x_choices), (y, y_choices) = (_panel_values(r.loc[both]) for r in (x_rows, y_rows))
            dots = ax.scatter(x, y, c=x_rows.loc[both, "val_acc"] * PERCENT, cmap="viridis", s=40,
                              edgecolor="black", linewidth=0.4)
            _param_axis(ax, x_rows, px, x_choices)
            if y_choices is not None:
                ax.set_yticks(range(len(y_choices)), y_choices)
            elif y_rows["log"].any():
                ax.set_yscale("log")
            ax.set_ylabel(py)
            ax.set_title(arm, fontsize="medium")
            fig.colorbar(dots, ax=ax, label=f"val {ACC}")
        for ax in axes.flat[len(arms):]:
            ax.set_visible(False)
        fig.tight_layout()
    return path


# --- the report's figure section -------------------------------------------------------------------

CAPTIONS = {  # file -> (title, caption)
    "samples.png": ("Sample images", "A few images per class from each split, before normalisation."),
    "class_counts.png": ("Class counts", "Images per class in each split."),
    "expected_max.png": (
        "Expected best validation accuracy vs budget",
        ("Expected maximum validation accuracy after n trials (Dodge et al. 2019), counting every trial the "
         "budget paid for: a pruned trial at the best validation accuracy it reached before pruning, a diverged "
         "one at 0; shaded between dotted lines: 95% bootstrap band over trials."),
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


def _budget_figure(data: FigureData, scored: pd.DataFrame, palette: Palette, out: Path) -> Figure:
    title = CAPTIONS["expected_max.png"][0]
    if data.sampler not in ("qmc", "random"):
        return Figure(title, f"Not drawn: the {data.sampler} sampler's trials are not i.i.d., so the "
                             "expected maximum over n trials (Dodge et al. 2019) does not apply.")
    paid = data.trials[data.trials["budget_value"].notna()]
    values = {a: paid.loc[paid["arm"] == a, "budget_value"].to_list() for a in _present(palette, paid["arm"])}
    if not values:
        return Figure(title, "Not drawn: no finished trials.")
    expected_max_curves(values, palette, out / "expected_max.png")
    return _shown("expected_max.png")


def _search_figures(data: FigureData, palette: Palette, out: Path) -> list[Figure]:
    trials = data.trials
    scored = trials[trials["state"].isin(["COMPLETE", "PRUNED"]) & trials["best_val_acc"].notna()]
    shown = [_budget_figure(data, scored, palette, out)]
    if scored["lr"].notna().any():
        val_acc_vs(scored, "lr", "learning rate (log)", "validation accuracy vs learning rate", palette,
                   out / "val_acc_vs_lr.png")
        shown.append(_shown("val_acc_vs_lr.png"))
    sgd = scored[scored["arm"].isin(data.sgd_arms) & scored["lr"].notna()]
    if not sgd.empty:
        val_acc_vs(sgd, "effective_lr", "effective learning rate lr / (1 - momentum) (log)",
                   "SGD: validation accuracy vs effective learning rate", palette,
                   out / "val_acc_vs_effective_lr.png")
        shown.append(_shown("val_acc_vs_effective_lr.png"))
    if scored["wall_seconds"].notna().any():
        val_acc_vs(scored, "wall_seconds", "wall time per trial (s)", "validation accuracy vs cost per trial",
                   palette, out / "acc_vs_wall_time.png", log=False)
        shown.append(_shown("acc_vs_wall_time.png"))
    if not data.importance.empty:
        importances(data.importance, palette, out / "importances.png")
        counts = ", ".join(f"{a} {n}" for a, n in data.complete.items() if a in set(data.importance["arm"]))
        shown.append(_shown("importances.png", counts=counts, minimum=str(data.min_importance_trials)))
    return shown + _param_figures(data, palette, out)


def _two_params(data: FigureData, arm: str) -> tuple[tuple[str, str], bool] | None:
    """The arm's two most important parameters (fANOVA), else its first two searched; None if fewer."""
    mine = data.importance[data.importance["arm"] == arm].sort_values("importance", ascending=False)
    if len(mine) >= 2:
        return (mine["param"].iloc[0], mine["param"].iloc[1]), True
    searched = list(dict.fromkeys(data.params.loc[data.params["arm"] == arm, "param"]))
    return ((searched[0], searched[1]), False) if len(searched) >= 2 else None


def _param_figures(data: FigureData, palette: Palette, out: Path) -> list[Figure]:
    if data.params.empty:
        return []
    slices(data.params, palette, out / "slices.png")
    shown = [_shown("slices.png")]
    picks = {a: p for a in _present(palette, data.params["arm"]) if (p := _two_params(data, a))}
    if picks:
        pair_view(data.params, {a: p for a, (p, _) in picks.items()}, out / "pairs.png")
        ranked = [a for a, (_, by_importance) in picks.items() if by_importance]
        why = ("most important parameters by fANOVA" if len(ranked) == len(picks) else
               "most important parameters by fANOVA where an arm has enough complete trials "
               f"({', '.join(ranked) or 'none'}), else its first two searched ones")
        shown.append(_shown("pairs.png", why=why))
    return shown


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


def draw_all(data: FigureData, out: Path) -> list[Figure]:
    """Draw every figure the data allows into `out`; the list says what was drawn, and why not otherwise."""
    palette = arm_palette(data.arms)
    search, confirm = _search_figures(data, palette, out), _confirm_figures(data, palette, out)
    return _data_figures(data, out) + search + confirm
