"""Deciding a declared family of comparisons (harness.analysis_plan) from per-seed accuracies: one t procedure per
comparison, Holm's correction over the whole family, an interval at the level that matches each comparison's
Holm factor (so interval and adjusted p always agree), the decision the interval supports, and the power it had.

Decisions, by kind (m the margin, CI the interval at the comparison's level):
- difference, interaction: "a > b" / "a < b" when CI excludes 0 (two-sided);
- non-inferiority: "shown" when CI's low end > -m (one-sided at alpha / 2, as non-inferiority trials test);
  "refuted" when its high end < -m;
- equivalence: TOST at alpha: "shown" when the (1 - 2 alpha) CI lies inside ±m; "refuted" when the (1 - alpha)
  CI lies wholly outside (either side of ±m may be crossed, so each side gets alpha / 2);
- trend: the per-seed slope per step; "shown" when CI lies on the declared side of 0, "refuted" on the other.
Each comparison's p-value (raw_p) tests whatever it decides, refutations included, so every decision is inside
Holm's family-wise error control.

The values are the study's declared endpoint (harness.ledger.VerdictResults.values): every verdict run, a run that
failed to train scored (endpoint "all"), or the runs that trained ("trained"). Where a run of a declared pair
failed, the pair's failure rates are a claim of their own in the same Holm family (`RateClaim`); they never
change what a comparison decides.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import optimize, stats

from harness.analysis_plan import Declared, Difference, Equivalent, Interaction, NonInferior, Trend, with_margin
from harness.inference.failures import RateClaim, fisher_p, rate_pairs
from harness.inference.kinds import interval_for, level, raw_p
from harness.inference.searches import over_searches, searched
from harness.inference.stats import ALPHA, TIE, holm, holm_multipliers, t_test

Values = Mapping[int, float]  # seed -> accuracy
POWER = 0.8
SKEWED = 1.0  # |skewness| of the per-seed contrasts above which a decision is flagged: the t level may not hold


@dataclass(frozen=True)
class Estimate:
    """An effect with its standard error and degrees of freedom, from `n` seeds (paired) or arms (Welch)."""

    value: float
    se: float
    df: float
    n: int
    paired: bool
    searches: int = 1  # > 1: the mean of per-search estimates, its se and df over searches (inference.searches)
    skew: float = np.nan  # the sample skewness (g1) of the per-seed contrasts; nan unpaired or all equal

    @property
    def unit_sd(self) -> float:
        """The sd of one seed's contribution: what more seeds would divide by sqrt(n)."""
        return self.se * np.sqrt(self.n)


def _shared(arms: Sequence[Values]) -> list[int]:
    common = set.intersection(*(set(v) for v in arms))
    return sorted(s for s in common if all(np.isfinite(v[s]) for v in arms))


def _mean_se(x: np.ndarray) -> tuple[float, float]:
    sd = float(np.std(x, ddof=1)) if len(x) > 1 else 0.0
    return float(np.mean(x)), sd / np.sqrt(len(x))


def _per_seed(x: np.ndarray) -> Estimate:
    """A one-sample t over per-seed contrasts, with their skewness: the t level leans on their symmetry."""
    mean, se = _mean_se(x)
    d = x - mean
    m2 = float(d @ d) / len(x)
    skew = float((d * d) @ d) / len(x) / m2**1.5 if m2 > TIE**2 else np.nan
    return Estimate(mean, se, len(x) - 1.0, len(x), True, skew=skew)


def paired_or_welch(a: Values, b: Values) -> Estimate | None:
    """a - b: paired over the seeds both have (two or more), else Welch; None when an arm has no value."""
    shared = _shared([a, b])
    if len(shared) >= 2:
        return _per_seed(np.array([a[s] - b[s] for s in shared]))
    xa = np.array([v for v in a.values() if np.isfinite(v)])
    xb = np.array([v for v in b.values() if np.isfinite(v)])
    if len(xa) == 0 or len(xb) == 0:
        return None
    (ma, sa), (mb, sb) = _mean_se(xa), _mean_se(xb)
    return _combine(ma - mb, [(sa, len(xa) - 1.0), (sb, len(xb) - 1.0)], min(len(xa), len(xb)), False)


