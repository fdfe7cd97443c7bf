"""The sequential rule's parts: the looks, the boundaries, and the replay the planner and the report share."""

import numpy as np
import pytest
from scipy import special, stats

from harness.analysis_plan import Design, Difference, NonInferior
from harness.inference import sequential
from harness.inference.decide import decide_all
from harness.inference.sequential import _nominal, nominal, replay, t_nominal
from harness.spec import Arm, StudySpec
from tests.tiers import slow_except


def test_looks_run_from_the_start_by_the_step_and_end_at_the_cap():
    assert Design(5, 5, 30).looks == (5, 10, 15, 20, 25, 30)
    assert Design(5, 5, 12).looks == (5, 10, 12)  # the cap is always a look
    assert Design(5).looks == Design(5, 0, 30).looks == Design(5, 5, 5).looks == (5,)


def test_a_study_declares_its_design_and_a_bad_one_is_refused():
    arms = (Arm("a", "sgd"), Arm("b", "adam"))
    spec = StudySpec(question="?", arms=arms, search_space=None, seeds=5, seed_step=5, seed_cap=20)
    assert spec.design.looks == (5, 10, 15, 20) and spec.seeds_cap == 20
    assert StudySpec(question="?", arms=arms, search_space=None, seeds=5).design.looks == (5,)
    with pytest.raises(ValueError, match="obrien_fleming, pocock"):
        StudySpec(question="?", arms=arms, search_space=None, spending="bayes")
    with pytest.raises(ValueError, match="seed_step must be a whole number from 0"):
        StudySpec(question="?", arms=arms, search_space=None, seed_step=-1)


@pytest.mark.parametrize("spending", ["obrien_fleming", "pocock"])
def test_the_boundaries_spend_exactly_alpha_over_the_looks(spending):
    """Monte Carlo of the score process: P(|Z_k| crosses c_k at some look) = alpha under the null."""
    fractions = Design(5, 5, 30).fractions
    c = stats.norm.isf(np.array(nominal(0.05, fractions, spending)) / 2)
    rng = np.random.default_rng(0)
    t = np.array(fractions)
    paths = np.cumsum(rng.normal(size=(200_000, len(t))) * np.sqrt(np.diff(t, prepend=0)), axis=1)
    crossed = (np.abs(paths / np.sqrt(t)) > c).any(axis=1).mean()
    assert abs(crossed - 0.05) < 0.002, crossed
    levels = nominal(0.05, fractions, spending)
    if spending == "obrien_fleming":  # little early, most at the cap
        assert list(levels) == sorted(levels) and levels[0] < 1e-5 and levels[-1] > 0.035


def test_interpolated_levels_match_the_exact_ones_and_one_look_is_the_fixed_level():
    fractions = Design(5, 5, 20).fractions
    for alpha in (0.05, 0.0213, 0.0125, 0.1):
        exact, fast = np.array(_nominal(alpha, fractions, "obrien_fleming")), np.array(nominal(alpha, fractions))
        assert np.allclose(fast, exact, rtol=3e-3)
    assert nominal(0.05, (1.0,)) == (0.05,)


def _crossed(design: Design, levels: tuple[float, ...], reps: int = 400_000) -> float:
    """P(|T_k| crosses look k's boundary at some look) for one comparison at the null, simulated afresh (its own
    seed, seed by seed): the boundary of a look at nominal level p is the t quantile a t interval uses."""
    rng, crossed = np.random.default_rng(11), np.zeros(reps, dtype=bool)
    x = rng.standard_normal((reps, design.looks[-1]))
    for n, level in zip(design.looks, levels, strict=True):
        t = x[:, :n].mean(axis=1) / x[:, :n].std(axis=1, ddof=1) * np.sqrt(n)
        crossed |= np.abs(t) > -special.stdtrit(n - 1, level / 2)
    return float(crossed.mean())


# model_zoo's looks and sgd_vs_adam's
@pytest.mark.parametrize("design", slow_except([Design(3, 3, 9), Design(5, 5, 20)], Design(3, 3, 9)))
def test_t_levels_spend_alpha_for_t_statistics_where_normal_theory_levels_spend_more(design):
    """At 2-4 degrees of freedom the t statistics' joint tails across looks are heavier than the normal score's:
    normal-theory levels spend more than 5%; the t levels spend it, up to the two simulations' error."""
    normal, t = _crossed(design, nominal(0.05, design.fractions)), _crossed(design, t_nominal(0.05, design.looks))
    print(f"{design.looks}: one comparison at the null crosses at some look {normal:.4f} at normal-theory levels, "
          f"{t:.4f} at t levels")
    error = 3 * np.sqrt(0.05 / sequential.PATHS + 0.05 * 0.95 / 400_000)
    assert abs(t - 0.05) < error and normal > 0.05 + 3 * np.sqrt(0.05 * 0.95 / 400_000)


