"""Specification of harness.analysis.findings: failures decided on validation and reported as results (scored on
the endpoint "all", and claims of their own beside the comparisons), the declared family kept whole, sentences
that carry kind, margin, interval, decision and power, protocol checks."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import optuna
import pandas as pd
import pytest

from harness.analysis.findings import edge_notes, findings, momentum_notes, split_notes
from harness.analysis_plan import Difference, NonInferior, Trend
from harness.ledger import Slot
from harness.schema import Attr, Outcome, Phase
from harness.spec import Arm, StudySpec

JITTER = [0.01, -0.02, 0.0, 0.015, -0.005]
SHUFFLED = [0.0, 0.015, -0.02, -0.005, 0.01]


def record(test: dict[str, list[float]], val: dict[str, list[float]] | None = None, plan=(), n_classes=5,
           diverged: dict[str, list[bool]] | None = None, endpoint: str = "all", **settings):
    """A stand-in StudyRecord: per arm, the ledger's verdict seeds 1.. with these test (and val) accuracies;
    `settings` are the StudySpec's (a sequential design, a chance margin)."""
    arms = tuple(Arm(name, "sgd") for name in test)
    spec = StudySpec(name="s", question="?", arms=arms, search_space=None, plan=tuple(plan), endpoint=endpoint,
                     **settings)
    fake = {}
    for name, values in test.items():
        blew_up = (diverged or {}).get(name, [False] * len(values))
        seeds = [_seed(name, seed, v, t, d, n_classes)
                 for seed, (t, v, d) in enumerate(zip(values, (val or {}).get(name, values), blew_up, strict=True), 1)]
        fake[name] = SimpleNamespace(verdict=seeds, slots=SimpleNamespace(confirm=seeds))
    return SimpleNamespace(spec=spec, arms=fake, n_classes=n_classes, setting=lambda key: "6")


def _seed(arm: str, seed: int, val: float, test: float, diverged: bool, classes: int) -> Slot:
    attrs = {Attr.SEED: seed, Attr.SEARCH_TRIAL: 0, Attr.MLFLOW_RUN_ID: f"run-{arm}-{seed}"}
    if diverged:
        attrs[Attr.OUTCOME] = Outcome.DIVERGED.value
    else:
        attrs[Attr.TEST] = {"acc": test, "classes": classes}
    state = optuna.trial.TrialState.FAIL if diverged else optuna.trial.TrialState.COMPLETE
    return Slot(arm, Phase.CONFIRM, optuna.trial.create_trial(state=state, value=None if diverged else val,
                                                              user_attrs=attrs))


def test_a_run_at_chance_on_validation_is_a_failure_scored_on_the_endpoint_all_and_left_out_on_trained():
    test = {"vgg-adam": [0.8 + j for j in JITTER], "vgg-sgd": [0.21, 0.88, 0.22, 0.86, 0.87]}
    found = findings(record(test, plan=[Difference("vgg-adam", "vgg-sgd")]))
    assert found.outcomes.trained["vgg-sgd"] == {2: 0.88, 4: 0.86, 5: 0.87}
    assert found.outcomes.values["vgg-sgd"] == dict(enumerate(test["vgg-sgd"], 1))  # failures at their test acc
    assert found.rates["vgg-sgd"].failed == 2 and found.rates["vgg-sgd"].n == 5
    assert len(found.decisions) == 1 and found.decisions[0].estimate.n == 5  # every seed, paired
    assert found.family == 2  # the comparison and its pair's failure-rate claim
    assert any("vgg-sgd failed to train on 2 of 5 seeds (40.0%, exact 95% CI 5.3 to 85.3%)" in s
               for s in found.sentences)
    assert "among runs that trained" not in found.sentences[0]
    trained = findings(record(test, plan=[Difference("vgg-adam", "vgg-sgd")], endpoint="trained"))
    assert trained.decisions[0].estimate.n == 3  # paired over the seeds both trained
    assert "vgg-sgd: **undecided** among runs that trained; estimate -7.3 points" in trained.sentences[0]


def test_validation_not_test_decides_a_failure():
    """A run with a good validation score and a poor test score trained: the test split must not choose."""
    r = record({"a": [0.22, 0.9, 0.91], "b": [0.9, 0.9, 0.9]}, val={"a": [0.88, 0.9, 0.91]},
               plan=[Difference("a", "b")])
    assert findings(r).rates["a"].failed == 0


