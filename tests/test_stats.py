"""Specification of harness.stats: summaries, comparisons, Holm, expected max, verdicts."""

import warnings
from dataclasses import replace

import numpy as np
import pytest

from harness.stats import (
    Comparison,
    compare,
    compare_all,
    expected_max,
    expected_max_band,
    holm,
    summarize,
    verdict,
)

FAST = 999  # bootstrap resamples in tests: enough for the behaviour, quick to run


def make_comparison(**overrides) -> Comparison:
    """A significant 'Adam beats SGD by 3.2 points' comparison, with fields overridden."""
    adam_wins = Comparison(a="Adam", b="SGD", diff=0.032, ci_low=0.011, ci_high=0.050, p_value=0.01,
                           p_adjusted=0.01, prob_a_beats_b=0.92, paired=True, n_a=5, n_b=5)
    return replace(adam_wins, **overrides)


# --- expected_max (Dodge et al. 2019) -------------------------------------------------------------


def test_expected_max_matches_hand_computation_on_three_values():
    # v = [0.5, 0.7, 0.9], F = [1/3, 2/3, 1]
    # n=1: F^1 steps are 1/3 each -> (0.5 + 0.7 + 0.9) / 3 = 0.7 (the mean)
    # n=2: F^2 = [1/9, 4/9, 1] -> 0.5*(1/9) + 0.7*(4/9 - 1/9) + 0.9*(1 - 4/9)
    #      = (0.5 + 2.1 + 4.5) / 9 = 7.1 / 9
    # n=3: F^3 = [1/27, 8/27, 1] -> 0.5*(1/27) + 0.7*(7/27) + 0.9*(19/27)
    #      = (0.5 + 4.9 + 17.1) / 27 = 22.5 / 27
    np.testing.assert_allclose(expected_max([0.9, 0.5, 0.7]), [0.7, 7.1 / 9, 22.5 / 27])


def test_expected_max_tends_to_the_best_value_for_large_budgets():
    curve = expected_max([0.5, 0.7, 0.9], n_max=200)
    assert len(curve) == 200
    assert curve[-1] == pytest.approx(0.9, abs=1e-6)


def test_expected_max_is_monotone_non_decreasing():
    values = np.random.default_rng(0).uniform(0.1, 0.9, size=30)
    assert np.all(np.diff(expected_max(values, n_max=50)) >= -1e-12)


def test_expected_max_drops_failed_trials():
    np.testing.assert_allclose(expected_max([0.5, np.nan, 0.7, 0.9]), expected_max([0.5, 0.7, 0.9]))
    assert len(expected_max([0.5, np.nan, 0.7, 0.9])) == 3  # default budget = number of finite trials


def test_expected_max_band_brackets_the_curve():
    values = np.random.default_rng(1).uniform(0.3, 0.9, size=20)
    curve, low, high = expected_max_band(values, n_resamples=300)
    np.testing.assert_allclose(curve, expected_max(values))
    assert np.all(low <= curve + 1e-12) and np.all(curve <= high + 1e-12)
    assert high[-1] <= values.max() + 1e-12  # a resample can never beat the best observed trial


# --- summarize ------------------------------------------------------------------------------------


def test_summarize_mean_and_sd_match_numpy():
    values = [0.91, 0.88, 0.93, 0.90, 0.87]
    s = summarize(values, n_resamples=FAST)
    assert s.n == 5
    assert s.mean == pytest.approx(np.mean(values))
    assert s.sd == pytest.approx(np.std(values, ddof=1))


def test_summarize_ci_contains_the_mean():
    s = summarize([0.91, 0.88, 0.93, 0.90, 0.87], n_resamples=FAST)
    assert s.ci_low < s.mean < s.ci_high


def test_summarize_constant_values_give_a_point_interval_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = summarize([0.8, 0.8, 0.8, 0.8])
    assert (s.mean, s.sd, s.ci_low, s.ci_high) == (0.8, 0.0, 0.8, 0.8)


