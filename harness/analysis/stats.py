"""Statistics behind a report: per-arm summaries, comparisons (t intervals and t-tests from one procedure,
Holm-adjusted over the study's family with matching intervals), chance-level and trend checks, expected max
over budget (Dodge et al. 2019), and the verdict sentences.

Why t and not the bootstrap: with 3-10 seeds a bootstrap interval of a mean covers the truth 71-90% of the
time instead of 95%; the t interval holds its level, and its test is the same computation, so a verdict's
interval and p-value cannot disagree.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
from scipy import stats

ALPHA = 0.05  # family-wise significance level of the verdicts
TIE = 1e-12  # spreads/differences below this are float noise, not signal (scores are O(1))

ArmValues = Mapping[int, float] | Sequence[float]  # seed -> value, or plain values


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
        half = stats.t.ppf(1 - (1 - np.asarray(confidence)) / 2, df) * se
        p = 2 * stats.t.sf(np.abs(estimate) / se, df)
    constant = se <= TIE
    half = np.where(constant, 0.0, half)
    p = np.where(constant, np.where(np.abs(estimate) <= TIE, 1.0, 0.0), p)
    too_few = ~(df >= 1)
    half, p = np.where(too_few, np.inf, half), np.where(too_few, 1.0, p)
    return TTest(estimate, estimate - half, estimate + half, p)


def paired_t(d: np.ndarray, confidence: float = 0.95) -> TTest:
    """Paired t of per-seed differences d (last axis = seeds): mean difference, its interval and p."""
    d = np.asarray(d, dtype=float)
    n = d.shape[-1]
    sd = np.std(d, axis=-1, ddof=1) if n > 1 else np.zeros(d.shape[:-1])
    return t_test(np.mean(d, axis=-1), sd / np.sqrt(n), np.full(sd.shape, n - 1.0), confidence)


def welch_t(x: np.ndarray, y: np.ndarray, confidence: float = 0.95) -> TTest:
    """Welch's unequal-variance t of mean(x) - mean(y) (last axis = seeds), Welch-Satterthwaite df."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    nx, ny = x.shape[-1], y.shape[-1]
    if nx < 2 or ny < 2:  # no variance estimate in one arm
        diff = np.mean(x, axis=-1) - np.mean(y, axis=-1)
        return t_test(diff, np.ones_like(diff), np.zeros_like(diff), confidence)
    vx, vy = np.var(x, axis=-1, ddof=1) / nx, np.var(y, axis=-1, ddof=1) / ny
    with np.errstate(divide="ignore", invalid="ignore"):
        df = (vx + vy) ** 2 / (vx**2 / (nx - 1) + vy**2 / (ny - 1))
    df = np.where(vx + vy <= TIE**2, nx + ny - 2.0, df)  # both constant: df is 0/0, and unused
    return t_test(np.mean(x, axis=-1) - np.mean(y, axis=-1), np.sqrt(vx + vy), df, confidence)


@dataclass(frozen=True)
class Summary:
    """One arm's confirmation test accuracies: count, mean, sd (ddof=1) and t interval of the mean."""

    n: int
    mean: float
    sd: float
    ci_low: float
    ci_high: float


@dataclass(frozen=True)
class Comparison:
    """Arm `a` minus arm `b`: effect with its interval, raw and Holm-adjusted p-values.

    The interval's level is 1 - alpha / multiplier, where multiplier is the factor Holm's procedure applied
    to this comparison's p-value (1 alone; at most the family size, Bonferroni's, for the smallest p). So the
    interval excludes zero exactly when the adjusted p is below alpha: significance, p and interval agree."""

    a: str
    b: str
    diff: float
    ci_low: float
    ci_high: float
    p_value: float
    p_adjusted: float
    paired: bool
    n_a: int
    n_b: int
    alpha: float = ALPHA
    family: int = 1  # comparisons Holm's correction ran over (compare_all sets it)
    multiplier: float = 1.0  # Holm's factor on this p-value; the interval is adjusted to match it

    @property
    def confidence(self) -> float:
        return 1 - self.alpha / self.multiplier

    @property
    def adjusted(self) -> bool:
        return self.family > 1

    @property
    def significant(self) -> bool:
        """The (Holm-adjusted) p-value is below alpha; by construction the interval then excludes zero."""
        return self.p_adjusted < self.alpha