def test_an_arm_that_never_trains_is_said_to_fail_and_its_comparisons_are_decided_on_the_endpoint():
    test = {"a": [0.2, 0.21, 0.19], "b": [0.9, 0.91, 0.89], "c": [0.8, 0.82, 0.81]}
    plan = [Difference("a", "b"), Difference("c", "b")]
    found = findings(record(test, plan=plan))
    assert found.family == 3 and found.decisions[0].outcome == "a < b"  # on every run's accuracy
    assert found.sentences[0].startswith("difference: a - b: **b beats a**; estimate -70.0 points")
    assert found.decisions[1].multiplier >= 1 and "Holm over 3" in found.sentences[1]  # with the rate claim
    assert "a failed to train on every seed (3 of 3, exact 95% CI 29.2 to 100.0%)." in found.sentences
    (claim,) = found.rate_claims  # 3 of 3 against 0 of 3: p = 0.1, not shown
    assert (claim.a, claim.b, claim.counts, claim.more) == ("a", "b", ((3, 3), (0, 3)), None)
    assert found.sentences[-1].startswith("Failure to train: a and b do not differ significantly: a 3 of 3")
    trained = findings(record(test, plan=plan, endpoint="trained"))
    assert trained.decisions[0].outcome == "no data"
    assert trained.sentences[0] == ("difference: a - b: no decision, a trained on no seed: it failed to train on "
                                    "every one (see the failure rates).")
    six = {arm: values * 2 for arm, values in test.items()}
    for endpoint, outcome in (("all", "a < b"), ("trained", "no data")):  # the claim decides no comparison
        found = findings(record(six, plan=plan, endpoint=endpoint))
        assert found.decisions[0].outcome == outcome
        (claim,) = found.rate_claims  # 6 of 6 against 0 of 6: p = 0.002, below 0.05 / 3
        assert claim.more == "a" and claim.p_value < 0.05 / 3
        assert found.sentences[-1].startswith("**a fails to train more often than b**: a 6 of 6 (exact 95% CI "
                                              "54.1 to 100.0%), b 0 of 6 (0.0 to 45.9%); Fisher's exact p = 0.0022, "
                                              "Holm over 3.")


def test_a_diverged_run_is_a_failure():
    r = record({"a": [0.0, 0.9, 0.91], "b": [0.9, 0.9, 0.9]}, diverged={"a": [True, False, False]},
               plan=[Difference("a", "b")])
    assert findings(r).rates["a"].failed == 1
    assert findings(r).outcomes.values["a"] == {1: 0.2, 2: 0.9, 3: 0.91}  # no model: scored at chance, 1 / 5


def test_a_non_inferiority_sentence_names_the_claim_margin_decision_and_power():
    r = record({"adam": [0.9 + j for j in SHUFFLED], "sgd": [0.9 + j for j in JITTER]},
               plan=[NonInferior("adam", "sgd", 0.05, claim="Adam >= SGD (Choi et al. 2019)")])
    (sentence,) = findings(r).sentences
    assert sentence.startswith("Adam >= SGD (Choi et al. 2019) — non-inferiority within 5.0 points: adam - sgd: ")
    assert "5 seeds paired" in sentence and "80% power to show it when a - b >= " in sentence


def test_a_decision_stopped_at_an_early_look_shows_the_estimate_over_every_seed_its_arms_ran():
    """Non-inferiority is decided at the first look; the difference of the same pair runs on to the cap, so the
    pair's arms have 10 seeds: the one estimate of the effect is over all 10, beside the one where it stopped."""
    early, late = [0.02 + j for j in JITTER], [-0.01 + j for j in SHUFFLED]
    sgd = [0.8 + j for j in SHUFFLED + JITTER]
    r = record({"adam": [s + d for s, d in zip(sgd, early + late, strict=True)], "sgd": sgd},
               plan=[NonInferior("adam", "sgd", 0.05), Difference("adam", "sgd")], seeds=5, seed_step=5, seed_cap=10)
    found = findings(r)
    assert found.rule.stopped_at[0] == 5 and found.decisions[0].estimate.n == 5  # frozen at the first look
    assert found.decisions[1].estimate.n == 10
    overall = found.overall[0]
    assert overall.n == 10 and overall.value == pytest.approx(np.mean(early + late))
    stopped = f"{100 * found.decisions[0].estimate.value:+.1f}"
    assert f"estimate at stopping, n = 5: {stopped} points (" in found.sentences[0]
    assert f"; over all 10 seeds: {100 * np.mean(early + late):+.1f} points;" in found.sentences[0]
    assert "over all" not in found.sentences[1] and "at stopping" not in found.sentences[1]  # it used every seed


