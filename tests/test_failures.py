"""Specification of harness.inference.failures: Fisher's exact test as scipy computes it, the pairs whose failure
rates are compared, and the failure-rate claim: its own test in the comparisons' Holm family, deciding none."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from harness.analysis_plan import Difference, Equivalent, Interaction, NonInferior, Trend
from harness.inference.decide import decide_family
from harness.inference.failures import fisher_p, rate_pairs


def test_fishers_exact_p_is_scipys_on_every_table_up_to_12_runs_an_arm():
    for na, nb in ((1, 1), (3, 7), (12, 12), (5, 12)):
        for fa in range(na + 1):
            for fb in range(nb + 1):
                expected = stats.fisher_exact([[fa, na - fa], [fb, nb - fb]]).pvalue
                assert fisher_p((fa, na), (fb, nb)) == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_each_declared_pair_is_compared_once_and_interactions_and_trends_name_none():
    family = [Difference("a", "b"), NonInferior("b", "a"), Equivalent("a", "c"),
              Interaction(("a", "b"), ("c", "d")), Trend(("a", "b", "c"))]
    assert rate_pairs(family) == [("a", "b"), ("a", "c")]


def test_a_failure_rate_claim_joins_the_holm_family_and_never_changes_a_decision():
    values = {"a": {s: 0.9 + 0.01 * np.sin(s) for s in range(10)}, "b": {s: 0.9 + 0.01 * np.cos(s) for s in range(10)}}
    family = [Difference("a", "b")]
    alone = decide_family(family, values, 0.02)
    judged = decide_family(family, values, 0.02, failures={"a": (10, 18), "b": (0, 10)})
    (claim,) = judged.rates
    assert claim.counts == ((10, 18), (0, 10)) and claim.family == 2 and claim.more == "a"
    assert claim.p_value == pytest.approx(fisher_p((10, 18), (0, 10))) and claim.p_value < 0.025  # its Holm level
    (d,) = judged.decisions
    assert d.outcome == alone.decisions[0].outcome == "undecided" and d.family == 2
    assert [r.n for r in claim.rates] == [18, 10] and claim.rates[0].low < 10 / 18 < claim.rates[0].high
    assert decide_family(family, values, 0.02, failures={"a": (0, 10), "b": (0, 10)}).rates == []  # none failed