def _combine(value: float, parts: list[tuple[float, float]], n: int, paired: bool) -> Estimate:
    """se = sqrt(sum se_i^2), Welch-Satterthwaite df; any part with df < 1 leaves no variance estimate."""
    se = float(np.sqrt(sum(s**2 for s, _ in parts)))
    if any(df < 1 for _, df in parts):
        return Estimate(value, se, 0.0, n, paired)
    denominator = sum(s**4 / df for s, df in parts)
    df = se**4 / denominator if denominator > 0 else sum(df for _, df in parts)
    return Estimate(value, se, float(df), n, paired)


def interaction(first: tuple[Values, Values], second: tuple[Values, Values]) -> Estimate | None:
    """(a - b) - (c - d): per seed where all four arms share seeds, else the two differences combined."""
    shared = _shared([*first, *second])
    if len(shared) >= 2:
        (a, b), (c, d) = first, second
        return _per_seed(np.array([(a[s] - b[s]) - (c[s] - d[s]) for s in shared]))
    one, two = paired_or_welch(*first), paired_or_welch(*second)
    if one is None or two is None:
        return None
    return _combine(one.value - two.value, [(one.se, one.df), (two.se, two.df)], min(one.n, two.n), False)


def slope(arms: Sequence[Values]) -> Estimate | None:
    """The least-squares slope of accuracy on position (one step per arm), per seed, over the seeds every arm
    has: a paired linear contrast, so seed-to-seed variance cancels as in a paired difference."""
    shared = _shared(arms)
    if len(shared) < 2:
        return None
    positions = np.arange(len(arms)) - (len(arms) - 1) / 2
    y = np.array([[v[s] for v in arms] for s in shared])
    return _per_seed(y @ positions / np.sum(positions**2))


def _power_one_sided(delta: float, se: float, df: float, critical: float) -> float:
    return float(stats.nct.sf(critical, df, delta / se))


def detectable(se: float, df: float, alpha_one_sided: float, power: float = POWER) -> float:
    """The true effect, in se units times se, that a one-sided t test at `alpha_one_sided` detects with
    `power` (noncentral t). inf without a variance estimate."""
    if df < 1 or not np.isfinite(se):
        return np.inf
    if se <= TIE:
        return 0.0
    critical = stats.t.ppf(1 - alpha_one_sided, df)
    high = se * (critical + stats.norm.ppf(power) + 1)
    while _power_one_sided(high, se, df, critical) < power:  # heavy tails at df 1-2 need far more than a z
        high *= 2
    return float(optimize.brentq(lambda d: _power_one_sided(d, se, df, critical) - power, 0.0, high))


_CHI = np.linspace(0.0025, 0.9975, 200)  # quantiles of the chi-square over which TOST's power is averaged


def tost_power(delta: float, se: float, df: float, alpha_one_sided: float, margin: float) -> float:
    """P(both one-sided tests reject) at true difference `delta`: the estimate must fall inside
    ±(margin - t * se_hat), where se_hat varies as sqrt(chi2_df / df); exact up to the quadrature."""
    if df < 1:
        return 0.0
    critical = stats.t.ppf(1 - alpha_one_sided, df)
    se_hat = se * np.sqrt(stats.chi2.ppf(_CHI, df) / df)
    half = np.maximum(margin - critical * se_hat, 0.0)
    inside = stats.norm.cdf((half - delta) / se) - stats.norm.cdf((-half - delta) / se)
    return float(np.mean(np.where(half > 0, inside, 0.0)))