def test_a_fixed_design_has_one_estimate_per_comparison():
    r = record({"adam": [0.9 + j for j in SHUFFLED], "sgd": [0.9 + j for j in JITTER]},
               plan=[NonInferior("adam", "sgd", 0.05)])
    found = findings(r)
    assert found.overall[0].value == pytest.approx(found.decisions[0].estimate.value)
    assert "over all" not in found.sentences[0] and "at stopping" not in found.sentences[0]


def test_a_trend_sentence_lists_each_step():
    r = record({"n1": [0.9 + j for j in JITTER], "n2": [0.93 + j for j in JITTER], "n3": [0.8 + j for j in SHUFFLED]},
               plan=[Trend(("n1", "n2", "n3"), "decreasing")])
    (sentence,) = findings(r).sentences
    assert "Steps: n1 -> n2 +3.0" in sentence and "n2 -> n3 -13.0" in sentence
    assert "**shown overall, but not monotone (reverses at n1 -> n2)**" in sentence


def test_too_few_updates_for_momentums_horizon_is_said():
    frame = pd.DataFrame({"opt.momentum": ["0.99"], "epochs": ["10"], "batch_size": ["32"]})
    params = {"m99": frame, "m0": frame.assign(**{"opt.momentum": ["0"]})}
    r = SimpleNamespace(overview={"sizes": {"train": 150}}, log=SimpleNamespace(params=lambda ids: params[ids[0]]),
                        arms={name: SimpleNamespace(run_ids=[name]) for name in params})
    (note,) = momentum_notes(r)
    assert note.startswith("m99: 50 updates (150 images in batches of 32, 10 epochs) against momentum 0.99's "
                           "horizon of 100 steps")
    params["m99"] = frame.assign(batch_size=["8"], epochs=["12"])
    enough = SimpleNamespace(overview=r.overview, log=r.log, arms={"m99": SimpleNamespace(run_ids=["m99"])})
    assert momentum_notes(enough) == []


def test_a_chosen_value_at_the_edge_of_its_range_is_warned():
    from optuna.distributions import FloatDistribution

    best = SimpleNamespace(params={"lr": 1.41e-5}, distributions={"lr": FloatDistribution(1e-5, 1e-2, log=True)})
    middle = SimpleNamespace(params={"lr": 3e-4}, distributions=best.distributions)
    r = SimpleNamespace(arms={"edge": SimpleNamespace(best=best), "mid": SimpleNamespace(best=middle)})
    (note,) = edge_notes(r)
    assert note.startswith("edge: its chosen lr = 1.41e-05 lies at the low edge of the searched range")
    assert np.isfinite(best.params["lr"])


def test_splits_too_small_to_rank_trials_or_resolve_the_margin_are_reported():
    spec = StudySpec(name="s", question="?", arms=(Arm("a", "sgd"),), search_space=None)
    small = SimpleNamespace(overview={"sizes": {"train": 12, "val": 4, "test": 30}}, n_classes=3, spec=spec)
    val, test = split_notes(small)
    assert val.startswith("the validation split holds 4 images for 3 classes, so validation accuracy moves in "
                          "steps of 25 points") and "val_fraction" in val
    assert test.startswith("the test split holds 30 images, so one run's test accuracy moves in steps of 3.3 points")
    ample = SimpleNamespace(overview={"sizes": {"train": 150, "val": 150, "test": 180}}, n_classes=5, spec=spec)
    assert split_notes(ample) == []


def test_one_seed_and_hopeless_power_are_said_plainly():
    one = findings(record({"a": [0.9], "b": [0.8]}, plan=[Difference("a", "b")])).sentences[0]
    assert "1 seed" in one and "1 seeds" not in one and "unpaired" not in one
    wild = findings(record({"a": [0.5, 0.95], "b": [0.9, 0.45]}, plan=[Difference("a", "b")])).sentences[0]
    assert "no 80% power at any possible difference" in wild and "MDE 2" not in wild.split("(MDE")[0]


def test_a_decision_on_skewed_per_seed_differences_says_its_level_may_not_hold():
    skewed = findings(record({"a": [0.80, 0.81, 0.80, 0.81, 0.70], "b": [0.79, 0.80, 0.79, 0.80, 0.79]},
                             plan=[Difference("a", "b")]))
    d = skewed.decisions[0]
    assert d.skewed and d.estimate.skew == pytest.approx(-1.5)  # four seeds at +1 point, one at -9
    assert skewed.sentences[0].endswith(" Per-seed differences skewed (skewness -1.5): the level may not hold.")
    plain = findings(record({"a": [0.8 + j for j in JITTER], "b": [0.79 + j for j in SHUFFLED]},
                            plan=[Difference("a", "b")]))
    assert not plain.decisions[0].skewed and "skewed" not in plain.sentences[0]
