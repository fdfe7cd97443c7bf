import dataclasses

import pytest

from harness.spec import Arm, TrialConfig, list_studies, load_study


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


def test_default_study_has_four_arms_with_one_budget_and_two_verdicts():
    study = load_study("sgd_vs_adam")
    assert {a.name for a in study.arms} == {"sgd-frozen", "adam-frozen", "sgd-unfrozen", "adam-unfrozen"}
    assert study.n_trials == 20 and study.seeds == 5 and study.sampler == "qmc"
    assert len(study.comparisons) == 2


def test_data_root_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("HARNESS_DATA_ROOT", "/somewhere")
    assert TrialConfig().data_root == "/somewhere"
    assert dataclasses.replace(TrialConfig(), data_root="x").data_root == "x"
