"""Statistics behind an optimizer-comparison report: per-arm summaries, pairwise comparisons with
bootstrap CIs and Holm-adjusted p-values, expected-max-over-budget curves, and the verdict sentences."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
from scipy import stats

ALPHA = 0.05  # significance level used by Comparison.significant
MIN_BOOTSTRAP_N = 3  # fewer values per sample give no bootstrap interval (reported as unbounded)
TIE = 1e-12  # spreads/differences below this are float noise, not signal (scores are O(1))

ArmValues = Mapping[int, float] | Sequence[float]  # seed -> value, or plain values


@dataclass(frozen=True)
class Summary:
    """One arm's confirmation test accuracies: count, mean, sd (ddof=1) and bootstrap CI of the mean."""

    n: int
    mean: float
    sd: float
    ci_low: float
    ci_high: float


@dataclass(frozen=True)
class Comparison:
    """Arm `a` minus arm `b`: effect size with bootstrap CI, p-values and P(A > B)."""

    a: str
    b: str
    diff: float
    ci_low: float
    ci_high: float
    p_value: float
    p_adjusted: float
    prob_a_beats_b: float
    paired: bool
    n_a: int
    n_b: int
    confidence: float = 0.95
    family: int = 1  # comparisons Holm's correction ran over (compare_all sets it)

    @property
    def significant(self) -> bool:
        """True iff the CI excludes 0 AND the (Holm-adjusted) p-value is below 0.05.

        Both must agree: the bootstrap CI and the t-test are different approximations, and with a
        handful of seeds we would rather say "no significant difference" than overclaim."""
        return (self.ci_low > 0 or self.ci_high < 0) and self.p_adjusted < ALPHA


def _finite(values: Sequence[float]) -> np.ndarray:
    v = np.asarray(values, dtype=float).ravel()
    return v[np.isfinite(v)]  # failed runs are recorded as nan; they carry no score


def _is_constant(x: np.ndarray) -> bool:
    return bool(np.ptp(x) <= TIE)


def _bootstrap_ci(
    samples: tuple[np.ndarray, ...],
    statistic: Callable[..., np.ndarray],
    confidence: float,
    n_resamples: int,
    seed: int,
) -> tuple[float, float]:
    """Bootstrap CI of `statistic`: BCa, else percentile, else the degenerate [point, point]."""
    point = float(statistic(*samples, axis=-1))
    if any(len(s) < MIN_BOOTSTRAP_N for s in samples):
        return -np.inf, np.inf  # resampling one or two values only re-reads them: no interval, not [min, max]
    if all(_is_constant(s) for s in samples):
        return point, point  # every resample gives the same statistic
    for method in ("BCa", "percentile"):
        # BCa is better calibrated but returns nan / warns on near-degenerate data: treat that as failure.
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            try:
                res = stats.bootstrap(
                    samples, statistic, n_resamples=n_resamples, vectorized=True, paired=False,
                    confidence_level=confidence, method=method, rng=np.random.default_rng(seed),
                )
            except (Warning, ValueError):
                continue
        low, high = res.confidence_interval
        if np.isfinite(low) and np.isfinite(high):
            return float(low), float(high)
    return -np.inf, np.inf  # no method gave an interval: claim none rather than a zero-width one


