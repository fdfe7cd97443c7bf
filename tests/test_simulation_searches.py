"""Search replicates (harness.inference.searches), simulated through the functions the report uses (decide_all,
replay): each arm's k searches choose configurations whose true accuracy varies from search to search (sd equal
to the seed noise's, or its variance twice the seed variance), each then runs on shared verdict seeds. The
estimand is an arm's expected accuracy over searches and seeds.

Measured (printed with -s): coverage of the interval at k = 3 and 5, family-wise error of the sequential rule
over every look, under normal and skewed seed noise.
"""

from __future__ import annotations

import numpy as np
import pytest

from harness.analysis_plan import Design, Difference, NonInferior
from harness.inference.decide import decide_all
from harness.inference.searches import differences, variance_share
from harness.inference.sequential import replay
from tests.test_simulation import MARGIN, SD_NOISE, SD_SEED, _noise, false_claim
from tests.tiers import slow_except

REPS = 4000
SEQ_REPS = 1000


def searched_values(rng, means: dict[str, float], k: int, n: int, dist: str, between: float):
    """Per arm {(search, seed): test accuracy}: search j of every arm shares the verdict seeds 1..n."""
    seed_effect = rng.normal(0, SD_SEED, n)
    out = {}
    for name, mean in means.items():
        search = rng.normal(0, between, k) if dist == "normal" else \
            -(rng.gamma(4.0, between / 2, k) - 2 * between)  # skewed: some searches find far worse configurations
        out[name] = {(j + 1, s + 1): float(mean + search[j] + seed_effect[s] + e)
                     for j in range(k) for s, e in enumerate(_noise(rng, dist, n))}
    return out


BETWEEN = {"equal": SD_NOISE, "twice": SD_NOISE * np.sqrt(2)}  # search sd: variance equal to, twice, the seed noise's


@pytest.mark.parametrize("dist", slow_except(["normal", "skewed"], "normal"))
@pytest.mark.parametrize("between", slow_except(list(BETWEEN), "twice"))
@pytest.mark.parametrize("k", slow_except([3, 5], 3))
def test_the_interval_over_searches_covers_the_optimizers_expected_accuracy(dist, between, k):
    rng = np.random.default_rng(31)
    truth = 0.01
    hits = 0
    for _ in range(REPS):
        values = searched_values(rng, {"a": 0.86, "b": 0.85}, k, 5, dist, BETWEEN[between])
        (d,) = decide_all([Difference("a", "b")], values, MARGIN, power=False)
        hits += d.low <= truth <= d.high
    coverage = hits / REPS
    print(f"coverage over searches k={k} {dist} between={between}: {coverage:.3f}")
    assert coverage >= 0.93


def test_one_search_per_arm_is_conditional_on_it_and_misses_the_search_to_search_spread():
    """The single-search design's per-seed interval covers the arms' expected accuracy far less often when searches
    differ: what searches = k fixes, measured beside it."""
    rng = np.random.default_rng(32)
    hits_one = hits_k = 0
    for _ in range(1000):
        values = searched_values(rng, {"a": 0.86, "b": 0.85}, 3, 10, "normal", BETWEEN["twice"])
        first = {a: {s: v for (j, s), v in vals.items() if j == 1} for a, vals in values.items()}
        (one,) = decide_all([Difference("a", "b")], first, MARGIN, power=False)
        (over,) = decide_all([Difference("a", "b")], values, MARGIN, power=False)
        hits_one += one.low <= 0.01 <= one.high
        hits_k += over.low <= 0.01 <= over.high
    print(f"coverage of the expected accuracy: one search {hits_one / 1000:.3f}, over 3 searches {hits_k / 1000:.3f}")
    assert hits_k / 1000 >= 0.93 > hits_one / 1000


FAMILY = (Difference("a", "b"), NonInferior("c", "d"))
NULL = {"a": 0.85, "b": 0.85, "c": 0.85, "d": 0.85 + MARGIN}  # each at its null's boundary
TRUTH = [0.0, -MARGIN]
DESIGN = Design(5, 5, 20)  # sgd_vs_adam's looks


def sequential_searched(rng, k: int, dist: str, between: float):
    values = searched_values(rng, NULL, k, DESIGN.looks[-1], dist, between)
    done = {a: set(range(1, DESIGN.looks[-1] + 1)) for a in NULL}
    return replay(FAMILY, list(NULL), done, values, MARGIN, DESIGN, power=False, failed={a: set() for a in NULL})


@pytest.mark.slow
@pytest.mark.parametrize("dist", ["normal", "skewed"])
@pytest.mark.parametrize("k", [3, 5])
def test_the_sequential_rule_over_searches_keeps_the_family_wise_error(dist, k):
    """Looks add seeds to every search; each look's t over searches keeps the error over every look at 5%."""
    rng = np.random.default_rng(33)
    errors = sum(any(false_claim(d, t) for d, t in zip(sequential_searched(rng, k, dist, BETWEEN["equal"]).decisions,
                                                      TRUTH, strict=True)) for _ in range(SEQ_REPS))
    rate = errors / SEQ_REPS
    print(f"sequential FWER over {k} searches, {dist}: {rate:.3f}")
    assert rate <= 0.05 + 3 * np.sqrt(0.05 * 0.95 / SEQ_REPS)


def test_the_search_to_search_share_of_a_difference_is_estimated_without_bias():
    """What the report prints for a pair: the between-search variance of the per-seed difference, whose true value
    is the two arms' search variances added (the shared seed effect cancels)."""
    rng = np.random.default_rng(34)
    between, within = [], []
    for _ in range(1000):
        values = searched_values(rng, {"a": 0.85, "b": 0.85}, 5, 10, "normal", SD_NOISE)
        share = variance_share(differences(values["a"], values["b"]))
        between.append(share.between)
        within.append(share.within)
    print(f"between {np.mean(between):.2e} (true {2 * SD_NOISE**2:.2e}), within {np.mean(within):.2e}")
    assert np.mean(between) == pytest.approx(2 * SD_NOISE**2, rel=0.1)
    assert np.mean(within) == pytest.approx(2 * SD_NOISE**2, rel=0.1)
