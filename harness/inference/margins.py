"""What a non-inferiority or equivalence margin means beside the noise of the seeds that tested it: the margin in
units of one seed's sd, and how often the test says "shown" when the arms are in truth equal.

A margin is chosen for what a difference would mean to someone acting on the result, not for the noise; but a
reader needs the noise to read the result. A margin of several seed sds makes "shown" nearly automatic for equal
arms (and for arms somewhat apart): it then says only that the arms do not differ by more than that margin.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from harness.analysis_plan import Declared, Equivalent, NonInferior
from harness.inference.decide import Estimate, tost_power
from harness.inference.stats import TIE


def margin_sds(margin: float, e: Estimate) -> float:
    """The margin over the sd of one seed's contribution (a paired difference's sd when paired); nan without a
    variance estimate, inf when the seeds did not vary at all."""
    sd = e.unit_sd
    if e.df < 1 or not np.isfinite(sd):
        return np.nan
    return np.inf if sd <= TIE else margin / sd


def shown_if_equal(c: Declared, e: Estimate, confidence: float) -> float:
    """P("shown" | a - b = 0) at the decision's two-sided interval level `confidence` and its seeds, the sd taken
    as the one the seeds showed: non-inferiority's low end clears -m (noncentral t), equivalence's interval lies
    inside ±m (TOST, `tost_power`). Either tests one-sided at (1 - confidence) / 2, as decide_all does."""
    if not isinstance(c, NonInferior | Equivalent):
        raise TypeError(f"{c.kind} {c.label} has no margin; only non-inferiority and equivalence do")
    if e.df < 1 or not np.isfinite(e.se):
        return np.nan
    if e.se <= TIE:
        return 1.0
    one_sided = (1 - confidence) / 2
    if isinstance(c, Equivalent):
        return tost_power(0.0, e.se, e.df, one_sided, c.margin)
    # low = estimate - t * se_hat > -m  <=>  (estimate + m) / se_hat > t, a noncentral t at m / se when a - b = 0
    return float(stats.nct.sf(stats.t.ppf(1 - one_sided, e.df), e.df, c.margin / e.se))
