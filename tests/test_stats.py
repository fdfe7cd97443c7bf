"""Specification of harness.analysis.stats: summaries, comparisons, Holm, expected max, verdicts."""

import warnings
from dataclasses import replace

import numpy as np
import pytest
from scipy import stats

from harness.analysis.stats import (
    ALPHA,
    Comparison,
    above_chance,
    compare,
    compare_all,
    expected_max,
    expected_max_band,
    holm,
    holm_multipliers,
    paired_t,
    summarize,
    trend,
    verdict,
    welch_t,
)


def make_comparison(**overrides) -> Comparison:
    """A significant 'Adam beats SGD by 3.2 points' comparison, with fields overridden."""
    adam_wins = Comparison(a="Adam", b="SGD", diff=0.032, ci_low=0.011, ci_high=0.050, p_value=0.01,
                           p_adjusted=0.01, paired=True, n_a=5, n_b=5)
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
    s = summarize(values)
    assert s.n == 5
    assert s.mean == pytest.approx(np.mean(values))
    assert s.sd == pytest.approx(np.std(values, ddof=1))


def test_summarize_gives_scipys_t_interval_of_the_mean():
    values = [0.91, 0.88, 0.93, 0.90, 0.87]
    low, high = stats.t.interval(0.95, 4, loc=np.mean(values), scale=stats.sem(values))
    s = summarize(values)
    assert (s.ci_low, s.ci_high) == pytest.approx((low, high))


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


def test_one_seed_gives_no_interval_and_no_verdict():
    c = compare("A", [0.90], "B", [0.60])
    assert (c.ci_low, c.ci_high) == (-np.inf, np.inf) and not c.significant
    assert "no verdict" in verdict(c) and "--seeds 3" in verdict(c)


def test_two_seeds_give_the_wide_but_honest_t_interval():
    c = compare("A", {1: 0.90, 2: 0.91}, "B", {1: 0.60, 2: 0.62})
    low, high = stats.ttest_rel([0.90, 0.91], [0.60, 0.62]).confidence_interval(0.95)
    assert (c.ci_low, c.ci_high) == pytest.approx((low, high))


# --- compare --------------------------------------------------------------------------------------


def test_compare_is_paired_when_both_arms_share_seeds():
    c = compare("A", {0: 0.90, 1: 0.80, 2: 0.85, 7: 0.5}, "B", {0: 0.88, 1: 0.79, 2: 0.86})
    assert c.paired
    assert (c.n_a, c.n_b) == (3, 3)  # only the shared seeds
    assert c.diff == pytest.approx((0.02 + 0.01 - 0.01) / 3)


def test_compare_is_unpaired_when_seeds_differ_or_values_are_plain_lists():
    assert not compare("A", {0: 0.9, 1: 0.8}, "B", {2: 0.7, 3: 0.6}).paired
    assert not compare("A", [0.9, 0.8], "B", [0.7, 0.6]).paired


def test_paired_comparison_matches_scipys_paired_t_test_and_interval():
    a, b = [0.91, 0.85, 0.88, 0.80], [0.87, 0.84, 0.86, 0.79]
    c = compare("A", dict(enumerate(a)), "B", dict(enumerate(b)))
    ref = stats.ttest_rel(a, b)
    assert c.p_value == pytest.approx(ref.pvalue)
    assert (c.ci_low, c.ci_high) == pytest.approx(tuple(ref.confidence_interval(0.95)))


def test_unpaired_comparison_matches_scipys_welch_test_and_interval():
    a, b = [0.91, 0.85, 0.88, 0.80, 0.9], [0.87, 0.84, 0.70]
    c = compare("A", a, "B", b)
    ref = stats.ttest_ind(a, b, equal_var=False)
    assert c.p_value == pytest.approx(ref.pvalue)
    assert (c.ci_low, c.ci_high) == pytest.approx(tuple(ref.confidence_interval(0.95)))


def test_pairing_removes_seed_variance():
    # Seeds vary a lot, A is consistently 0.01 above B: only the paired test can see it.
    base = {s: 0.5 + 0.1 * s for s in range(6)}
    noise = [0.001, -0.002, 0.0, 0.002, -0.001, 0.0005]
    a = {s: v + 0.01 + noise[s] for s, v in base.items()}
    paired = compare("A", a, "B", base)
    unpaired = compare("A", list(a.values()), "B", list(base.values()))
    assert paired.significant and not unpaired.significant