def mde(c: Declared, e: Estimate, multiplier: float, alpha: float = ALPHA) -> float:
    """The minimum detectable effect at 80% power, at this comparison's level and seeds:
    - difference, interaction, trend: the smallest |effect| decided (two-sided, alpha / k);
    - non-inferiority: the smallest a - b at which non-inferiority is shown (one-sided alpha / 2k);
    - equivalence: the largest |a - b| at which equivalence is shown (0: not even at a true 0)."""
    if isinstance(c, Equivalent):
        if e.df < 1 or not np.isfinite(e.se):
            return -np.inf
        if e.se <= TIE:
            return c.margin
        level_ = alpha / multiplier
        if tost_power(0.0, e.se, e.df, level_, c.margin) < POWER:
            return 0.0
        return float(optimize.brentq(lambda d: tost_power(d, e.se, e.df, level_, c.margin) - POWER, 0.0, c.margin))
    d = detectable(e.se, e.df, alpha / (2 * multiplier))
    return d - c.margin if isinstance(c, NonInferior) else d


def seeds_needed(c: Declared, e: Estimate, multiplier: float, margin: float, alpha: float = ALPHA,
                 cap: int = 10_000) -> int | None:
    """Seeds at which this comparison, with the sd it showed, would decide the declared margin with 80%
    power: a difference of `margin` detected; non-inferiority or equivalence shown when the truth is 0. None
    without a variance estimate; cap + 1 when beyond the cap."""
    sd = e.unit_sd
    if e.df < 1 or not np.isfinite(sd) or e.searches > 1:  # over searches, seeds do not shrink the search part
        return None
    if sd <= TIE:
        return e.n

    def enough(n: int) -> bool:
        se, df = sd / np.sqrt(n), n - 1.0
        if isinstance(c, Equivalent):
            return tost_power(0.0, se, df, alpha / multiplier, c.margin) >= POWER
        reach = detectable(se, df, alpha / (2 * multiplier))
        return reach <= (c.margin if isinstance(c, NonInferior) else margin)

    if not enough(cap):
        return cap + 1
    low, high = 2, cap  # enough() is monotone in n: bisect
    while low < high:
        mid = (low + high) // 2
        low, high = (low, mid) if enough(mid) else (mid + 1, high)
    return low


@dataclass(frozen=True)
class Decision:
    declared: Declared
    estimate: Estimate | None  # None: an arm has no trained run to compare
    p_value: float
    p_adjusted: float
    multiplier: float
    family: int
    confidence: float
    low: float
    high: float
    outcome: str  # see outcome(); "no data" without an estimate
    mde: float
    seeds_needed: int | None
    steps: tuple[tuple[str, str, float, float, float], ...] = ()  # trend: (from, to, change, low, high)

    @property
    def decided(self) -> bool:
        return self.outcome not in ("undecided", "no data")

    @property
    def skewed(self) -> bool:
        """The per-seed contrasts are skewed past SKEWED: a t interval's level leans on their symmetry."""
        return self.estimate is not None and abs(self.estimate.skew) > SKEWED


Failures = Mapping[str, tuple[int, int]]  # arm -> (seeds that failed to train, seeds run)


def estimate_for(c: Declared, values: Mapping[str, Values]) -> Estimate | None:
    if any(searched(values[a]) for a in c.arms):  # (search, seed) keys: estimated within each search, then over them
        return over_searches(lambda *v: estimate_for(c, dict(zip(c.arms, v, strict=True))), [values[a] for a in c.arms])
    if isinstance(c, Interaction):
        return interaction((values[c.first[0]], values[c.first[1]]), (values[c.second[0]], values[c.second[1]]))
    if isinstance(c, Trend):
        return slope([values[a] for a in c.arms])
    return paired_or_welch(values[c.a], values[c.b])