def _finite(values: Sequence[float]) -> np.ndarray:
    v = np.asarray(values, dtype=float).ravel()
    return v[np.isfinite(v)]  # values a caller marks missing (nan) carry no score


def summarize(values: Sequence[float], confidence: float = 0.95) -> Summary:
    """Mean, sd and t interval of one arm's values (nan values are dropped)."""
    v = _finite(values)
    if len(v) == 0:
        raise ValueError("summarize needs at least one finite value")
    sd = float(np.std(v, ddof=1)) if len(v) > 1 else 0.0
    t = t_test(np.mean(v), sd / np.sqrt(len(v)), len(v) - 1.0, confidence)
    return Summary(n=len(v), mean=float(np.mean(v)), sd=sd, ci_low=float(t.low), ci_high=float(t.high))


def _values(x: ArmValues) -> np.ndarray:
    return _finite(list(x.values()) if isinstance(x, Mapping) else x)


def compare(a_name: str, a: ArmValues, b_name: str, b: ArmValues, alpha: float = ALPHA,
            multiplier: float = 1.0) -> Comparison:
    """Compare arm a with arm b (a minus b) at interval level 1 - alpha / multiplier.

    Paired t when both are seed -> value mappings sharing at least two seeds (the same seed fixes data order,
    initialisation and partition, so per-seed differences remove that variance); otherwise Welch's t."""
    shared: list[int] = []
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        shared = sorted(s for s in a.keys() & b.keys() if np.isfinite(a[s]) and np.isfinite(b[s]))
    confidence = 1 - alpha / multiplier
    paired = len(shared) >= 2
    if paired:
        t = paired_t(np.array([a[s] - b[s] for s in shared], float), confidence)
        n_a = n_b = len(shared)
    else:
        xa, xb = _values(a), _values(b)
        if len(xa) == 0 or len(xb) == 0:
            raise ValueError(f"compare needs finite values in both arms ({a_name}: {len(xa)}, {b_name}: {len(xb)})")
        t = welch_t(xa, xb, confidence)
        n_a, n_b = len(xa), len(xb)
    p = float(t.p_value)
    return Comparison(a=a_name, b=b_name, diff=float(t.estimate), ci_low=float(t.low), ci_high=float(t.high),
                      p_value=p, p_adjusted=p, paired=paired, n_a=n_a, n_b=n_b, alpha=alpha, multiplier=multiplier)


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


def compare_all(pairs: Sequence[tuple[str, str]], values: Mapping[str, ArmValues],
                alpha: float = ALPHA) -> list[Comparison]:
    """compare() every (a, b) pair, Holm-adjust the p-values over all pairs (the family), and recompute each
    interval at the level matching its Holm factor, so that interval and adjusted p agree."""
    raw = [compare(a, values[a], b, values[b], alpha) for a, b in pairs]
    adjusted, factors = holm([c.p_value for c in raw]), holm_multipliers([c.p_value for c in raw])
    out = []
    for c, p, factor in zip(raw, adjusted, factors, strict=True):
        matched = compare(c.a, values[c.a], c.b, values[c.b], alpha, factor)
        out.append(replace(matched, p_adjusted=p, family=len(pairs)))
    return out


def above_chance(values: Sequence[float], chance: float, margin: float = 0.0, alpha: float = ALPHA) -> bool:
    """True when the mean of `values` is significantly above chance + margin (one-sided t at alpha).

    With one value there is no test: it must itself exceed chance + margin."""
    v = _finite(values)
    if len(v) < 2 or np.ptp(v) <= TIE:
        return bool(len(v) and np.mean(v) > chance + margin)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return bool(stats.ttest_1samp(v, chance + margin, alternative="greater").pvalue < alpha)


@dataclass(frozen=True)
class Trend:
    """Least-squares slope of value on position, with its t interval and p (scipy.stats.linregress)."""

    slope: float
    low: float
    high: float
    p_value: float
    n: int