@pytest.mark.parametrize("paired", [True, False])
def test_identical_constant_arms_give_zero_difference_p_one_and_no_warnings(paired):
    a = {0: 0.9, 1: 0.9, 2: 0.9} if paired else [0.9, 0.9, 0.9]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        c = compare("A", a, "B", a)
    assert c.paired == paired
    assert (c.diff, c.ci_low, c.ci_high, c.p_value) == (0.0, 0.0, 0.0, 1.0)
    assert not c.significant


# --- calibration: many small simulated experiments (vectorised, the same code the verdicts use) ----

REPS = 20_000


def _fpr_bound(rate: float = ALPHA) -> float:
    return rate + 3 * np.sqrt(rate * (1 - rate) / REPS)  # the level, plus simulation error


@pytest.mark.parametrize("n", [3, 5, 10])
def test_paired_t_interval_covers_the_true_difference_at_least_93_percent_at_small_n(n):
    rng = np.random.default_rng(n)
    seed_effect = rng.normal(0, 0.05, (REPS, n))  # shared by both arms of a seed: pairing removes it
    a = 0.80 + seed_effect + rng.normal(0, 0.02, (REPS, n))
    b = 0.77 + seed_effect + rng.normal(0, 0.02, (REPS, n))
    t = paired_t(a - b)
    assert np.mean((t.low <= 0.03) & (0.03 <= t.high)) >= 0.93


@pytest.mark.parametrize("n", [3, 5, 10])
def test_welch_t_interval_covers_the_true_difference_at_least_93_percent_at_small_n(n):
    rng = np.random.default_rng(100 + n)
    a, b = rng.normal(0.80, 0.03, (REPS, n)), rng.normal(0.77, 0.01, (REPS, n))  # unequal spreads
    t = welch_t(a, b)
    assert np.mean((t.low <= 0.03) & (0.03 <= t.high)) >= 0.93


@pytest.mark.parametrize("n", [3, 5, 10])
def test_identical_arms_are_called_different_at_most_5_percent_of_the_time(n):
    rng = np.random.default_rng(200 + n)
    # test accuracy on a 359-image test split: binomial noise around a seed-dependent true accuracy
    truth = np.clip(rng.normal(0.8, 0.04, (REPS, n)), 0, 1)
    a, b = rng.binomial(359, truth) / 359, rng.binomial(359, truth) / 359
    assert np.mean(paired_t(a - b).p_value < ALPHA) <= _fpr_bound()
    assert np.mean(welch_t(a, b).p_value < ALPHA) <= _fpr_bound()


def test_a_family_of_identical_arms_is_called_different_at_most_5_percent_of_the_time():
    rng = np.random.default_rng(7)
    reps, n, pairs = 2000, 5, [("A", "B"), ("C", "B"), ("D", "B")]
    false_alarms = 0
    for _ in range(reps):
        values = {name: dict(enumerate(rng.normal(0.8, 0.02, n))) for name in "ABCD"}
        false_alarms += any(c.significant for c in compare_all(pairs, values))
    assert false_alarms / reps <= ALPHA + 3 * np.sqrt(ALPHA * (1 - ALPHA) / reps)


def test_significance_p_value_and_adjusted_interval_never_disagree():
    rng = np.random.default_rng(11)
    pairs = [("A", "B"), ("C", "B"), ("D", "B")]
    for _ in range(300):
        values = {name: dict(enumerate(rng.normal(0.8 + rng.normal(0, 0.01), 0.01, 4))) for name in "ABCD"}
        for c in compare_all(pairs, values):
            excludes_zero = c.ci_low > 0 or c.ci_high < 0
            assert excludes_zero == c.significant == (c.p_adjusted < ALPHA)


def test_significant_follows_the_adjusted_p_value():
    assert make_comparison().significant
    assert not make_comparison(p_adjusted=0.06).significant  # Holm says no


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
    comparisons = compare_all(pairs, values)
    assert [(c.a, c.b) for c in comparisons] == pairs
    assert all(c.p_adjusted >= c.p_value for c in comparisons)
    assert [c.p_adjusted for c in comparisons] == pytest.approx(holm([c.p_value for c in comparisons]))


