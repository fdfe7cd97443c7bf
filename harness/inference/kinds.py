"""Each kind of comparison's rule (harness.inference.decide applies them): the p-value Holm's correction runs on,
the interval level that decides the comparison at its Holm factor, and what that interval decides. One rule per
kind, so the interval and the Holm-adjusted p cannot disagree, for a refutation as for a claim shown.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from scipy import special

from harness.analysis_plan import Declared, Equivalent, Interaction, NonInferior, Trend
from harness.inference.stats import ALPHA, TIE, t_test

if TYPE_CHECKING:
    from harness.inference.decide import Estimate


def _sf(x: float, e: Estimate) -> float:
    """P(T >= x / se) under df: the one-sided p of `x` standard errors; 0 or 1 when se is 0."""
    if e.df < 1:
        return 1.0
    if e.se <= TIE:
        return 0.0 if x > TIE else 1.0 if x < -TIE else 0.5
    return float(special.stdtr(e.df, -x / e.se))  # scipy.stats.t.sf's value, without its per-call overhead


def raw_p(c: Declared, e: Estimate) -> float:
    """The p-value Holm's correction runs on: the smallest level at which the comparison's interval decides
    anything, shown or refuted. A p that tested only the claim would sit near 1 when the interval refutes it,
    Holm would give it a factor near 1, and the refutation would escape the family's correction."""
    if isinstance(c, NonInferior):  # two-sided about -m: shown (a - b > -m) or refuted (< -m), each at alpha / 2
        return min(1.0, 2 * _sf(abs(e.value + c.margin), e))
    if isinstance(c, Equivalent):  # shown: TOST, both one-sided tests at alpha; refuted: outside ±m at alpha / 2
        tost = max(_sf(e.value + c.margin, e), _sf(c.margin - e.value, e))
        return min(tost, 1.0, 2 * _sf(abs(e.value) - c.margin, e))
    return min(1.0, 2 * _sf(abs(e.value), e)) if e.df >= 1 else 1.0  # two-sided: difference, interaction, trend


def level(c: Declared, multiplier: float, alpha: float = ALPHA,
          nominal: Callable[[float], float] | None = None, refuting: bool = False) -> float:
    """The two-sided interval level that decides `c` at its Holm factor: 1 - 2 alpha / k for TOST, else (an
    equivalence's refutation too) 1 - alpha / k; `nominal` maps that error rate to the one a sequential look
    spends of it."""
    rate = (2 if isinstance(c, Equivalent) and not refuting else 1) * alpha / multiplier
    return 1 - (rate if nominal is None else nominal(rate))


def outcome(c: Declared, low: float, high: float, refuting: bool = False) -> str:
    """What the interval decides, in the kind's own words. An equivalence is decided by two intervals: the
    TOST interval shows it (inside ±m), the wider `refuting` one refutes it (wholly outside)."""
    if isinstance(c, NonInferior):
        return "shown" if low > -c.margin else "refuted" if high < -c.margin else "undecided"
    if isinstance(c, Equivalent):
        inside, outside = -c.margin < low and high < c.margin, low > c.margin or high < -c.margin
        return "shown" if inside and not refuting else "refuted" if outside and refuting else "undecided"
    if isinstance(c, Trend):
        side = 1 if low > 0 else -1 if high < 0 else 0
        return "undecided" if side == 0 else "shown" if side == c.sign else "refuted"
    return "a > b" if low > 0 else "a < b" if high < 0 else "undecided"


def _judged(c: Declared, e: Estimate, confidence: float, refuting: bool = False) -> tuple[float, float, float, str]:
    t = t_test(e.value, e.se, e.df, confidence)
    # accuracies lie in [0, 1], so a difference in [-1, 1] and an interaction in [-2, 2]: an interval cut to what is
    # possible covers as often, and never reads "36 to 113%"
    bound = 2.0 if isinstance(c, Interaction) else 1.0
    low, high = max(float(t.low), -bound), min(float(t.high), bound)
    return confidence, low, high, outcome(c, low, high, refuting)


def interval_for(c: Declared, e: Estimate, k: float, alpha: float,
                 levels: Callable[[float], float] | None) -> tuple[float, float, float, str]:
    """The interval that decides `c` at Holm factor k (level, low, high) and its decision. An equivalence whose
    TOST interval lies wholly outside ±m is refuted, or not, by the wider interval: that is the one reported."""
    judged = _judged(c, e, level(c, k, alpha, levels))
    if isinstance(c, Equivalent) and (judged[1] > c.margin or judged[2] < -c.margin):
        return _judged(c, e, level(c, k, alpha, levels, refuting=True), refuting=True)
    return judged
