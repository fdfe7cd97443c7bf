"""Verdicts over many workloads (a suite), with the workload as the unit: does arm A beat arm B *in general*,
over workloads like these, and does the answer depend on the workload?

A workload is one study's task (model x source -> target x shots x epochs); on it each arm has test accuracies
over seeds. Per comparison A vs B:

- **Probability of improvement** (Agarwal et al. 2021, rliable): on one workload, P(X_A > X_B) for a run of
  each, estimated by the Mann-Whitney statistic U / (n_A n_B) (ties count a half; unbiased for P). Averaged over
  workloads, with a t interval over the workloads' estimates: the workload is the unit, so the interval speaks
  for workloads drawn like these, not only for these (with 5-20 workloads a bootstrap over them covers less than
  it claims, as over seeds: tests/test_aggregate.py measures both coverage and false-positive rate).
- **Heterogeneity**: do the workloads' mean differences differ by more than their noise? The Alexander-Govern
  test (it allows each workload its own noise) gives the p-value; Cochran's Q gives I^2 = max(0, (Q - df) / Q),
  the share of the spread between workloads that is not noise (Higgins and Thompson 2002); the workloads more
  than two standard errors from the pooled difference are named.
- **Normalised scores**: per workload, (accuracy - chance) / (best arm's mean - chance), so workloads of
  different difficulty add up; the interquartile mean of an arm's pooled normalised runs summarises it.

Plain numpy and scipy: nothing here reads a store.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from harness.inference.stats import ALPHA, TIE, t_test


def improvement_probability(a: Sequence[float], b: Sequence[float]) -> float:
    """P(X_A > X_B) for one run of each, ties counted a half: the Mann-Whitney U of A over B / (n_A n_B)."""
    a, b = np.asarray(a, dtype=float)[:, None], np.asarray(b, dtype=float)[None, :]
    if a.size == 0 or b.size == 0:
        return float("nan")
    return float(np.mean((a > b) + 0.5 * (np.abs(a - b) <= TIE)))


@dataclass(frozen=True)
class Improvement:
    """P(A > B) over workloads: the mean of the workloads' estimates, its t interval and the p of P = 0.5."""

    estimate: float
    low: float
    high: float
    p_value: float
    per_workload: dict[str, float]
    clusters: int = 0  # independent units the interval runs over: workloads that share no task


def probability_of_improvement(a: Mapping[str, Sequence[float]], b: Mapping[str, Sequence[float]],
                               confidence: float = 1 - ALPHA, clusters: Mapping[str, str] | None = None,
                               min_units: int = 2) -> Improvement:
    """P(A > B) over the workloads both arms ran (workload -> test accuracies over seeds). The unit is the cluster:
    workloads that share a task (`clusters`: workload -> its cluster; default each its own) are averaged first,
    since their results move together, and the t interval runs over the clusters' means. Fewer than `min_units`
    clusters: the estimate alone (nan interval and p), a statement about these workloads only (a t over a few
    bounded, often bimodal per-workload P's claims an effect 6-9% of the time at 5%: tests/test_aggregate.py)."""
    shared = [w for w in a if w in b and len(a[w]) and len(b[w])]
    per = {w: improvement_probability(a[w], b[w]) for w in shared}
    groups: dict[str, list[float]] = {}
    for w, value in per.items():
        groups.setdefault((clusters or {}).get(w, w), []).append(value)
    values = np.array([np.mean(v) for v in groups.values()])
    n = len(values)
    estimate = float(values.mean()) if n else float("nan")  # the clusters' mean: what the interval is about
    if n < max(min_units, 2):
        return Improvement(estimate, float("nan"), float("nan"), float("nan"), per, n)
    se = values.std(ddof=1) / np.sqrt(n)
    t = t_test(values.mean() - 0.5, se, n - 1, confidence)

    def clip(x: float) -> float:  # a probability: the interval stays inside [0, 1]
        return float(np.clip(x + 0.5, 0.0, 1.0))

    return Improvement(estimate, clip(t.low), clip(t.high), float(t.p_value), per, n)


@dataclass(frozen=True)
class Heterogeneity:
    """Whether A - B depends on the workload: Cochran's Q, its p, I^2, and the workloads furthest out."""

    q: float
    df: int
    p_value: float
    i_squared: float
    pooled: float  # the inverse-variance weighted mean difference
    outliers: tuple[str, ...]  # workloads whose difference is more than two standard errors from the pooled one


def heterogeneity(a: Mapping[str, Sequence[float]], b: Mapping[str, Sequence[float]]) -> Heterogeneity | None:
    """Whether A - B differs between workloads. Each workload's runs are paired by seed (the sequences aligned,
    seed by seed, over their common length). The p-value is the Alexander-Govern test of equal mean differences
    (scipy's `alexandergovern`: workloads may differ in noise); Cochran's Q with inverse-variance weights gives
    I^2 and the pooled difference. Plain Q with variances estimated from 10 seeds claims heterogeneity for one
    common effect 12-15% of the time at the 5% level (measured in tests/test_aggregate.py); this test holds it.
    None with fewer than two workloads of at least two paired seeds."""
    names, samples = [], []
    for w in a:
        n = min(len(a[w]), len(b.get(w, ())))
        if n >= 2:
            names.append(w)
            samples.append(np.asarray(a[w][:n], dtype=float) - np.asarray(b[w][:n], dtype=float))
    if len(samples) < 2:
        return None
    d = np.array([s.mean() for s in samples])
    v = np.array([max(s.var(ddof=1) / len(s), TIE) for s in samples])  # identical runs: tiny, not zero
    weights = 1 / v
    pooled = float(np.sum(weights * d) / weights.sum())
    z = (d - pooled) / np.sqrt(v)
    q, df = float(np.sum(z**2)), len(d) - 1
    if all(s.std() <= TIE for s in samples):  # no noise at all: any difference between workloads is real
        p = 1.0 if np.ptp(d) <= TIE else 0.0
    else:
        # a workload whose differences are all equal has no variance to weigh it by: a float-noise spread stands in
        jittered = [s + TIE * np.arange(len(s)) if s.std() <= TIE else s for s in samples]
        p = float(stats.alexandergovern(*jittered).pvalue)
    return Heterogeneity(q, df, p, max(0.0, (q - df) / q) if q > 0 else 0.0, pooled,
                         tuple(n for n, s in zip(names, z, strict=True) if abs(s) > 2))


