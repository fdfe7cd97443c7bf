"""Specification of harness.inference.stats: summaries, Holm, expected max (the building blocks the decisions use)."""

import itertools
import warnings

import numpy as np
import pytest
from scipy import stats

from harness.inference.stats import expected_max, holm, holm_multipliers, summarize

# --- expected_max (Dodge et al. 2019) -------------------------------------------------------------


def test_expected_max_matches_hand_computation_on_three_values():
    # v = [0.5, 0.7, 0.9]; subsets drawn without replacement
    # n=1: the mean, 0.7; n=2: max of {0.5,0.7}, {0.5,0.9}, {0.7,0.9} = (0.7 + 0.9 + 0.9) / 3; n=3: the best
    np.testing.assert_allclose(expected_max([0.9, 0.5, 0.7]), [0.7, 2.5 / 3, 0.9])


def test_expected_max_is_the_mean_best_over_every_subset():
    values = np.random.default_rng(5).uniform(0.3, 0.9, size=8)
    brute = [np.mean([max(c) for c in itertools.combinations(values, n)]) for n in range(1, 9)]
    np.testing.assert_allclose(expected_max(values), brute)


def test_expected_max_stops_at_the_number_of_trials():
    curve = expected_max([0.5, 0.7, 0.9], n_max=200)
    assert len(curve) == 3 and curve[-1] == pytest.approx(0.9)


def test_expected_max_is_unbiased_within_a_fifth_of_a_point():
    """Over many searches of N trials, the estimate at every n averages the true expected best of n draws."""
    rng = np.random.default_rng(0)
    population = rng.beta(8, 2, size=200_000)  # validation accuracies skewed to the ceiling
    N, reps = 12, 3000
    estimates = np.array([expected_max(rng.choice(population, N)) for _ in range(reps)])
    truth = [np.mean(np.max(rng.choice(population, (100_000, n)), axis=1)) for n in range(1, N + 1)]
    assert np.max(np.abs(estimates.mean(axis=0) - truth)) < 0.002


def test_expected_max_is_monotone_non_decreasing():
    values = np.random.default_rng(0).uniform(0.1, 0.9, size=30)
    assert np.all(np.diff(expected_max(values, n_max=50)) >= -1e-12)


def test_expected_max_drops_failed_trials():
    np.testing.assert_allclose(expected_max([0.5, np.nan, 0.7, 0.9]), expected_max([0.5, 0.7, 0.9]))
    assert len(expected_max([0.5, np.nan, 0.7, 0.9])) == 3  # default budget = number of finite trials


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


# --- Holm -----------------------------------------------------------------------------------------


def test_holm_matches_hand_worked_example():
    # sorted: 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 = 0.04 -> monotone: 0.03, 0.06, 0.06
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])


def test_holm_is_capped_at_one_and_identity_for_a_single_test():
    assert holm([0.4, 0.5, 0.9]) == pytest.approx([1.0, 1.0, 1.0])
    assert holm([0.2]) == pytest.approx([0.2])


def test_holm_multipliers_are_bonferronis_for_the_smallest_p_and_one_at_most_for_the_rest():
    # sorted 0.01 (x3), 0.03 (x2), 0.04 (x1, but monotone: 0.06 / 0.04 = 1.5)
    assert holm_multipliers([0.01, 0.04, 0.03]) == pytest.approx([3, 1.5, 2])
