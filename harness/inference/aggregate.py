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


def probability_of_improvement(a: Mapping[str, Sequence[float]], b: Mapping[str, Sequence[float]],
                               confidence: float = 1 - ALPHA) -> Improvement:
    """P(A > B) over the workloads both arms ran (workload -> test accuracies over seeds), the workload the unit."""
    shared = [w for w in a if w in b and len(a[w]) and len(b[w])]
    per = {w: improvement_probability(a[w], b[w]) for w in shared}
    values = np.array(list(per.values()))
    n = len(values)
    se = values.std(ddof=1) / np.sqrt(n) if n > 1 else np.inf
    t = t_test(values.mean() - 0.5 if n else 0.0, se, n - 1, confidence)
    clip = (lambda x: float(np.clip(x + 0.5, 0.0, 1.0)))  # a probability: the interval stays inside [0, 1]
    return Improvement(float(values.mean()) if n else float("nan"), clip(t.low), clip(t.high), float(t.p_value),
                       per)


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