def trend(x: Sequence[float], y: Sequence[float], confidence: float = 0.95) -> Trend:
    """Slope of y on x over all (x, y) points (one per seed and arm); n < 3 gives no interval."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(x) < 3 or np.ptp(x) <= TIE:
        return Trend(np.nan, -np.inf, np.inf, 1.0, len(x))
    fit = stats.linregress(x, y)
    t = t_test(fit.slope, fit.stderr, len(x) - 2.0, confidence)
    return Trend(float(fit.slope), float(t.low), float(t.high), float(t.p_value), len(x))


def _expected_max_weights(n_values: int, n_max: int) -> np.ndarray:
    """W[n-1, i] = F(v_i)^n - F(v_{i-1})^n for the sorted sample, F(v_i) = i/N (Dodge et al. 2019)."""
    cdf = np.arange(n_values + 1) / n_values  # F(v_0) = 0, ..., F(v_N) = 1
    powers = cdf[None, :] ** np.arange(1, n_max + 1)[:, None]
    return np.diff(powers, axis=1)


def expected_max(values: Sequence[float], n_max: int | None = None) -> np.ndarray:
    """Expected best score after n = 1..n_max i.i.d. trials drawn from the observed trials' empirical
    distribution (Dodge et al. 2019, "Show Your Work"). nan values are dropped first: the caller decides
    what a pruned or failed trial scored (see harness.analysis.records.budget_values)."""
    v = np.sort(_finite(values))
    if len(v) == 0:
        raise ValueError("expected_max needs at least one finite value")
    n_max = len(v) if n_max is None else n_max
    return _expected_max_weights(len(v), n_max) @ v


def expected_max_band(values: Sequence[float], n_max: int | None = None, confidence: float = 0.95,
                      n_resamples: int = 1000, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(curve, low, high): expected_max with a percentile band from bootstrap-resampling the trials."""
    v = _finite(values)
    curve = expected_max(v, n_max)
    idx = np.random.default_rng(seed).integers(0, len(v), size=(n_resamples, len(v)))
    resampled = np.sort(v[idx], axis=1)
    # The weights depend only on ranks, so every resample shares them: one matrix product.
    curves = resampled @ _expected_max_weights(len(v), len(curve)).T
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(curves, [tail, 100 - tail], axis=0)
    return curve, low, high


def _format_p(p: float) -> str:
    if p < 0.001:
        return "< 0.001"
    return f"= {p:.3f}" if p < 0.01 else f"= {p:.2f}"


def interval_text(c: Comparison, low: float, high: float, decimals: int = 1) -> str:
    """'95% CI 1.1 to 5.0', with ', Holm-adjusted over m comparisons' when the level was raised for a family."""
    text = f"{c.confidence * 100:.3g}% CI {low:.{decimals}f} to {high:.{decimals}f}"
    return f"{text}, Holm-adjusted over {c.family} comparisons" if c.adjusted else text


def verdict(c: Comparison, budget: str = "", metric: str = "test accuracy", unit_scale: float = 100.0,
            unit: str = "points") -> str:
    """One sentence for the report, from the numbers: the budget it holds at, the effect with its interval
    and p. `budget` is e.g. "20 trials per arm, 5 seeds"; the winner is named with a positive effect."""
    diff, low, high = (x * unit_scale for x in (c.diff, c.ci_low, c.ci_high))
    width = high - low
    # Enough decimals that the CI shows about two significant digits (1 for accuracy in points).
    decimals = 1 if not np.isfinite(width) or width <= 0 else int(np.clip(1 - np.floor(np.log10(width)), 1, 6))

    def f(x: float) -> str:
        return f"{x:.{decimals}f}"

    at = f"At this budget ({budget})" if budget else "At this budget"
    if not (np.isfinite(low) and np.isfinite(high)):
        return (f"{at}, no verdict: {c.a} - {c.b} = {f(diff)} {unit} of {metric}, but too few seeds "
                f"(n = {min(c.n_a, c.n_b)}) for an interval; rerun with --seeds 3 or more.")
    p_text = f"{'Holm-adjusted p' if c.adjusted else 'p'} {_format_p(c.p_adjusted)}"
    if not c.significant:
        return (f"{at}, no significant difference: {c.a} - {c.b} = {f(diff)} {unit} of {metric} "
                f"({interval_text(c, low, high, decimals)}; {p_text}).")
    if diff > 0:
        winner, loser, effect, lo, hi = c.a, c.b, diff, low, high
    else:
        winner, loser, effect, lo, hi = c.b, c.a, -diff, -high, -low
    return (f"{at}, {winner} beats {loser} by {f(effect)} {unit} of {metric} "
            f"({interval_text(c, lo, hi, decimals)}; {p_text}).")
