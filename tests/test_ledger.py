"""Specification of harness.ledger: what each slot produced, as Optuna records it, and what it counts for."""

from __future__ import annotations

import numpy as np
import optuna
import pytest

from harness import ledger
from harness.schema import Attr, Phase, StudyAttr

LR = optuna.distributions.FloatDistribution(1e-4, 1.0, log=True)


def _trial(state: str, value=None, history=(), outcome: str = "", number: int = 0, **attrs) -> optuna.trial.FrozenTrial:
    trial = optuna.trial.create_trial(state=optuna.trial.TrialState[state], value=value, params={"lr": 0.1},
                                      distributions={"lr": LR}, intermediate_values=dict(enumerate(history)),
                                      user_attrs={Attr.OUTCOME: outcome, **attrs} if outcome else attrs)
    trial.number = number
    return trial


def _seed(seed: int, state: str, val=None, test=None, outcome: str = "", trial: int = 3) -> ledger.Slot:
    attrs = {Attr.SEED: seed, Attr.SEARCH_TRIAL: trial, Attr.MLFLOW_RUN_ID: f"run-{seed}-{state}"}
    if test is not None:
        attrs[Attr.TEST] = {"acc": test, "classes": 5}
    return ledger.Slot("a", Phase.CONFIRM, _trial(state, val, (), outcome, **attrs))


def test_every_search_slot_the_budget_paid_for_scores():
    def score(*args):
        return ledger.Slot("a", Phase.SEARCH, _trial(*args)).budget_value

    assert score("COMPLETE", 0.8, [0.5, 0.8]) == 0.8
    assert score("PRUNED", None, [0.3, 0.45, 0.4]) == 0.45  # its best before pruning
    assert score("FAIL", None, [0.3], "diverged") == 0.0  # no model
    assert np.isnan(score("FAIL", None, [0.3], "failed"))


def test_a_slot_reads_its_results_and_run_id_from_optuna():
    s = _seed(2, "COMPLETE", 0.9, 0.85)
    assert (s.seed, s.search_trial, s.val_acc, s.test_acc, s.classes, s.run_id) == (2, 3, 0.9, 0.85, 5,
                                                                                      "run-2-COMPLETE")
    assert s.counted and s.is_verdict and not s.diverged


def test_verdict_results_count_diverged_and_raised_seeds_as_failures_and_skip_cut_off_ones():
    """Each endpoint's values: every finished verdict seed (a run that failed to train at its test accuracy, one
    that left no model at chance), or the seeds that trained."""
    found = ledger.verdict_results([
        _seed(1, "COMPLETE", 0.9, 0.88),
        _seed(2, "FAIL", outcome="diverged"),
        _seed(3, "FAIL", outcome="failed"),  # raised: a result, rerunning would repeat it
        _seed(4, "FAIL", outcome="interrupted"),  # cut off: runs again, not a result
        _seed(5, "COMPLETE", 0.21, 0.2),  # validation within the chance margin of chance (1/5)
        _seed(1_000_001, "COMPLETE", 0.95, 0.9),  # a selection seed: chooses, never judges
    ], chance_margin=0.05, chance=0.2)
    assert found.done == {1, 2, 3, 5}
    assert found.trained == found.values("trained") == {1: 0.88}
    assert found.failed == {2, 3, 5}
    assert found.scored == found.values("all") == {1: 0.88, 2: 0.2, 3: 0.2, 5: 0.2}


def test_a_finished_seed_missing_its_test_accuracy_asks_for_the_migration():
    with pytest.raises(ValueError, match="--migrate"):
        ledger.verdict_results([_seed(1, "COMPLETE", 0.9)], chance_margin=0.05, chance=0.2)


def test_the_chosen_trial_is_the_selected_one_else_the_best_with_ties_to_the_lower_number():
    study = optuna.create_study(direction="maximize")
    search = [ledger.Slot("a", Phase.SEARCH, _trial("COMPLETE", v, number=n)) for n, v in enumerate([0.7, 0.9, 0.9])]
    arm = ledger.ArmLedger("a", study, search, [])
    assert arm.best.number == 1
    study.set_user_attr(StudyAttr.SELECTED_TRIAL, 0)
    assert arm.best.number == 0


def test_the_verdict_holds_the_chosen_trials_counted_seeds_and_counts_those_cut_off():
    study = optuna.create_study(direction="maximize")
    search = [ledger.Slot("a", Phase.SEARCH, _trial("COMPLETE", 0.9, number=3))]
    confirm = [_seed(2, "COMPLETE", 0.9, 0.8), _seed(1, "FAIL", outcome="diverged"), _seed(3, "FAIL", outcome="stale"),
               _seed(1, "COMPLETE", 0.9, 0.7, trial=4)]  # another trial's seed: not this verdict
    arm = ledger.ArmLedger("a", study, search, confirm)
    assert [(s.seed, s.test_acc) for s in arm.verdict()] == [(1, None), (2, 0.8)]  # diverged: no model to test
    assert [s.score(0.2) for s in arm.verdict()] == [0.2, 0.8]  # ... scored at chance over all runs
    assert arm.cut_off() == 1


def test_selection_means_use_the_selection_seeds_and_score_a_failed_seed_0():
    confirm = [_seed(1_000_001, "COMPLETE", 0.8, trial=3), _seed(1_000_002, "FAIL", outcome="diverged", trial=3),
               _seed(1_000_001, "COMPLETE", 0.6, trial=5), _seed(1, "COMPLETE", 0.99, 0.9, trial=5)]
    assert ledger.selection_means(confirm) == {3: 0.4, 5: 0.6}
    assert ledger.selection_means(confirm, selecting=False) == {3: 0.4, 5: pytest.approx(0.795)}


def test_chance_comes_from_the_arms_tested_runs_else_its_declared_classes_else_the_other_arms():
    from harness.spec import Arm, StudySpec, TrialConfig

    arms = (Arm("a", "sgd"), Arm("b", "sgd", fixed={"target_classes": (1, 2, 3, 4)}), Arm("c", "sgd"))
    spec = StudySpec(name="s", question="?", arms=arms, search_space=None,
                     base=TrialConfig(target_classes=None))
    diverged = _seed(1, "FAIL", outcome="diverged")
    found = ledger.chances(spec, {"a": [diverged, _seed(2, "COMPLETE", 0.9, 0.8)], "b": [diverged], "c": [diverged]})
    assert found == {"a": 1 / 5, "b": 1 / 4, "c": 1 / 5}  # a's runs record 5 classes; b declares 4; c: a's
    digits = ledger.chances(spec, {"a": [diverged], "b": [], "c": []})  # no run tested: the dataset's classes
    assert digits["a"] == digits["c"] == 1 / 10