def test_summarize_single_value_has_zero_sd_and_no_interval():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = summarize([0.7])
    assert (s.n, s.sd, s.ci_low, s.ci_high) == (1, 0.0, -np.inf, np.inf)


def test_two_seeds_give_no_interval_and_no_verdict():
    # resampling two values only re-reads them: an interval from them would be [min, max], not a 95% CI
    c = compare("A", {1: 0.90, 2: 0.91}, "B", {1: 0.60, 2: 0.62})
    assert (c.ci_low, c.ci_high) == (-np.inf, np.inf) and not c.significant
    assert verdict(c).startswith("No verdict at this budget") and "--seeds 3" in verdict(c)


# --- compare --------------------------------------------------------------------------------------


def test_compare_is_paired_when_both_arms_share_seeds():
    c = compare("A", {0: 0.90, 1: 0.80, 2: 0.85, 7: 0.5}, "B", {0: 0.88, 1: 0.79, 2: 0.86}, n_resamples=FAST)
    assert c.paired
    assert (c.n_a, c.n_b) == (3, 3)  # only the shared seeds
    assert c.diff == pytest.approx((0.02 + 0.01 - 0.01) / 3)


def test_compare_is_unpaired_when_seeds_differ_or_values_are_plain_lists():
    assert not compare("A", {0: 0.9, 1: 0.8}, "B", {2: 0.7, 3: 0.6}, n_resamples=FAST).paired
    assert not compare("A", [0.9, 0.8], "B", [0.7, 0.6], n_resamples=FAST).paired


def test_pairing_removes_seed_variance():
    # Seeds vary a lot, A is consistently 0.01 above B: only the paired test can see it.
    base = {s: 0.5 + 0.1 * s for s in range(6)}
    noise = [0.001, -0.002, 0.0, 0.002, -0.001, 0.0005]
    a = {s: v + 0.01 + noise[s] for s, v in base.items()}
    paired = compare("A", a, "B", base, n_resamples=FAST)
    unpaired = compare("A", list(a.values()), "B", list(base.values()), n_resamples=FAST)
    assert paired.significant and not unpaired.significant


def test_prob_a_beats_b_counts_all_pairs_with_ties_halved():
    # pairs (a, b): (3,1) win, (3,2) win, (3,3) tie, (1,1) tie, (1,2) loss, (1,3) loss
    # -> (2 + 0.5 + 0.5) / 6 = 0.5
    assert compare("A", [3, 1], "B", [1, 2, 3], n_resamples=FAST).prob_a_beats_b == pytest.approx(0.5)
    # paired: per-seed differences [+, +, 0, -] -> (2 + 0.5) / 4
    c = compare("A", {0: 2, 1: 2, 2: 1, 3: 0}, "B", {0: 1, 1: 1, 2: 1, 3: 1}, n_resamples=FAST)
    assert c.prob_a_beats_b == pytest.approx(2.5 / 4)


@pytest.mark.parametrize("paired", [True, False])
def test_identical_constant_arms_give_zero_difference_p_one_and_no_warnings(paired):
    a = {0: 0.9, 1: 0.9, 2: 0.9} if paired else [0.9, 0.9, 0.9]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        c = compare("A", a, "B", a)
    assert c.paired == paired
    assert (c.diff, c.ci_low, c.ci_high, c.p_value) == (0.0, 0.0, 0.0, 1.0)
    assert not c.significant


def test_compare_ci_covers_the_true_difference_about_95_percent_of_the_time():
    rng = np.random.default_rng(2024)
    repetitions, covered = 200, 0
    for r in range(repetitions):
        a, b = rng.normal(0.5, 1.0, 10), rng.normal(0.0, 1.0, 10)  # true difference 0.5
        c = compare("A", list(a), "B", list(b), n_resamples=FAST, seed=r)
        covered += c.ci_low <= 0.5 <= c.ci_high
    assert 0.88 <= covered / repetitions <= 0.99


