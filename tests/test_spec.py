import dataclasses
import re

import pytest

from harness.analysis_plan import Difference, Equivalent, Interaction, NonInferior, Trend
from harness.spec import Arm, StudySpec, TrialConfig
from harness.study_file import list_studies, load_study


def test_list_studies_finds_the_default_study():
    assert "sgd_vs_adam" in list_studies()


def test_unknown_study_names_the_valid_choices():
    with pytest.raises(ValueError, match="sgd_vs_adam"):
        load_study("no_such_study")


def test_flat_params_spell_out_optimizer_params():
    flat = TrialConfig(optimizer_params={"momentum": 0.9}).flat()
    assert flat["opt.momentum"] == 0.9 and "optimizer_params" not in flat


def test_arm_config_sets_optimizer_strategy_and_fixed_values_over_the_base():
    arm = Arm("adam-frozen", "adam", "linear_probe", fixed={"model": "resnet18"})
    cfg = arm.config(TrialConfig(model="lenet5", optimizer="sgd"), lr=0.1)
    assert (cfg.arm, cfg.optimizer, cfg.strategy, cfg.model, cfg.lr) == ("adam-frozen", "adam", "linear_probe",
                                                                         "resnet18", 0.1)


def test_default_study_declares_non_inferiority_and_difference_frozen_and_unfrozen():
    study = load_study("sgd_vs_adam")
    assert {a.name for a in study.arms} == {"sgd-frozen", "adam-frozen", "sgd-unfrozen", "adam-unfrozen"}
    assert (study.searches, study.n_trials, study.seeds, study.sampler) == (5, 5, 5, "qmc")
    assert [(c.kind, c.label, getattr(c, "margin", None)) for c in study.family] == [
        ("non-inferiority", "adam-frozen - sgd-frozen", 0.01),
        ("non-inferiority", "adam-unfrozen - sgd-unfrozen", 0.01),
        ("difference", "adam-frozen - sgd-frozen", None), ("difference", "adam-unfrozen - sgd-unfrozen", None)]


@pytest.mark.parametrize("name", list_studies())
def test_every_committed_study_declares_its_plan(name):
    study = load_study(name, suites=True)
    if not isinstance(study, StudySpec):  # a suite: its workloads are variants of a study file, checked as one
        study = load_study(study.study)
    assert study.plan


@pytest.mark.parametrize("name", list_studies())
def test_every_committed_margin_is_declared_with_its_reason(name):
    study = load_study(name, suites=True)
    if not isinstance(study, StudySpec):
        study = load_study(study.study)
    for c in study.plan:
        if isinstance(c, NonInferior | Equivalent):
            assert c.margin is not None and c.reason.strip(), f"{name}: {c.kind} {c.label} declares no margin reason"


def test_without_a_plan_every_pair_is_a_difference():
    arms = tuple(Arm(n, "sgd") for n in ("a", "b", "c"))
    assert [c.label for c in StudySpec(name="s", question="?", arms=arms, search_space=None).family] == [
        "a - b", "a - c", "b - c"]


@pytest.mark.parametrize(("plan", "message"), [
    ((Difference("a", "nope"),), "names unknown arms nope; arms: a, b, c"),
    ((Trend(("a", "b", "c"), "sideways"),), "choose decreasing or increasing"),
    ((Trend(("a", "b"), "decreasing"),), "needs 3 or more arms"),
    ((NonInferior("a", "b", 2.0),), "margin 2.0 must lie between 0 and 1"),
    ((Equivalent("a", "b", reason="a point matters"),), "reason= explains a margin, but none is declared"),
    ((Difference("a", "b"), Difference("a", "b")), "declared twice"),
])
def test_a_bad_plan_is_refused_naming_the_valid_choices(plan, message):
    arms = tuple(Arm(n, "sgd") for n in ("a", "b", "c"))
    with pytest.raises(ValueError, match=re.escape(message)):
        StudySpec(name="s", question="?", arms=arms, search_space=None, plan=plan)


def test_a_margin_reason_must_be_text():
    arms = tuple(Arm(n, "sgd") for n in ("a", "b"))
    with pytest.raises(TypeError, match="reason must be text"):
        StudySpec(name="s", question="?", arms=arms, search_space=None, plan=(NonInferior("a", "b", 0.01, reason=1),))
    declared = NonInferior("a", "b", 0.01, reason="the smallest loss a user would act on")
    assert StudySpec(name="s", question="?", arms=arms, search_space=None, plan=(declared,)).family == (declared,)


