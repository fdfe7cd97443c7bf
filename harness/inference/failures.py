"""Failure as a result: which confirmation runs failed to train, each arm's failure rate with an exact
(Clopper-Pearson) interval, and the claim that one arm of a declared pair fails more often than the other
(Fisher's exact test, one test of the comparisons' Holm family: harness.inference.decide).

A run failed when it diverged or its *validation* accuracy stayed within the study's chance margin of chance
(1 / classes). Validation decides, never test: the test split judges the comparisons and must not choose
what they compare. A failed run is a result, not a filter: on the study's endpoint "all" it is scored (its test
accuracy, or chance when it left no model), on "trained" it leaves the accuracy means; either way it enters its
arm's failure rate, and a failure-rate claim never changes what a comparison decides.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import special, stats

from harness.analysis_plan import Declared, Interaction, Trend


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


def fisher_p(a: tuple[int, int], b: tuple[int, int]) -> float:
    """Fisher's exact two-sided p of two (failed, n) counts: conditional on the failures seen, so exact at any n.
    The hypergeometric probability of every table no likelier than the one seen, as scipy.stats.fisher_exact sums
    it (to its relative tolerance), computed directly: simulations ask for it thousands of times.

    >>> round(fisher_p((6, 6), (0, 6)), 5), fisher_p((0, 5), (0, 5)), round(fisher_p((3, 10), (1, 12)), 4)
    (0.00216, 1.0, 0.2932)
    """
    (fa, na), (fb, nb) = a, b
    failures = fa + fb
    k = np.arange(max(0, failures - nb), min(na, failures) + 1)
    log_pmf = _log_choose(na, k) + _log_choose(nb, failures - k) - _log_choose(na + nb, failures)
    seen = log_pmf[fa - k[0]]
    return min(1.0, float(np.exp(log_pmf[log_pmf <= seen + 1e-7]).sum()))


def _log_choose(n: int, k: np.ndarray | int) -> np.ndarray:
    return special.gammaln(n + 1) - special.gammaln(k + 1) - special.gammaln(n - k + 1)


@dataclass(frozen=True)
class RateClaim:
    """Does a fail to train more often than b? Fisher's exact test of a declared pair's failure counts, judged
    in the comparisons' Holm family at its own factor (`significant`); reported beside the comparisons, it
    never changes what one decides."""

    a: str
    b: str
    counts: tuple[tuple[int, int], tuple[int, int]]  # (failed, n) of a, of b
    p_value: float
    p_adjusted: float
    multiplier: float
    family: int
    significant: bool

    @property
    def rates(self) -> tuple[Rate, Rate]:
        """Each arm's rate with its exact 95% interval (computed when asked: simulations never ask)."""
        return rate(*self.counts[0]), rate(*self.counts[1])

    @property
    def more(self) -> str | None:
        """The arm shown to fail more often; None when the rates do not differ significantly."""
        (fa, na), (fb, nb) = self.counts
        return None if not self.significant else self.a if fa / na > fb / nb else self.b


def rate_pairs(family: Sequence[Declared]) -> list[tuple[str, str]]:
    """The declared pairs whose failure rates are compared, each once (a difference and a non-inferiority of
    the same two arms share one test); interactions and trends name no one pair."""
    pairs: dict[frozenset, tuple[str, str]] = {}
    for c in family:
        if not isinstance(c, Interaction | Trend):
            pairs.setdefault(frozenset((c.a, c.b)), (c.a, c.b))
    return list(pairs.values())