def test_t_levels_are_the_same_on_every_replay_and_tend_to_normal_theory_at_large_df():
    design = Design(5, 5, 20)
    first = t_nominal(0.05, design.looks)
    sequential._t_levels.cache_clear()
    sequential._null_t.cache_clear()
    assert t_nominal(0.05, design.looks) == first  # the planner's and the report's replays agree exactly
    assert first[0] == pytest.approx(nominal(0.05, design.fractions)[0])  # the first look's t quantile, exactly
    assert all(t < z for t, z in zip(first[1:], nominal(0.05, design.fractions)[1:], strict=True))
    many = t_nominal(0.05, design.looks, df=tuple(1000.0 * n for n in design.looks))  # t with 1000s of df: z
    assert np.allclose(many, nominal(0.05, design.fractions), rtol=0.05)
    assert t_nominal(0.05, (5,)) == (0.05,)
    dfs = tuple(n - 1.0 for n in design.looks)
    for alpha in np.geomspace(0.005, 0.05, 6):  # Holm's alpha / k for families of up to 10
        # interpolated as simulated directly, up to the simulation's own error where only ~100 paths cross a look
        direct = sequential._t_levels(float(alpha), design.looks, "obrien_fleming", dfs)
        assert np.allclose(t_nominal(alpha, design.looks), direct, rtol=0.1)
    with pytest.raises(ValueError, match="at least 1 more than the last"):
        t_nominal(0.05, design.looks, df=(4.0, 4.0, 9.0, 14.0))


def _values(rng, means, n):
    shared = rng.normal(0, 0.01, n)
    return {a: {s + 1: m + shared[s] + rng.normal(0, 0.01) for s in range(n)} for a, m in means.items()}


def test_one_look_decides_exactly_as_the_fixed_design():
    rng = np.random.default_rng(1)
    family = [Difference("a", "b"), NonInferior("c", "b")]
    values = _values(rng, {"a": 0.9, "b": 0.88, "c": 0.87}, 5)
    done = {a: set(v) for a, v in values.items()}
    rule = replay(family, list(values), done, values, 0.02, Design(5))
    fixed = decide_all(family, values, 0.02)
    assert [(d.outcome, d.low, d.high, d.mde) for d in rule.decisions] == \
        [(d.outcome, d.low, d.high, d.mde) for d in fixed]
    assert rule.complete and rule.looks_done == (5,)


def test_a_plain_difference_stops_and_only_undecided_comparisons_arms_get_the_next_batch():
    rng = np.random.default_rng(2)
    values = _values(rng, {"a": 0.95, "b": 0.6, "c": 0.9, "d": 0.9}, 30)
    done = {a: set(range(1, 11)) for a in values}  # the first two looks have run
    rule = replay([Difference("a", "b"), Difference("c", "d")], list(values), done, values, 0.02, Design(5, 5, 30))
    assert rule.stopped_at[0] == 5 and rule.decisions[0].outcome == "a > b"
    assert rule.stopped_at[1] is None and rule.looks_done == (5, 10) and not rule.complete
    assert rule.wanted == {"a": 5, "b": 5, "c": 15, "d": 15}  # a and b are done; c and d run the third batch
    assert rule.where(0) == "decided at n = 5" and "pending" in rule.where(1)


def test_a_look_waits_for_every_seed_it_needs_and_a_later_seed_never_counts_early():
    rng = np.random.default_rng(3)
    values = _values(rng, {"a": 0.9, "b": 0.9}, 10)
    done = {"a": set(range(1, 11)), "b": set(range(1, 5))}  # b's seed 5 still runs
    rule = replay([Difference("a", "b")], ["a", "b"], done, values, 0.02, Design(5, 5, 10))
    assert rule.looks_done == () and rule.wanted == {"a": 5, "b": 5} and rule.where(0) == "no look yet"
    first = replay([Difference("a", "b")], ["a", "b"], {"a": set(range(1, 6)), "b": set(range(1, 6))},
                   values, 0.02, Design(5, 5, 10))
    assert first.decisions[0].estimate.n == 5  # seeds 6-10 exist but belong to the next look


def test_a_failure_rate_claim_rides_along_stays_shown_and_never_asks_for_seeds_or_decides():
    """a fails on seeds 1-9, b never (the endpoint "trained": a's failed seeds have no value): the claim that a
    fails more often is judged with the open comparisons at each look's level; once shown it stays, with its
    look's counts, and the comparison beside it, undecided, runs to the cap."""
    rng = np.random.default_rng(4)
    values = _values(rng, {"a": 0.9, "b": 0.9}, 20)
    failed = {"a": set(range(1, 10)), "b": set()}
    trained = {"a": {s: v for s, v in values["a"].items() if s not in failed["a"]}, "b": values["b"]}
    done = {a: set(range(1, 21)) for a in values}
    design = Design(10, 5, 20)
    rule = replay([Difference("a", "b")], ["a", "b"], done, trained, 0.02, design, failed=failed)
    (claim,) = rule.rates
    assert claim.more == "a" and claim.counts == ((9, 10), (0, 10))  # shown at the first look: its counts
    assert rule.stopped_at == [None] and rule.looks_done == (10, 15, 20)  # the claim decides nothing
    without = replay([Difference("a", "b")], ["a", "b"], done, trained, 0.02, design)
    assert without.rates == [] and [d.outcome for d in without.decisions] == [d.outcome for d in rule.decisions]