def normalised(runs: Mapping[str, Mapping[str, Sequence[float]]], chance: Mapping[str, float]) -> dict[str, dict]:
    """arm -> workload -> normalised scores: (accuracy - chance) / (the best arm's mean - chance) per workload,
    1 the best arm's level, 0 chance. `runs` is arm -> workload -> accuracies."""
    out: dict[str, dict] = {arm: {} for arm in runs}
    workloads = {w for per in runs.values() for w in per}
    for w in workloads:
        best = max(float(np.mean(per[w])) for per in runs.values() if w in per and len(per[w]))
        span = best - chance[w]
        for arm, per in runs.items():
            if w in per and len(per[w]):
                out[arm][w] = (np.asarray(per[w], dtype=float) - chance[w]) / span if span > TIE else \
                    np.full(len(per[w]), np.nan)
    return out


def interquartile_mean(scores: Mapping[str, Sequence[float]]) -> float:
    """The mean of the middle half of every run pooled over workloads (Agarwal et al. 2021): robust to a few
    outlying runs, and uses more of the data than a median."""
    pooled = np.concatenate([np.asarray(s, dtype=float) for s in scores.values()]) if scores else np.array([])
    pooled = pooled[np.isfinite(pooled)]
    return float(stats.trim_mean(pooled, 0.25)) if pooled.size else float("nan")


@dataclass(frozen=True)
class Interval:
    estimate: float
    low: float
    high: float


def iqm_interval(scores: Mapping[str, Sequence[float]], confidence: float = 1 - ALPHA, resamples: int = 2000,
                 seed: int = 0) -> Interval:
    """The interquartile mean of an arm's runs pooled over workloads, with a stratified bootstrap interval
    (Agarwal et al. 2021): each workload's runs are resampled within the workload (scipy's `bootstrap` resamples
    each sample on its own), so every resample keeps every workload. The interval is for these workloads, runs
    drawn again; a workload with one run has no spread of its own to resample and is held fixed."""
    samples = [np.asarray(s, dtype=float)[np.isfinite(s)] for s in scores.values()]
    samples = [s for s in samples if s.size]
    estimate = interquartile_mean(dict(enumerate(samples)))
    if sum(s.size for s in samples) < 4 or all(s.size < 2 for s in samples):
        return Interval(estimate, float("nan"), float("nan"))

    def statistic(*resampled: np.ndarray, axis: int = -1) -> np.ndarray:
        return stats.trim_mean(np.concatenate(resampled, axis=axis), 0.25, axis=axis)

    # Hesterberg's (2015) expanded percentile interval: a bootstrap of n runs spreads like n - 1 of them, and its
    # quantiles are a z's where a t's are due; plain, with 5 seeds a workload it covered 0.87 where it claims 0.95
    # (skewed seed noise; tests/test_aggregate.py measures it)
    n, df = np.mean([s.size for s in samples if s.size > 1]), sum(s.size - 1 for s in samples)
    widened = 1 - 2 * stats.norm.sf(np.sqrt(n / (n - 1)) * stats.t.isf((1 - confidence) / 2, df))
    result = stats.bootstrap(samples, statistic, n_resamples=resamples, confidence_level=widened,
                             method="percentile", vectorized=True, rng=np.random.default_rng(seed))
    return Interval(estimate, float(result.confidence_interval.low), float(result.confidence_interval.high))


def time_to_target(curve: Sequence[float], seconds: Sequence[float], target: float) -> tuple[float, float]:
    """(epochs, seconds) a run took to first reach validation accuracy `target`: epochs counts the epoch that
    reached it, seconds sums the epochs' times up to it; (inf, inf) for a run that never reached it."""
    curve = np.asarray(curve, dtype=float)
    reached = np.flatnonzero(curve >= target - TIE)
    if not reached.size:
        return float("inf"), float("inf")
    first = int(reached[0])
    return float(first + 1), float(np.sum(np.asarray(seconds, dtype=float)[: first + 1]))


def performance_profile(times: Mapping[str, Mapping[str, float]], taus: Sequence[float]) -> dict[str, np.ndarray]:
    """Dolan and More (2002), as AlgoPerf scores optimizers: for each arm, the fraction of workloads on which its
    time-to-target is within a factor tau of the fastest arm's, for each tau. `times` is arm -> workload -> time
    (inf: never reached the target). A workload no arm reached counts against every arm."""
    workloads = sorted({w for per in times.values() for w in per})
    taus = np.asarray(taus, dtype=float)
    out = {}
    for arm, per in times.items():
        ratios = []
        for w in workloads:
            best = min(t.get(w, np.inf) for t in times.values())
            mine = per.get(w, np.inf)
            ratios.append(mine / best if np.isfinite(mine) and best > 0 else 1.0 if mine == best == 0 else np.inf)
        ratios = np.array(ratios)
        out[arm] = (ratios[None, :] <= taus[:, None]).mean(axis=1) if workloads else np.zeros(len(taus))
    return out