def _steps(c: Trend, values: Mapping[str, Values], alpha: float,
           levels: Callable[[float], float] | None = None) -> tuple:
    """Each adjacent step of a trend at Bonferroni level over the steps: monotone when every step's interval
    lies on the declared side (an intersection-union test needs no correction for that claim); a step whose
    interval lies on the other side reverses it."""
    out = []
    for left, right in zip(c.arms, c.arms[1:], strict=False):
        e = estimate_for(Difference(right, left), values)
        if e is None:
            continue
        rate = alpha / (len(c.arms) - 1)
        t = t_test(e.value, e.se, e.df, 1 - (rate if levels is None else levels(rate)))
        out.append((left, right, e.value, float(t.low), float(t.high)))
    return tuple(out)


@dataclass(frozen=True)
class Judged:
    """A family judged: the declared comparisons' decisions, and the failure-rate claims tested beside them."""

    decisions: list[Decision]
    rates: list[RateClaim]


def decide_all(family: Sequence[Declared], values: Mapping[str, Values], margin: float,
               alpha: float = ALPHA, power: bool = True,
               levels: Callable[[float], float] | None = None, failures: Failures | None = None) -> list[Decision]:
    """The declared comparisons' decisions (`decide_family`'s, its failure-rate claims left aside)."""
    return decide_family(family, values, margin, alpha, power, levels, failures).decisions


def decide_family(family: Sequence[Declared], values: Mapping[str, Values], margin: float,
                  alpha: float = ALPHA, power: bool = True, levels: Callable[[float], float] | None = None,
                  failures: Failures | None = None, pairs: Sequence[tuple[str, str]] | None = None) -> Judged:
    """Decide every declared comparison on `values`, Holm-corrected over the whole family (a comparison without
    data stays in the family at p = 1: nothing leaves it). `power=False` skips the MDE and seeds needed (nan,
    None): the decisions are the same, and simulations run thousands of them. `levels` maps each
    comparison's error rate to a sequential look's nominal one (harness.inference.sequential).

    With `failures`, each declared pair (`pairs`: by default `rate_pairs(family)`) both arms of which ran and
    some run of which failed to train is also a claim that one arm fails more often (Fisher's exact test,
    conditional on the failures seen, so valid however many there were), in the same Holm family. The claim
    is reported beside the comparisons; it never decides one of them."""
    family = [with_margin(c, margin) for c in family]
    estimates = [estimate_for(c, values) for c in family]
    p = [1.0 if e is None else raw_p(c, e) for c, e in zip(family, estimates, strict=True)]
    counted = [] if failures is None else [(a, b, failures.get(a, (0, 0)), failures.get(b, (0, 0)))
                                           for a, b in (rate_pairs(family) if pairs is None else pairs)]
    counted = [(a, b, ca, cb) for a, b, ca, cb in counted if ca[1] and cb[1] and ca[0] + cb[0]]
    all_p = p + [fisher_p(ca, cb) for *_, ca, cb in counted]
    adjusted, factors = holm(all_p), holm_multipliers(all_p)
    out = []
    # adjusted and factors run on past the family: their tail is the rate claims'
    for c, e, p_raw, p_adj, k in zip(family, estimates, p, adjusted, factors, strict=False):
        steps = _steps(c, values, alpha, levels) if isinstance(c, Trend) else ()
        confidence = level(c, k, alpha, levels)
        if e is None:
            out.append(Decision(c, None, p_raw, p_adj, k, len(all_p), confidence, -np.inf, np.inf, "no data",
                                np.inf, None, steps))
            continue
        confidence, low, high, decided = interval_for(c, e, k, alpha, levels)
        out.append(Decision(c, e, p_raw, p_adj, k, len(all_p), confidence, low, high, decided,
                            mde(c, e, k, alpha) if power else np.nan,
                            seeds_needed(c, e, k, margin, alpha) if power else None, steps))
    rates = []
    for j, (a, b, ca, cb) in enumerate(counted):
        i = len(p) + j
        error = alpha / factors[i]  # two-sided at its own Holm factor: TOST's doubled rate is no rate test's
        rates.append(RateClaim(a, b, (ca, cb), all_p[i], adjusted[i], factors[i], len(all_p),
                               bool(all_p[i] <= (error if levels is None else levels(error)))))
    return Judged(out, rates)
