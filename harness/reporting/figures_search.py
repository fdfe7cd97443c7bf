"""The search figures: expected best accuracy vs budget, validation accuracy vs lr, effective lr and wall
time, parameter importances, per-parameter slices and the two-parameter view; `_search_figures` draws them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from harness.inference.stats import expected_max
from harness.reporting.figures_base import (
    ACC,
    CAPTIONS,
    PERCENT,
    STATE_MARKERS,
    Figure,
    FigureData,
    Palette,
    _figure,
    _legend_outside,
    _present,
    _shown,
    log_scale,
)


def expected_max_curves(values: Mapping[str, Sequence[float]], epochs: Mapping[str, float], palette: Palette,
                        path: Path) -> Path:
    """Expected best validation accuracy after n trials (unbiased, without replacement; Dodge et al. 2019),
    against trials and against the epochs they cost (n times the arm's mean epochs per trial: pruned trials
    cost less). No band: from one search per arm, a bootstrap band covered 52-90% instead of 95%."""
    with _figure(path, 10.0, 4.0, ncols=2) as (_, axes):
        for arm, v in values.items():
            curve = expected_max(v) * PERCENT
            n = np.arange(1, len(curve) + 1)
            axes[0].plot(n, curve, marker=".", color=palette[arm], label=arm)
            axes[1].plot(n * epochs[arm], curve, marker=".", color=palette[arm], label=arm)
        axes[0].set(xlabel="trials paid for (n)", ylabel=f"expected max validation {ACC}",
                    title="expected best validation accuracy vs trials")
        axes[0].xaxis.get_major_locator().set_params(integer=True)
        axes[1].set(xlabel="epochs paid for (n x mean epochs per trial)", title="... vs compute (epochs)")
        axes[1].legend()
        _legend_outside(axes[1], "arm")
    return path


def val_acc_vs(trials: pd.DataFrame, x: str, xlabel: str, title: str, palette: Palette, path: Path,
               log: bool = True) -> Path:
    """Each trial's best validation accuracy against `x`, hue = arm, marker = complete or pruned."""
    frame = trials.assign(acc=trials["best_val_acc"] * PERCENT, state=trials["state"].str.lower())
    with _figure(path) as (_, ax):
        sns.scatterplot(frame, x=x, y="acc", hue="arm", style="state", markers=STATE_MARKERS, palette=palette,
                        hue_order=_present(palette, frame["arm"]), s=45, alpha=0.85, ax=ax)
        ax.set(xlabel=xlabel, ylabel=f"best validation {ACC}", title=title)
        if log:
            log_scale(ax)
        _legend_outside(ax)
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
        log_scale(ax)
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
                log_scale(ax, "y")
            ax.set_ylabel(py)
            ax.set_title(arm, fontsize="medium")
            fig.colorbar(dots, ax=ax, label=f"val {ACC}")
        for ax in axes.flat[len(arms):]:
            ax.set_visible(False)
    return path


# --- the report's figure section -------------------------------------------------------------------

def _budget_figure(data: FigureData, scored: pd.DataFrame, palette: Palette, out: Path) -> Figure:
    title = CAPTIONS["expected_max.png"][0]
    if data.sampler not in ("qmc", "random"):
        return Figure(title, f"Not drawn: the {data.sampler} sampler's trials are not i.i.d., so the "
                             "expected maximum over n trials (Dodge et al. 2019) does not apply.")
    paid = data.trials[data.trials["budget_value"].notna()]
    values = {a: paid.loc[paid["arm"] == a, "budget_value"].to_list() for a in _present(palette, paid["arm"])}
    if not values:
        return Figure(title, "Not drawn: no finished trials.")
    cost = paid.groupby("arm")["epochs_run"].mean().fillna(1.0).to_dict()
    expected_max_curves(values, {a: cost.get(a, 1.0) for a in values}, palette, out / "expected_max.png")
    return _shown("expected_max.png")


def _search_figures(data: FigureData, palette: Palette, out: Path, params: bool = True) -> list[Figure]:
    """The search's figures; `params=False` leaves out the per-parameter ones (`_param_figures`), to draw apart."""
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
    return shown + (_param_figures(data, palette, out) if params else [])


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
