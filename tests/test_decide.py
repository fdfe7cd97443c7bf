"""Specification of harness.inference.decide: each kind's test, interval and decision, Holm over the declared
family (nothing leaves it), and the power each decision had."""

import numpy as np
import pytest
from scipy import stats

from harness.analysis_plan import Difference, Equivalent, Interaction, NonInferior, Trend
from harness.inference.decide import decide_all, detectable, mde, paired_or_welch, seeds_needed, slope

M = 0.02
NOISE = [0.004, -0.006, 0.001, 0.005, -0.004]


def arm(mean: float, noise=NOISE) -> dict[int, float]:
    return {s: mean + d for s, d in enumerate(noise)}


def one(c, values, margin=M):
    (d,) = decide_all([c], values, margin)
    return d


def test_a_paired_difference_is_scipys_paired_t_and_welch_is_scipys_welch():
    a, b = arm(0.9), arm(0.85, NOISE[::-1])
    e = paired_or_welch(a, b)
    assert e.paired and e.n == 5
    t = stats.ttest_rel(list(a.values()), list(b.values()))
    assert one(Difference("a", "b"), {"a": a, "b": b}).p_value == pytest.approx(t.pvalue)
    unpaired = {"a": list(a.values()), "b": list(b.values())}
    a2, b2 = dict(enumerate(unpaired["a"])), {s + 10: v for s, v in enumerate(unpaired["b"])}
    w = stats.ttest_ind(unpaired["a"], unpaired["b"], equal_var=False)
    d = one(Difference("a", "b"), {"a": a2, "b": b2})
    assert not d.estimate.paired and d.p_value == pytest.approx(w.pvalue)


@pytest.mark.parametrize(("shift", "expected"), [(0.0, "shown"), (-0.06, "refuted"), (-0.02, "undecided")])
def test_non_inferiority_is_shown_refuted_or_undecided_against_the_margin(shift, expected):
    d = one(NonInferior("a", "b"), {"a": arm(0.9 + shift, NOISE[::-1]), "b": arm(0.9)})
    assert d.outcome == expected
    assert (d.p_adjusted < 0.05) == (expected != "undecided")  # the interval and the adjusted p agree, refuted too


def test_non_inferiority_is_not_superiority_equal_arms_show_it():
    """'Adam >= SGD' with the truth at equality: shown, where a superiority test would say nothing."""
    d = one(NonInferior("a", "b"), {"a": arm(0.9, NOISE[::-1]), "b": arm(0.9)})
    assert d.outcome == "shown" and d.low < 0 < d.high


@pytest.mark.parametrize(("shift", "expected", "confidence"),
                         [(0.0, "shown", 0.90), (0.08, "refuted", 0.95), (0.02, "undecided", 0.90)])
def test_equivalence_is_a_tost_with_a_90_percent_interval_and_is_refuted_by_the_95_percent_one(shift, expected,
                                                                                                confidence):
    d = one(Equivalent("a", "b"), {"a": arm(0.9 + shift, NOISE[::-1]), "b": arm(0.9)})
    assert d.confidence == pytest.approx(confidence) and d.outcome == expected
    assert (d.p_adjusted < 0.05) == (expected != "undecided")


def test_a_significant_difference_inside_the_margin_is_still_equivalent():
    a, b = arm(0.905, [0.0001, -0.0001, 0.0, 0.0001, -0.0001]), arm(0.9, [0.0] * 5)
    assert one(Difference("a", "b"), {"a": a, "b": b}).outcome == "a > b"
    assert one(Equivalent("a", "b"), {"a": a, "b": b}).outcome == "shown"


def test_an_interaction_tests_the_difference_of_the_differences():
    values = {"a": arm(0.95), "b": arm(0.80, NOISE[::-1]), "c": arm(0.90), "d": arm(0.88, NOISE[::-1])}
    d = one(Interaction(("a", "b"), ("c", "d")), values)
    assert d.estimate.value == pytest.approx(0.15 - 0.02) and d.estimate.paired
    assert d.outcome == "a > b"
    same = {**values, "c": arm(0.95), "d": arm(0.80, NOISE[::-1])}
    assert one(Interaction(("a", "b"), ("c", "d")), same).outcome == "undecided"


def test_an_interaction_without_shared_seeds_combines_two_welch_differences():
    values = {"a": arm(0.95), "b": arm(0.80), "c": {s + 10: v for s, v in arm(0.90).items()},
              "d": {s + 10: v for s, v in arm(0.88).items()}}
    d = one(Interaction(("a", "b"), ("c", "d")), values)
    assert not d.estimate.paired and d.estimate.value == pytest.approx(0.13)


