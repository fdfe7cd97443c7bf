"""The statistical building blocks of a report: t intervals and tests (one computation, so an interval and its
p-value cannot disagree), per-arm summaries, Holm's correction with the factor it applied to each p, and the
expected best score over a search budget (Dodge et al. 2019). `harness.inference.decide` decides declared
comparisons with them; `harness.inference.failures` handles runs that failed to train.

Why t and not the bootstrap: with 3-10 seeds a bootstrap interval of a mean covers the truth 71-90% of the
time instead of 95%; the t interval holds its level (tests/test_simulation.py measures it under normal,
skewed-to-ceiling and collapse-mixture seed distributions).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import special

ALPHA = 0.05  # family-wise significance level of the verdicts
TIE = 1e-12  # spreads/differences below this are float noise, not signal (scores are O(1))



@dataclass(frozen=True)
class TTest:
    """A t-based estimate: point, interval at `confidence`, two-sided p-value. Fields may be arrays."""

    estimate: np.ndarray | float
    low: np.ndarray | float
    high: np.ndarray | float
    p_value: np.ndarray | float


def t_test(estimate: np.ndarray, se: np.ndarray, df: np.ndarray, confidence: float | np.ndarray = 0.95) -> TTest:
    """Interval estimate ± t_{df}(1 - (1 - confidence) / 2) * se and the two-sided p of estimate = 0.

    Vectorised over arrays. A zero standard error (every value equal) gives the point interval and p = 0 or
    1; df < 1 (fewer than two values) gives an unbounded interval and p = 1: no evidence either way."""
    estimate, se, df = np.broadcast_arrays(*(np.asarray(x, dtype=float) for x in (estimate, se, df)))
    with np.errstate(divide="ignore", invalid="ignore"):
        # scipy.special's t functions: the same values as scipy.stats.t, a hundred times faster per call
        half = special.stdtrit(df, 1 - (1 - np.asarray(confidence)) / 2) * se
        p = 2 * special.stdtr(df, -np.abs(estimate) / se)
    constant = se <= TIE
    half = np.where(constant, 0.0, half)
    p = np.where(constant, np.where(np.abs(estimate) <= TIE, 1.0, 0.0), p)
    too_few = ~(df >= 1)
    half, p = np.where(too_few, np.inf, half), np.where(too_few, 1.0, p)
    return TTest(estimate, estimate - half, estimate + half, p)


@dataclass(frozen=True)
class Summary:
    """One arm's confirmation test accuracies: count, mean, sd (ddof=1) and t interval of the mean."""

    n: int
    mean: float
    sd: float
    ci_low: float
    ci_high: float


def _finite(values: Sequence[float]) -> np.ndarray:
    v = np.asarray(values, dtype=float).ravel()
    return v[np.isfinite(v)]  # values a caller marks missing (nan) carry no score


def summarize(values: Sequence[float], confidence: float = 0.95, bounds: tuple[float, float] = (0.0, 1.0)) -> Summary:
    """Mean, sd and t interval of one arm's values (nan values are dropped), the interval cut to `bounds`
    (accuracies lie in [0, 1]; cutting never lowers coverage). One value: no interval (±inf)."""
    v = _finite(values)
    if len(v) == 0:
        raise ValueError("summarize needs at least one finite value")
    sd = float(np.std(v, ddof=1)) if len(v) > 1 else 0.0
    t = t_test(np.mean(v), sd / np.sqrt(len(v)), len(v) - 1.0, confidence)
    low, high = float(t.low), float(t.high)
    if np.isfinite(low):
        low, high = max(low, bounds[0]), min(high, bounds[1])
    return Summary(n=len(v), mean=float(np.mean(v)), sd=sd, ci_low=low, ci_high=high)


def _holm_uncapped(p: np.ndarray) -> np.ndarray:
    m = len(p)
    order = np.argsort(p, kind="stable")
    stepped = np.maximum.accumulate((m - np.arange(m)) * p[order])
    out = np.empty(m)
    out[order] = stepped
    return out


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni step-down adjusted p-values (Holm 1979): the k-th smallest p is multiplied by
    (m - k + 1), made monotone non-decreasing in that order and capped at 1. Returned in input order."""
    return np.minimum(_holm_uncapped(np.asarray(p_values, dtype=float)), 1.0).tolist()


def holm_multipliers(p_values: Sequence[float]) -> list[float]:
    """The factor Holm's procedure applied to each p (uncapped adjusted p / raw p), between 1 and m."""
    p = np.asarray(p_values, dtype=float)
    m = len(p)
    with np.errstate(divide="ignore", invalid="ignore"):
        factor = np.where(p > 0, _holm_uncapped(p) / p, m)
    return np.clip(factor, 1.0, m).tolist()


def _expected_max_weights(n_values: int, n_max: int) -> np.ndarray:
    """W[n-1, i] = C(i, n-1) / C(N, n): the chance that the i-th smallest of N values (0-based) is the largest
    of a random subset of n of them, drawn without replacement."""
    i, n = np.arange(n_values)[None, :], np.arange(1, n_max + 1)[:, None]
    log_w = special.gammaln(i + 1) - special.gammaln(n) - special.gammaln(i - n + 2) \
        - (special.gammaln(n_values + 1) - special.gammaln(n + 1) - special.gammaln(n_values - n + 1))
    return np.where(i >= n - 1, np.exp(np.where(i >= n - 1, log_w, 0.0)), 0.0)


def expected_max(values: Sequence[float], n_max: int | None = None) -> np.ndarray:
    """Expected best score after n = 1..n_max trials (Dodge et al. 2019, "Show Your Work"), as the unbiased
    U-statistic: the mean over every subset of n of the N observed trials of its best value (drawn without
    replacement; n_max <= N). Dodge et al.'s with-replacement formula reads low by 1-3 points at n = N. Valid
    for i.i.d. trials (random or quasi-random search). nan values are dropped first: the caller decides what a
    pruned or failed trial scored (see harness.analysis.records.budget_values)."""
    v = np.sort(_finite(values))
    if len(v) == 0:
        raise ValueError("expected_max needs at least one finite value")
    n_max = len(v) if n_max is None else min(n_max, len(v))
    return _expected_max_weights(len(v), n_max) @ v


SMALL_VALIDATION = 5  # validation images per class below which trials cannot be ranked (warned, and reported)


def small_validation(images: int, classes: int) -> str | None:
    """What a validation split too small to rank trials means (the search and the selection seeds rank by it), or
    None; said by the command line before a run and by the report after it.

    >>> small_validation(4, 3)[:70]
    'the validation split holds 4 images for 3 classes, so validation accur'
    >>> small_validation(150, 5) is None
    True
    """
    if images >= SMALL_VALIDATION * classes:
        return None
    return (f"the validation split holds {images} images for {classes} classes, so validation accuracy moves in "
            f"steps of {100 / max(images, 1):.0f} points: the search and the choice among its best trials cannot "
            "rank trials closer than that")
