"""An arm's searches as a level of the design: each arm runs `searches` independent tuning searches, and each
search's chosen configuration runs on the verdict seeds. The estimand is then the arm's expected accuracy over
searches and seeds (the optimizer with its tuning protocol at this budget), not one search's choice.

Values of such a study are keyed (search, seed). A comparison is estimated within each search j (arms paired by
j and by seed, so seed-to-seed noise cancels as in a one-search study) and the k per-search estimates are
averaged, with a t interval over them (df k - 1): the between-search variance is inside the interval because
each per-search estimate carries it. `tests/test_simulation_searches.py` measures its coverage.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from harness.inference.decide import Estimate


def searched(values: Mapping[Any, float]) -> bool:
    """Whether values are keyed (search, seed)."""
    return any(isinstance(k, tuple) for k in values)


def seed_of(key: Any) -> int:
    return key[1] if isinstance(key, tuple) else key


def by_search(values: Mapping[Any, float]) -> dict[int, dict[int, float]]:
    out: dict[int, dict[int, float]] = {}
    for (j, seed), v in values.items():
        out.setdefault(j, {})[seed] = v
    return out


def over_searches(estimate: Callable[..., Estimate | None], arms: Sequence[Mapping[Any, float]]) -> Estimate | None:
    """`estimate` within each search every arm ran, then the mean over searches with its t interval's se and df.
    One search: that search's estimate, conditional on it."""
    groups = [by_search(v) for v in arms]
    common = sorted(set.intersection(*(set(g) for g in groups))) if groups else []
    per = [e for e in (estimate(*(g[j] for g in groups)) for j in common) if e is not None]
    if not per:
        return None
    if len(per) == 1:
        return replace(per[0], searches=1)
    x = np.array([e.value for e in per])
    d = x - x.mean()
    m2 = float(d @ d) / len(x)
    skew = float((d * d) @ d) / len(x) / m2**1.5 if m2 > 0 else np.nan  # of the per-search estimates the t runs on
    return replace(per[0], value=float(x.mean()), se=float(x.std(ddof=1) / np.sqrt(len(x))), df=len(x) - 1.0,
                   n=min(e.n for e in per), searches=len(x), skew=skew)


@dataclass(frozen=True)
class Share:
    """Variance components of one arm's verdict accuracies (one-way random effects, method of moments):
    between searches and between seeds within a search."""

    between: float
    within: float
    searches: int

    @property
    def fraction(self) -> float:
        total = self.between + self.within
        return self.between / total if total > 0 else 0.0


def variance_share(values: Mapping[Any, float]) -> Share | None:
    """How much of an arm's (or a per-seed difference's) variance is search-to-search; None with fewer than two
    searches of two seeds."""
    groups = [np.array(list(g.values())) for g in by_search(values).values() if len(g) >= 2]
    if len(groups) < 2:
        return None
    n = np.array([len(g) for g in groups])
    means = np.array([g.mean() for g in groups])
    grand = np.concatenate(groups).mean()
    within = sum(((g - g.mean()) ** 2).sum() for g in groups) / (n.sum() - len(groups))
    between_ms = (n * (means - grand) ** 2).sum() / (len(groups) - 1)
    n0 = (n.sum() - (n**2).sum() / n.sum()) / (len(groups) - 1)  # the unbalanced design's effective group size
    return Share(max(0.0, (between_ms - within) / n0), float(within), len(groups))


def differences(a: Mapping[Any, float], b: Mapping[Any, float]) -> dict[Any, float]:
    """a - b per (search, seed) both have."""
    return {k: a[k] - b[k] for k in sorted(set(a) & set(b)) if np.isfinite(a[k]) and np.isfinite(b[k])}