def test_a_seed_cap_below_seeds_is_refused_naming_both():
    arms = (Arm("a", "sgd"), Arm("b", "adam"))
    with pytest.raises(ValueError, match=re.escape("seed_cap must be at least seeds (5) or None; got 3")):
        StudySpec(question="?", arms=arms, search_space=None, seeds=5, seed_step=5, seed_cap=3)
    assert StudySpec(question="?", arms=arms, search_space=None, seeds=5, seed_step=5, seed_cap=5).seeds_cap == 5


def test_more_seeds_asked_for_than_the_files_cap_is_that_fixed_number():
    spec = load_study("sgd_vs_adam")  # 5 seeds, 5 more while undecided, up to 10
    fixed = spec.variant(seeds=spec.seed_cap + 5)
    assert fixed.design.looks == (spec.seed_cap + 5,) and fixed.seed_cap is None


def test_data_root_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("HARNESS_DATA_ROOT", "/somewhere")
    assert TrialConfig().data_root == "/somewhere"
    assert dataclasses.replace(TrialConfig(), data_root="x").data_root == "x"


# --- confirmation seeds vary every source of variance the study names ---------------------------------------


def _spec(**kwargs):
    from harness.spec import StudySpec

    return StudySpec(name="s", question="?", arms=(Arm("a", "sgd"),), search_space=lambda t, a: {}, **kwargs)


def test_confirmation_seed_varies_init_partition_and_pretraining_by_default():
    from harness.spec import confirmation_config

    cfg = confirmation_config(_spec(), TrialConfig(weights="source", lr=0.3), 4)
    assert (cfg.seed, cfg.partition_seed, cfg.pretrain_seed, cfg.lr, cfg.split_seed) == (4, 4, 4, 0.3, 0)


def test_confirmation_seed_varies_only_what_the_study_names():
    from harness.spec import confirmation_config

    cfg = confirmation_config(_spec(vary=("seed",)), TrialConfig(weights="source"), 4)
    assert (cfg.seed, cfg.partition_seed, cfg.pretrain_seed) == (4, 0, 0)


def test_pretraining_seed_is_left_alone_without_source_weights():
    from harness.spec import confirmation_config

    assert confirmation_config(_spec(), TrialConfig(weights="none"), 4).pretrain_seed == 0


def test_partition_seed_reshuffles_train_and_val_but_never_the_test_split():
    from harness.learn.data import make_task
    from harness.learn.models import preprocessing

    pre = preprocessing("lenet5", "none")
    a, b = (make_task(TrialConfig(partition_seed=s), pre) for s in (0, 1))
    assert a.fingerprints()["test"] == b.fingerprints()["test"]
    assert a.fingerprints()["train"] != b.fingerprints()["train"] and a.fingerprints()["val"] != b.fingerprints()["val"]


def test_pretraining_seed_keys_its_own_checkpoint():
    from harness.learn.pretrain import checkpoint_key, pretrain_config

    assert pretrain_config(TrialConfig(pretrain_seed=2)).seed == 2
    assert pretrain_config(TrialConfig(seed=5, partition_seed=5)) == pretrain_config(TrialConfig())
    assert checkpoint_key(TrialConfig(pretrain_seed=1)) != checkpoint_key(TrialConfig())


@pytest.mark.parametrize("plan, said", [
    ((Difference("a", "a"),), "compares arm 'a' with itself"),
    ((NonInferior("b", "b"),), "compares arm 'b' with itself"),
    ((Interaction(("a", "b"), ("a", "b")),), "the two pairs must differ"),
    ((Interaction(("a", "b"), ("b", "a")),), "the two pairs must differ"),
    ((Difference("a", "b"), Difference("b", "a")), "declared twice (once as a - b)"),
    ((Equivalent("a", "b"), Equivalent("b", "a")), "declared twice (once as a - b)"),
    ((Trend(("a", "b", "a")),), "names an arm twice"),
])
def test_a_plan_comparing_an_arm_with_itself_or_asking_one_question_twice_is_refused(plan, said):
    arms = (Arm("a", "sgd"), Arm("b", "adam"))
    with pytest.raises(ValueError, match=re.escape(said)):
        StudySpec(question="?", arms=arms, search_space=None, plan=plan)


def test_non_inferiority_both_ways_is_two_questions():
    arms = (Arm("a", "sgd"), Arm("b", "adam"))
    spec = StudySpec(question="?", arms=arms, search_space=None, plan=(NonInferior("a", "b"), NonInferior("b", "a")))
    assert len(spec.family) == 2