def test_compare_all_with_one_pair_leaves_p_and_interval_unadjusted():
    values = {"Adam": {0: 0.8, 1: 0.82, 2: 0.79}, "SGD": {0: 0.78, 1: 0.8, 2: 0.79}}
    (c,) = compare_all([("Adam", "SGD")], values)
    assert c.p_adjusted == c.p_value and c.family == 1 and c.confidence == pytest.approx(0.95)


def test_holm_multipliers_are_bonferronis_for_the_smallest_p_and_one_at_most_for_the_rest():
    # sorted 0.01 (x3), 0.03 (x2), 0.04 (x1, but monotone: 0.06 / 0.04 = 1.5)
    assert holm_multipliers([0.01, 0.04, 0.03]) == pytest.approx([3, 1.5, 2])


def test_adjusted_intervals_are_wider_and_labelled_with_the_family():
    values = {"A": {0: 0.8, 1: 0.82, 2: 0.79}, "B": {0: 0.78, 1: 0.8, 2: 0.79}, "C": {0: 0.5, 1: 0.6, 2: 0.55}}
    comparisons = compare_all([("A", "B"), ("A", "C")], values)
    alone = compare("A", values["A"], "C", values["C"])  # the smaller p: Bonferroni's factor 2
    assert comparisons[1].multiplier == 2 and comparisons[1].confidence == pytest.approx(0.975)
    assert comparisons[1].ci_high - comparisons[1].ci_low > alone.ci_high - alone.ci_low
    assert all("Holm-adjusted p" in verdict(c) and "Holm-adjusted over 2 comparisons" in verdict(c)
               for c in comparisons)


# --- chance level and trends -----------------------------------------------------------------------


def test_an_arm_near_chance_is_not_above_chance():
    assert not above_chance([0.21, 0.29, 0.25], chance=0.2)  # VGG-16 in model_zoo: chance is 20%
    assert above_chance([0.85, 0.88, 0.86], chance=0.2, margin=0.05)
    assert not above_chance([0.24], chance=0.2, margin=0.05)


def test_trend_finds_a_falling_slope_and_calls_flat_data_inconclusive():
    x = np.repeat([0, 1, 2, 3], 5)
    falling = trend(x, 0.9 - 0.05 * x + np.tile([0.01, -0.01, 0.0, 0.005, -0.005], 4))
    assert falling.slope == pytest.approx(-0.05) and falling.high < 0 and falling.p_value < ALPHA
    flat = trend(x, np.tile([0.01, -0.01, 0.0, 0.005, -0.005], 4))
    assert flat.low < 0 < flat.high


# --- verdict --------------------------------------------------------------------------------------


def test_verdict_names_a_as_winner_with_the_budget_and_its_numbers():
    sentence = verdict(make_comparison(), budget="20 trials per arm, 5 seeds")
    assert sentence == ("At this budget (20 trials per arm, 5 seeds), Adam beats SGD by 3.2 points of test "
                        "accuracy (95% CI 1.1 to 5.0; p = 0.01).")


def test_verdict_names_b_as_winner_with_a_positive_effect_and_the_adjusted_level():
    c = make_comparison(diff=-0.032, ci_low=-0.050, ci_high=-0.011, p_adjusted=0.02, family=2, multiplier=2)
    assert verdict(c) == ("At this budget, SGD beats Adam by 3.2 points of test accuracy "
                          "(97.5% CI 1.1 to 5.0, Holm-adjusted over 2 comparisons; Holm-adjusted p = 0.02).")


def test_verdict_says_no_significant_difference_when_p_is_large():
    c = make_comparison(diff=0.004, ci_low=-0.012, ci_high=0.020, p_value=0.55, p_adjusted=0.55)
    assert verdict(c, budget="6 trials per arm, 10 seeds") == (
        "At this budget (6 trials per arm, 10 seeds), no significant difference: Adam - SGD = 0.4 points of "
        "test accuracy (95% CI -1.2 to 2.0; p = 0.55).")


def test_verdict_shows_no_probability_of_superiority():
    assert "P(" not in verdict(make_comparison())
