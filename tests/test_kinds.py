"""Specification of harness.inference.kinds: each kind's p-value tests whatever its interval decides, so the
interval at the Holm factor's level and the Holm-adjusted p agree on every decision, refutations included."""

import numpy as np
import pytest
from scipy import stats

from harness.analysis_plan import Difference, Equivalent, Interaction, NonInferior, Trend
from harness.inference.decide import Estimate, decide_all
from harness.inference.kinds import raw_p

M = 0.02
FAMILY = (Difference("a", "b"), NonInferior("a", "b"), Equivalent("c", "d"), Interaction(("a", "b"), ("c", "d")),
          Trend(("a", "c", "e")))
EVERY = {"difference": {"a > b", "a < b"}, "non-inferiority": {"shown", "refuted"},
         "equivalence": {"shown", "refuted"}, "interaction": {"a > b", "a < b"}, "trend": {"shown", "refuted"}}


def test_non_inferiority_is_tested_two_sided_about_the_margin_and_equivalence_on_either_claim():
    e = Estimate(-0.05, 0.01, 4.0, 5, True)  # 3 se below -m: refutes non-inferiority, and equivalence
    t = (e.value + M) / e.se
    assert raw_p(NonInferior("a", "b", M), e) == pytest.approx(2 * stats.t.sf(abs(t), 4))
    outside = 2 * stats.t.sf((abs(e.value) - M) / e.se, 4)
    assert raw_p(Equivalent("a", "b", M), e) == pytest.approx(outside)
    inside = Estimate(0.005, 0.004, 4.0, 5, True)
    tost = max(stats.t.sf((inside.value + M) / inside.se, 4), stats.t.sf((M - inside.value) / inside.se, 4))
    assert raw_p(Equivalent("a", "b", M), inside) == pytest.approx(tost)


def test_the_interval_at_the_holm_level_and_the_adjusted_p_agree_on_every_decision_of_every_kind():
    """Random families (paired and unpaired, 2-8 seeds, effects from none to far past the margin): a decision
    is made exactly when its Holm-adjusted p is at most alpha, and every kind's every decision occurs."""
    rng = np.random.default_rng(0)
    seen = {kind: set() for kind in EVERY}
    for trial in range(400):
        n, sd = int(rng.integers(2, 9)), float(rng.choice([0.002, 0.01, 0.03]))
        means = dict(zip("abcde", 0.8 + rng.normal(0, 0.03, 5), strict=True))
        offset = 10 * (trial % 5 == 0)  # every fifth family shares no seeds between b and the rest: Welch
        values = {a: {s + offset * (a == "b"): m + rng.normal(0, sd) for s in range(n)} for a, m in means.items()}
        for d in decide_all(FAMILY, values, M, power=False):
            assert d.decided == (d.p_adjusted <= 0.05), (trial, d)
            seen[d.declared.kind].add(d.outcome)
    assert all(EVERY[kind] <= found for kind, found in seen.items()), seen
