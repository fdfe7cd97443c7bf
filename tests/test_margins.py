"""Specification of harness.inference.margins: a margin in seed sds, and the chance that a non-inferiority or
equivalence test says "shown" for equal arms, checked against decide_all's own decisions on simulated studies."""

import numpy as np
import pytest

from harness.analysis_plan import Difference, Equivalent, NonInferior
from harness.inference.decide import Estimate, decide_all, paired_or_welch
from harness.inference.margins import margin_sds, shown_if_equal

STUDIES = 1500


def test_a_margin_in_seed_sds_is_the_margin_over_the_sd_of_one_seeds_paired_difference():
    rng = np.random.default_rng(0)
    b = {s: 0.8 + rng.normal(0, 0.02) for s in range(8)}
    a = {s: v + 0.01 + rng.normal(0, 0.03) for s, v in b.items()}
    e = paired_or_welch(a, b)
    sd = np.std([a[s] - b[s] for s in a], ddof=1)
    assert margin_sds(0.02, e) == pytest.approx(0.02 / sd)
    assert np.isnan(margin_sds(0.02, Estimate(0.01, 0.0, 0.0, 1, True)))  # one seed: no sd to measure it by


def _simulated_shown(c, n: int, sd: float, rng) -> float:
    """The fraction of studies with equal arms (paired seed noise of sd `sd`) in which decide_all says shown."""
    shown = 0
    for _ in range(STUDIES):
        b = rng.normal(0.8, 0.03, n)
        a = b + rng.normal(0.0, sd, n)
        (d,) = decide_all([c], {"a": dict(enumerate(a)), "b": dict(enumerate(b))}, 0.02, power=False)
        shown += d.outcome == "shown"
    return shown / STUDIES


@pytest.mark.parametrize(("kind", "n", "margin"), [(NonInferior, 10, 0.012), (Equivalent, 12, 0.015)])
def test_shown_if_equal_is_how_often_decide_all_shows_it_for_equal_arms(kind, n, margin):
    sd = 0.02
    c = kind("a", "b", margin)
    truth = Estimate(0.0, sd / np.sqrt(n), n - 1.0, n, True)
    (level,) = {d.confidence for d in decide_all([c], {"a": {0: 0.0, 1: 0.1}, "b": {0: 0.0, 1: 0.0}}, 0.02)}
    predicted = shown_if_equal(c, truth, level)
    assert 0.2 < predicted < 0.9  # a margin the test can miss: the check below can fail either way
    simulated = _simulated_shown(c, n, sd, np.random.default_rng(n))
    assert simulated == pytest.approx(predicted, abs=4 * np.sqrt(predicted * (1 - predicted) / STUDIES))


def test_a_wider_margin_or_more_seeds_makes_shown_more_likely_for_equal_arms():
    def p(margin: float, n: int) -> float:
        return shown_if_equal(NonInferior("a", "b", margin), Estimate(0.0, 0.02 / np.sqrt(n), n - 1.0, n, True), 0.95)

    assert p(0.01, 10) < p(0.02, 10) < p(0.04, 10)
    assert p(0.02, 5) < p(0.02, 10) < p(0.02, 20)


def test_only_a_comparison_with_a_margin_has_one():
    with pytest.raises(TypeError, match="has no margin"):
        shown_if_equal(Difference("a", "b"), Estimate(0.0, 0.01, 9.0, 10, True), 0.95)