def _mean(x: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(x, axis=axis)


def _mean_diff(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(x, axis=axis) - np.mean(y, axis=axis)


def summarize(
    values: Sequence[float], confidence: float = 0.95, n_resamples: int = 10_000, seed: int = 0
) -> Summary:
    """Mean, sd and bootstrap CI of one arm's values (nan values, i.e. failed runs, are dropped)."""
    v = _finite(values)
    if len(v) == 0:
        raise ValueError("summarize needs at least one finite value")
    sd = float(np.std(v, ddof=1)) if len(v) > 1 else 0.0
    low, high = _bootstrap_ci((v,), _mean, confidence, n_resamples, seed)
    return Summary(n=len(v), mean=float(np.mean(v)), sd=sd, ci_low=low, ci_high=high)


def _constant_p(diff: float) -> float:
    # Zero variance: the t statistic is 0/0 (no difference) or +-inf (a perfectly consistent one).
    return 1.0 if abs(diff) <= TIE else 0.0


def compare(
    a_name: str,
    a: ArmValues,
    b_name: str,
    b: ArmValues,
    confidence: float = 0.95,
    n_resamples: int = 10_000,
    seed: int = 0,
) -> Comparison:
    """Compare arm a with arm b (a minus b).

    Paired when both are seed -> value mappings sharing at least two seeds: the same seed fixes
    data order and initialisation, so per-seed differences remove that variance (bootstrap of the
    mean difference, paired t-test). Otherwise unpaired: independent bootstrap of the difference in
    means and Welch's t-test. p_adjusted equals p_value here; compare_all applies Holm."""
    shared: list[int] = []
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        shared = sorted(s for s in a.keys() & b.keys() if np.isfinite(a[s]) and np.isfinite(b[s]))
    paired = len(shared) >= 2
    if paired:
        xa, xb = np.array([a[s] for s in shared], float), np.array([b[s] for s in shared], float)
        d = xa - xb
        diff = float(np.mean(d))
        low, high = _bootstrap_ci((d,), _mean, confidence, n_resamples, seed)
        p = _constant_p(diff) if _is_constant(d) else float(stats.ttest_rel(xa, xb).pvalue)
        prob = float(np.mean((d > 0) + 0.5 * (d == 0)))
        n_a = n_b = len(d)
    else:
        xa = _finite(list(a.values()) if isinstance(a, Mapping) else a)
        xb = _finite(list(b.values()) if isinstance(b, Mapping) else b)
        if len(xa) == 0 or len(xb) == 0:
            raise ValueError(f"compare needs finite values in both arms ({a_name}: {len(xa)}, {b_name}: {len(xb)})")
        diff = float(np.mean(xa) - np.mean(xb))
        low, high = _bootstrap_ci((xa, xb), _mean_diff, confidence, n_resamples, seed)
        if len(xa) < 2 or len(xb) < 2:
            p = 1.0  # Welch needs a variance estimate in each arm: no evidence either way
        elif _is_constant(xa) and _is_constant(xb):
            p = _constant_p(diff)
        else:
            p = float(stats.ttest_ind(xa, xb, equal_var=False).pvalue)
        gt = xa[:, None] > xb[None, :]
        eq = xa[:, None] == xb[None, :]
        prob = float(np.mean(gt + 0.5 * eq))  # Mann-Whitney's common-language effect size, ties halved
        n_a, n_b = len(xa), len(xb)
    return Comparison(
        a=a_name, b=b_name, diff=diff, ci_low=low, ci_high=high, p_value=p, p_adjusted=p,
        prob_a_beats_b=prob, paired=paired, n_a=n_a, n_b=n_b, confidence=confidence,
    )


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni step-down adjusted p-values (Holm 1979, "A simple sequentially rejective
    multiple test procedure"): the k-th smallest p is multiplied by (m - k + 1), then made
    monotone non-decreasing in that order and capped at 1. Returned in the input order."""
    p = np.asarray(p_values, dtype=float)
    m = len(p)
    order = np.argsort(p, kind="stable")
    stepped = np.maximum.accumulate((m - np.arange(m)) * p[order])
    adjusted = np.empty(m)
    adjusted[order] = np.minimum(stepped, 1.0)
    return adjusted.tolist()


def compare_all(
    pairs: Sequence[tuple[str, str]],
    values: Mapping[str, ArmValues],
    confidence: float = 0.95,
    n_resamples: int = 10_000,
    seed: int = 0,
) -> list[Comparison]:
    """compare() every (a, b) pair, then Holm-adjust the p-values over all pairs (the family)."""
    comparisons = [compare(a, values[a], b, values[b], confidence, n_resamples, seed) for a, b in pairs]
    adjusted = holm([c.p_value for c in comparisons])
    return [replace(c, p_adjusted=p, family=len(pairs)) for c, p in zip(comparisons, adjusted, strict=True)]


def _expected_max_weights(n_values: int, n_max: int) -> np.ndarray:
    """W[n-1, i] = F(v_i)^n - F(v_{i-1})^n for the sorted sample, F(v_i) = i/N (Dodge et al. 2019)."""
    cdf = np.arange(n_values + 1) / n_values  # F(v_0) = 0, ..., F(v_N) = 1
    powers = cdf[None, :] ** np.arange(1, n_max + 1)[:, None]
    return np.diff(powers, axis=1)


def expected_max(values: Sequence[float], n_max: int | None = None) -> np.ndarray:
    """Expected best score after n = 1..n_max i.i.d. trials drawn from the observed trials' empirical
    distribution (Dodge et al. 2019, "Show Your Work"). nan values (failed trials) are dropped first."""
    v = np.sort(_finite(values))
    if len(v) == 0:
        raise ValueError("expected_max needs at least one finite value")
    n_max = len(v) if n_max is None else n_max
    return _expected_max_weights(len(v), n_max) @ v


def expected_max_band(
    values: Sequence[float],
    n_max: int | None = None,
    confidence: float = 0.95,
    n_resamples: int = 1000,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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


def verdict(c: Comparison, metric: str = "test accuracy", unit_scale: float = 100.0, unit: str = "points") -> str:
    """One sentence for the report, generated from the numbers; the winner is named with a positive effect."""
    diff, low, high = (x * unit_scale for x in (c.diff, c.ci_low, c.ci_high))
    width = high - low
    # Enough decimals that the CI shows about two significant digits (1 for accuracy in points).
    decimals = 1 if not np.isfinite(width) or width <= 0 else int(np.clip(1 - np.floor(np.log10(width)), 1, 6))

    def f(x: float) -> str:
        return f"{x:.{decimals}f}"

    level = f"{c.confidence * 100:g}% CI"
    if not (np.isfinite(low) and np.isfinite(high)):
        return (f"No verdict at this budget: {c.a} - {c.b} = {f(diff)} {unit} of {metric}, but too few seeds "
                f"(n = {min(c.n_a, c.n_b)}) for a {level}; rerun with --seeds 3 or more.")
    p_label = "Holm-adjusted p" if c.family > 1 else "p"
    p_text = f"{p_label} {_format_p(c.p_adjusted)}"
    if not c.significant:
        # the interval alone may exclude zero with few seeds (a bootstrap of 2-3 values is too narrow): say why
        why = "" if low <= 0 <= high else f"; the interval excludes zero but the {p_label} does not support it"
        return (f"No significant difference at this budget: {c.a} - {c.b} = {f(diff)} {unit} of {metric} "
                f"({level} {f(low)} to {f(high)}; {p_text}{why}).")
    if diff > 0:
        winner, loser, effect, lo, hi, prob = c.a, c.b, diff, low, high, c.prob_a_beats_b
    else:
        winner, loser, effect, lo, hi, prob = c.b, c.a, -diff, -high, -low, 1 - c.prob_a_beats_b
    return (f"{winner} beats {loser} by {f(effect)} {unit} of {metric} "
            f"({level} {f(lo)} to {f(hi)}; P({winner} > {loser}) = {prob:.2f}; {p_text}).")
