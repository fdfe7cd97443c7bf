"""Failure as a result: which confirmation runs failed to train, each arm's failure rate with an exact
(Clopper-Pearson) interval, and the rates of two arms compared by Fisher's exact test, Holm-corrected over the
declared pairs.

A run failed when it diverged or its *validation* accuracy stayed within the study's chance margin of chance
(1 / classes). Validation decides, never test: the test split judges the comparisons and must not choose
what they compare. A failed run is a result, not a filter: it leaves the accuracy means (which then describe
the runs that trained) and enters its arm's failure rate, and every declared comparison stays in the family.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from harness.inference.stats import ALPHA, holm


def failed(val_acc: float, diverged: bool, chance: float | None, margin: float) -> bool:
    """Whether one run failed to train: it diverged, or its validation accuracy is within `margin` of chance.

    >>> failed(0.22, False, 0.2, 0.05), failed(0.9, False, 0.2, 0.05), failed(float("nan"), True, 0.2, 0.05)
    (True, False, True)
    """
    if diverged:
        return True
    return chance is not None and bool(np.isfinite(val_acc)) and val_acc <= chance + margin


@dataclass(frozen=True)
class Rate:
    failed: int
    n: int
    low: float
    high: float

    @property
    def rate(self) -> float:
        return self.failed / self.n if self.n else np.nan


def rate(n_failed: int, n: int, confidence: float = 0.95) -> Rate:
    """Failures out of n with the exact Clopper-Pearson interval (covers at least `confidence` at every n)."""
    if n == 0:
        return Rate(0, 0, 0.0, 1.0)
    ci = stats.binomtest(n_failed, n).proportion_ci(confidence, method="exact")
    return Rate(n_failed, n, float(ci.low), float(ci.high))


@dataclass(frozen=True)
class RateComparison:
    a: str
    b: str
    p_value: float
    p_adjusted: float

    @property
    def significant(self) -> bool:
        return self.p_adjusted < ALPHA


def fisher_p(a: tuple[int, int], b: tuple[int, int]) -> float:
    """Fisher's exact two-sided p of two (failed, n) counts: conditional on the failures seen, so exact at any n."""
    (fa, na), (fb, nb) = a, b
    return float(stats.fisher_exact([[fa, na - fa], [fb, nb - fb]]).pvalue)


def compare_rates(pairs: Sequence[tuple[str, str]], rates: Mapping[str, Rate]) -> list[RateComparison]:
    """Fisher's exact test of each pair's failure rates (two-sided), Holm-adjusted over the pairs."""
    raw = []
    for a, b in pairs:
        ra, rb = rates[a], rates[b]
        if ra.n == 0 or rb.n == 0:
            raw.append(1.0)
            continue
        raw.append(fisher_p((ra.failed, ra.n), (rb.failed, rb.n)))
    adjusted = holm(raw) if raw else []
    return [RateComparison(a, b, p, q) for (a, b), p, q in zip(pairs, raw, adjusted, strict=True)]