def test_a_trend_is_the_per_seed_slope_and_a_reversed_step_is_named():
    values = {"n1": arm(0.90), "n2": arm(0.93, NOISE[::-1]), "n3": arm(0.80), "n4": arm(0.70, NOISE[::-1])}
    e = slope([values[k] for k in ("n1", "n2", "n3", "n4")])
    per_seed = [np.polyfit(range(4), [values[k][s] for k in values], 1)[0] for s in range(5)]
    assert e.value == pytest.approx(np.mean(per_seed))
    d = one(Trend(("n1", "n2", "n3", "n4"), "decreasing"), values)
    assert d.outcome == "shown"
    first = d.steps[0]
    assert first[:2] == ("n1", "n2") and first[3] > 0  # the first step rises: against the declared fall
    rising = one(Trend(("n1", "n2", "n3", "n4"), "increasing"), values)
    assert rising.outcome == "refuted"


def test_a_comparison_without_data_stays_in_the_family_and_counts_in_holm():
    values = {"a": arm(0.95), "b": arm(0.85, NOISE[::-1]), "c": {}}
    alone = one(Difference("a", "b"), values)
    both = decide_all([Difference("a", "b"), Difference("a", "c")], values, M)
    assert both[1].outcome == "no data" and both[1].p_adjusted == 1.0
    assert both[0].family == 2 and both[0].multiplier == 2 and both[0].p_adjusted == pytest.approx(2 * alone.p_value)


def test_the_mde_is_where_the_noncentral_t_reaches_80_percent_power():
    se, df = 0.01, 4.0
    d = detectable(se, df, 0.025)
    power = stats.nct.sf(stats.t.ppf(0.975, df), df, d / se)
    assert power == pytest.approx(0.8, abs=1e-6)


def test_seeds_needed_is_the_first_count_whose_mde_reaches_the_margin():
    values = {"a": arm(0.9, [3 * x for x in NOISE[::-1]]), "b": arm(0.9)}
    d = one(Difference("a", "b"), values)
    n, sd = d.seeds_needed, d.estimate.unit_sd
    assert n > 5
    assert detectable(sd / np.sqrt(n), n - 1, 0.025) <= M < detectable(sd / np.sqrt(n - 1), n - 2, 0.025)
    assert seeds_needed(d.declared, d.estimate, 1.0, M) == n


def test_kinds_print_their_power_in_their_own_terms():
    values = {"a": arm(0.9, NOISE[::-1]), "b": arm(0.9)}
    ni, eq = one(NonInferior("a", "b"), values), one(Equivalent("a", "b"), values)
    assert ni.mde == pytest.approx(mde(ni.declared, ni.estimate, 1.0)) and ni.mde < 0  # shown even a bit below b
    assert 0 < eq.mde < M  # equivalence is shown, with 80% power, for |a - b| up to this


def test_one_seed_decides_nothing():
    d = one(Difference("a", "b"), {"a": {0: 0.9}, "b": {0: 0.6}})
    assert d.outcome == "undecided" and d.p_value == 1.0 and not np.isfinite(d.mde) and d.seeds_needed is None


@pytest.mark.parametrize("n", [2, 3])
def test_the_mde_exists_at_two_and_three_seeds_despite_the_t_distributions_heavy_tails(n):
    values = {"a": arm(0.9, NOISE[:n]), "b": arm(0.8, NOISE[::-1][:n])}
    family = [Difference("a", "b"), NonInferior("a", "b"), Equivalent("a", "b")]
    for d in decide_all(family, values, M):
        assert np.isfinite(d.mde) and d.seeds_needed is not None


def test_each_estimate_carries_the_skewness_of_its_per_seed_contrasts():
    a, b = arm(0.9, [0.01, 0.01, 0.01, 0.01, -0.09]), arm(0.85)
    diffs = [a[s] - b[s] for s in a]
    assert paired_or_welch(a, b).skew == pytest.approx(stats.skew(diffs))
    values = {"n1": a, "n2": arm(0.88, NOISE[::-1]), "n3": b}
    slopes = [np.polyfit(range(3), [values[k][s] for k in values], 1)[0] for s in range(5)]
    assert slope(list(values.values())).skew == pytest.approx(stats.skew(slopes))
    unpaired = paired_or_welch(a, {s + 10: v for s, v in b.items()})
    assert not unpaired.paired and np.isnan(unpaired.skew)  # no per-seed contrasts to be skewed
    assert np.isnan(paired_or_welch(arm(0.9), arm(0.8)).skew)  # every difference equal: no shape at all