def test_significant_requires_ci_excluding_zero_and_small_adjusted_p():
    assert make_comparison().significant
    assert not make_comparison(ci_low=-0.001).significant  # CI touches zero
    assert not make_comparison(p_adjusted=0.06).significant  # Holm says no
    assert make_comparison(diff=-0.03, ci_low=-0.05, ci_high=-0.01).significant  # B wins


# --- Holm -----------------------------------------------------------------------------------------


def test_holm_matches_hand_worked_example():
    # sorted: 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 = 0.04 -> monotone: 0.03, 0.06, 0.06
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])


def test_holm_is_capped_at_one_and_identity_for_a_single_test():
    assert holm([0.4, 0.5, 0.9]) == pytest.approx([1.0, 1.0, 1.0])
    assert holm([0.2]) == pytest.approx([0.2])


def test_compare_all_applies_holm_across_all_pairs():
    rng = np.random.default_rng(3)
    values = {name: dict(enumerate(rng.normal(mu, 0.02, 5))) for name, mu in
              [("Adam", 0.80), ("SGD", 0.78), ("AdamW", 0.81)]}
    pairs = [("Adam", "SGD"), ("AdamW", "SGD"), ("Adam", "AdamW")]
    comparisons = compare_all(pairs, values, n_resamples=FAST)
    assert [(c.a, c.b) for c in comparisons] == pairs
    assert all(c.p_adjusted >= c.p_value for c in comparisons)
    assert [c.p_adjusted for c in comparisons] == pytest.approx(holm([c.p_value for c in comparisons]))


def test_compare_all_with_one_pair_leaves_p_unadjusted():
    values = {"Adam": {0: 0.8, 1: 0.82, 2: 0.79}, "SGD": {0: 0.78, 1: 0.8, 2: 0.79}}
    (c,) = compare_all([("Adam", "SGD")], values, n_resamples=FAST)
    assert c.p_adjusted == c.p_value and c.family == 1


def test_a_holm_adjusted_p_is_labelled_so_even_when_it_equals_the_raw_one():
    values = {"A": {0: 0.8, 1: 0.82, 2: 0.79}, "B": {0: 0.78, 1: 0.8, 2: 0.79}, "C": {0: 0.5, 1: 0.6, 2: 0.55}}
    comparisons = compare_all([("A", "B"), ("A", "C")], values, n_resamples=FAST)
    assert all("Holm-adjusted p" in verdict(c) for c in comparisons)


# --- verdict --------------------------------------------------------------------------------------


def test_verdict_names_a_as_winner_with_its_numbers():
    sentence = verdict(make_comparison())
    assert sentence == ("Adam beats SGD by 3.2 points of test accuracy "
                        "(95% CI 1.1 to 5.0; P(Adam > SGD) = 0.92; p = 0.01).")


def test_verdict_names_b_as_winner_with_a_positive_effect():
    c = make_comparison(diff=-0.032, ci_low=-0.050, ci_high=-0.011, prob_a_beats_b=0.08, p_adjusted=0.02, family=2)
    assert verdict(c) == ("SGD beats Adam by 3.2 points of test accuracy "
                          "(95% CI 1.1 to 5.0; P(SGD > Adam) = 0.92; Holm-adjusted p = 0.02).")


def test_verdict_says_no_significant_difference_when_ci_includes_zero():
    c = make_comparison(diff=0.004, ci_low=-0.012, ci_high=0.020, p_value=0.55, p_adjusted=0.55)
    assert verdict(c) == ("No significant difference at this budget: Adam - SGD = 0.4 points of "
                          "test accuracy (95% CI -1.2 to 2.0; p = 0.55).")


def test_verdict_explains_a_zero_free_interval_that_the_test_does_not_back():
    c = Comparison(a="A", b="B", diff=0.10, ci_low=0.06, ci_high=0.14, p_value=0.42, p_adjusted=0.42,
                   prob_a_beats_b=1.0, paired=True, n_a=2, n_b=2)
    sentence = verdict(c)
    assert sentence.startswith("No significant difference") and "excludes zero but the p does not" in sentence
