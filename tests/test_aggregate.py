"""harness.inference.aggregate: verdicts over many workloads, checked by hand on small cases and by simulation
(coverage, false-positive rate, power) under normal and skewed seed noise and workload effects."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from harness.analysis.workloads import GENERAL
from harness.inference.aggregate import (
    heterogeneity,
    improvement_probability,
    interquartile_mean,
    iqm_interval,
    normalised,
    performance_profile,
    probability_of_improvement,
    time_to_target,
)
from tests.tiers import slow_except

REPS = 1200  # simulated suites per setting: a rate's Monte Carlo standard error is about 0.006
WORKLOADS, SEEDS = 10, 10


def level_bound(reps: int, alpha: float = 0.05) -> float:
    """The nominal level plus three Monte Carlo standard errors: a calibrated test stays under it."""
    return alpha + 3 * math.sqrt(alpha * (1 - alpha) / reps)


def test_probability_of_improvement_counts_pairs_and_halves_ties():
    assert improvement_probability([1, 2, 3], [2]) == pytest.approx(0.5)  # below, tie, above
    assert improvement_probability([0.9, 0.8], [0.7, 0.8]) == pytest.approx(3.5 / 4)
    assert math.isnan(improvement_probability([], [1.0]))


def test_probability_of_improvement_averages_over_workloads_with_a_t_interval_over_them():
    a = {"w1": [0.9, 0.8], "w2": [0.5, 0.5], "w3": [0.6], "only_a": [1.0]}
    b = {"w1": [0.7, 0.8], "w2": [0.6, 0.6], "w3": [0.6]}
    result = probability_of_improvement(a, b)
    per = [3.5 / 4, 0.0, 0.5]
    assert result.per_workload == pytest.approx(dict(zip(["w1", "w2", "w3"], per)))
    half = stats.t.ppf(0.975, 2) * np.std(per, ddof=1) / np.sqrt(3)
    assert (result.estimate, result.low, result.high) == pytest.approx(
        (np.mean(per), max(0.0, np.mean(per) - half), min(1.0, np.mean(per) + half)))


def test_normalised_scores_run_from_chance_to_the_best_arms_mean():
    runs = {"a": {"w": [0.6, 1.0]}, "b": {"w": [0.4, 0.6]}}
    scores = normalised(runs, {"w": 0.2})
    assert scores["a"]["w"] == pytest.approx([(0.6 - 0.2) / 0.6, (1.0 - 0.2) / 0.6])  # best mean 0.8
    assert scores["b"]["w"] == pytest.approx([(0.4 - 0.2) / 0.6, (0.6 - 0.2) / 0.6])


def test_the_interquartile_mean_pools_runs_and_drops_each_outer_quarter():
    assert interquartile_mean({"w1": [1, 2, 3, 4], "w2": [5, 6, 7, 8]}) == pytest.approx(4.5)
    assert interquartile_mean({"w": [0, 0.5, 0.5, 100]}) == pytest.approx(0.5)  # one wild run does not move it


def test_heterogeneity_by_hand():
    a = {"w1": [1.0, 2.0, 3.0], "w2": [5.0, 6.0, 7.0]}
    b = {"w1": [0.0, 1.0, 2.0], "w2": [0.0, 1.0, 2.0]}  # differences 1 and 5, each with variance 0 -> tiny
    h = heterogeneity(a, b)
    assert h.df == 1 and h.p_value < 1e-6 and h.i_squared > 0.99 and set(h.outliers) == {"w1", "w2"}
    a2 = {"w1": [1.0, 3.0, 2.0], "w2": [2.0, 1.0, 3.0]}
    b2 = {"w1": [1.0, 2.0, 3.0], "w2": [1.0, 2.0, 3.0]}  # paired differences (0, 1, -1) and (1, -1, 0)
    h2 = heterogeneity(a2, b2)
    assert h2.q == pytest.approx(0.0) and h2.p_value > 0.9 and h2.i_squared == 0.0
    assert heterogeneity({"w": [1.0, 2.0]}, {"w": [1.0, 2.0]}) is None  # one workload: nothing to compare


# --- simulation: suites drawn from known distributions ----------------------------------------------


def _true_p(delta: np.ndarray, noise: str, sigma: float) -> np.ndarray:
    """P(X_A > X_B) on a workload whose arms differ by delta, seed noise sigma: Normal noise gives
    Phi(delta / (sigma sqrt 2)); exponential noise (skewed, like accuracies near a ceiling) a Laplace difference."""
    if noise == "normal":
        return stats.norm.cdf(delta / (sigma * np.sqrt(2)))
    z = delta / sigma
    return np.where(z >= 0, 1 - 0.5 * np.exp(-z), 0.5 * np.exp(z))


def _effects(rng: np.random.Generator, spread: str, mean: float, tau: float, size) -> np.ndarray:
    if spread == "normal":
        return mean + tau * rng.standard_normal(size)
    return mean + tau * (rng.exponential(1.0, size) - 1.0)  # skewed: most workloads near, a few far


def _suites(rng, noise: str, spread: str, mean: float, tau: float, sigma: float = 0.02):
    """REPS suites of WORKLOADS workloads x SEEDS seeds: arm A = base + effect + noise, arm B = base + noise."""
    delta = _effects(rng, spread, mean, tau, (REPS, WORKLOADS))
    base = 0.7 + 0.1 * rng.standard_normal((REPS, WORKLOADS, 1))  # workloads differ in difficulty
    draw = (lambda: sigma * rng.standard_normal((REPS, WORKLOADS, SEEDS))) if noise == "normal" else \
        (lambda: sigma * (rng.exponential(1.0, (REPS, WORKLOADS, SEEDS)) - 1.0))
    return base + delta[..., None] + draw(), base + draw(), delta


def _as_suite(a: np.ndarray, b: np.ndarray) -> tuple[dict, dict]:
    return ({f"w{i}": a[i] for i in range(len(a))}, {f"w{i}": b[i] for i in range(len(b))})


@pytest.mark.parametrize("noise", slow_except(["normal", "exponential"], "normal"))
@pytest.mark.parametrize("spread", slow_except(["normal", "skewed"], "normal"))
def test_the_interval_of_p_improvement_covers_the_population_value(noise, spread):
    rng, sigma, mean, tau = np.random.default_rng(7), 0.02, 0.01, 0.015
    truth = float(_true_p(_effects(np.random.default_rng(0), spread, mean, tau, 400_000), noise, sigma).mean())
    a, b, _ = _suites(rng, noise, spread, mean, tau, sigma)
    covered = [(r.low <= truth <= r.high) for r in (probability_of_improvement(*_as_suite(a[k], b[k]))
                                                   for k in range(REPS))]
    rate = float(np.mean(covered))
    print(f"coverage of P(A > B) over {WORKLOADS} workloads, noise {noise}, effects {spread}: {rate:.3f} "
          f"(truth {truth:.3f})")
    assert rate >= 0.93


@pytest.mark.parametrize("noise", ["normal", "exponential"])
def test_identical_arms_give_p_one_half_and_few_false_positives(noise):
    a, b, _ = _suites(np.random.default_rng(11), noise, "normal", 0.0, 0.0)
    results = [probability_of_improvement(*_as_suite(a[k], b[k])) for k in range(REPS)]
    estimate = np.mean([r.estimate for r in results])
    false_positive = np.mean([r.p_value < 0.05 for r in results])
    print(f"identical arms, noise {noise}: mean P(A > B) {estimate:.3f}, false-positive rate {false_positive:.3f}")
    assert abs(estimate - 0.5) < 0.01 and false_positive <= level_bound(REPS)


def test_a_real_effect_across_workloads_is_found():
    a, b, _ = _suites(np.random.default_rng(5), "normal", "normal", 0.02, 0.01)  # a point's worth of sigma
    power = np.mean([probability_of_improvement(*_as_suite(a[k], b[k])).p_value < 0.05 for k in range(REPS)])
    print(f"power of P(A > B) at an effect of one seed sd, {WORKLOADS} workloads: {power:.3f}")
    assert power >= 0.8


@pytest.mark.parametrize("noise", slow_except(["normal", "exponential"], "normal"))
def test_heterogeneity_is_rarely_claimed_for_one_effect_and_found_for_effects_that_differ(noise):
    rng, reps = np.random.default_rng(3), REPS // 4  # the Alexander-Govern test takes a few ms a suite
    a, b, _ = _suites(rng, noise, "normal", 0.01, 0.0)  # the same effect on every workload
    fpr = np.mean([heterogeneity(*_as_suite(a[k], b[k])).p_value < 0.05 for k in range(reps)])
    a, b, _ = _suites(rng, noise, "normal", 0.01, 0.02)  # effects spread as wide as the seed noise
    power = np.mean([heterogeneity(*_as_suite(a[k], b[k])).p_value < 0.05 for k in range(reps)])
    print(f"heterogeneity (Alexander-Govern), noise {noise}: false-positive rate {fpr:.3f}, power {power:.3f}")
    assert fpr <= level_bound(reps) and power >= 0.8


def test_time_to_target_counts_the_epoch_that_reaches_it_and_its_seconds():
    assert time_to_target([0.2, 0.5, 0.9, 0.95], [1.0, 2.0, 3.0, 4.0], 0.9) == (3.0, 6.0)
    assert time_to_target([0.2, 0.5], [1.0, 1.0], 0.9) == (math.inf, math.inf)  # never reached


def test_a_performance_profile_is_the_share_of_workloads_within_tau_of_the_fastest():
    times = {"a": {"w1": 1.0, "w2": 4.0, "w3": math.inf}, "b": {"w1": 2.0, "w2": 2.0, "w3": 5.0}}
    profile = performance_profile(times, [1.0, 2.0, 4.0])
    assert profile["a"] == pytest.approx([1 / 3, 2 / 3, 2 / 3])  # w3: never reached, counts against a always
    assert profile["b"] == pytest.approx([2 / 3, 1.0, 1.0])


def test_the_iqm_interval_resamples_within_each_workload():
    iv = iqm_interval({"w1": [0.1, 0.2, 0.3, 0.4], "w2": [0.5, 0.6, 0.7, 0.8]})
    assert iv.estimate == pytest.approx(0.45) and iv.low < 0.45 < iv.high
    lone = iqm_interval({"w1": [0.5], "w2": [0.6]})  # one run a workload: no spread to resample
    assert lone.estimate == pytest.approx(0.55) and math.isnan(lone.low)


@pytest.mark.parametrize("noise", slow_except(["normal", "exponential"], "normal"))
@pytest.mark.parametrize("seeds", slow_except([5, 10], 10))
def test_the_stratified_bootstrap_interval_of_the_iqm_covers_it(noise, seeds):
    """Six workloads of different levels, `seeds` runs each: the interval is for these workloads, runs drawn
    again, so the truth is the IQM of their pooled run distribution."""
    rng, reps, workloads = np.random.default_rng(13), 400, 6
    levels = np.linspace(0.6, 1.0, workloads)[:, None]

    def draw(n):
        z = rng.standard_normal((workloads, n)) if noise == "normal" else rng.exponential(1.0, (workloads, n)) - 1
        return levels + 0.05 * z

    truth = stats.trim_mean(draw(200_000).ravel(), 0.25)
    covered = []
    for k in range(reps):
        x = draw(seeds)
        iv = iqm_interval({f"w{i}": x[i] for i in range(workloads)}, resamples=1000, seed=k)
        covered.append(iv.low <= truth <= iv.high)
    rate = float(np.mean(covered))
    print(f"coverage of the IQM's stratified bootstrap, {workloads} workloads x {seeds} seeds, noise {noise}: "
          f"{rate:.3f}")
    # the claim, 0.95, less three Monte Carlo standard errors; skewed noise at 5 seeds a workload is the one setting
    # that falls short (0.93 over 1000 suites, 0.90 here; docs/statistics.md says so)
    assert rate >= (0.88 if noise == "exponential" and seeds == 5 else 0.95 - 3 * math.sqrt(0.95 * 0.05 / reps))


SHAPE = {"w0": "c0", "w1": "c0", "w2": "c0", "w3": "w3", "w4": "w4"}  # transfer_suite's: 3 of 5 share a task


@pytest.mark.parametrize("noise", slow_except(["normal", "exponential"], "normal"))
def test_workloads_that_share_a_task_are_one_unit_and_a_suite_of_few_tasks_claims_nothing(noise):
    """No effect on average over tasks, but each task its own (shared by its workloads). At transfer_suite's shape
    the 5 workloads as 5 units claim an effect far too often; the tasks as units, a t over 3 bounded P's, still
    over-claims; so below GENERAL tasks the suite describes and does not claim. At GENERAL tasks (12 workloads,
    3 of which share one task) the claim keeps its level."""
    rng, sigma, tau = np.random.default_rng(23), 0.02, 0.02
    rates = {}
    for shape in (SHAPE, {f"w{i}": "c0" if i < 3 else f"w{i}" for i in range(12)}):
        width, tasks = len(shape), len(set(shape.values()))
        effect = rng.standard_normal((REPS, tasks)) * tau
        delta = effect[:, [sorted(set(shape.values())).index(shape[f"w{i}"]) for i in range(width)]]
        base = 0.7 + 0.1 * rng.standard_normal((REPS, width, 1))
        draw = (lambda w=width: sigma * rng.standard_normal((REPS, w, SEEDS))) if noise == "normal" else \
            (lambda w=width: sigma * (rng.exponential(1.0, (REPS, w, SEEDS)) - 1.0))
        a, b = base + delta[..., None] + draw(), base + draw()
        for unit, clusters, least in (("workloads", None, 2), ("tasks, t", shape, 2), ("suite", shape, GENERAL)):
            found = [probability_of_improvement(*_as_suite(a[k], b[k]), clusters=clusters, min_units=least)
                     for k in range(REPS)]
            rates[(tasks, unit)] = np.mean([r.p_value < 0.05 for r in found])
    print(f"{noise}: false-positive rates by (tasks, unit): " + ", ".join(f"{k}: {v:.3f}" for k, v in rates.items()))
    assert rates[(3, "suite")] == 0 and rates[(3, "workloads")] > 0.15 and rates[(3, "tasks, t")] > 0.05
    assert rates[(GENERAL, "suite")] <= level_bound(REPS)


def test_one_cluster_gives_an_estimate_and_no_interval():
    a = {"w0": [0.9, 0.8], "w1": [0.7, 0.9]}
    b = {"w0": [0.5, 0.6], "w1": [0.6, 0.5]}
    result = probability_of_improvement(a, b, clusters={"w0": "c", "w1": "c"})
    assert result.estimate == 1.0 and result.clusters == 1
    assert np.isnan(result.low) and np.isnan(result.high) and np.isnan(result.p_value)
