"""Specification of harness.run.dryrun: a broken search space fails before anything is written, naming the
arm and the parameter; every study in studies/ passes."""

from __future__ import annotations

import dataclasses
import textwrap

import pytest

from harness.analysis_plan import NonInferior
from harness.run.dryrun import check_search_spaces, sample_configs
from harness.spec import Arm, StudySpec, TrialConfig
from harness.study_file import list_studies, load_study

ONE_ARM = (Arm("sgd-full", "sgd", "full"),)


def make_spec(space, arms=ONE_ARM, **kwargs) -> StudySpec:
    return StudySpec(name="broken", question="?", arms=arms, search_space=space,
                     base=TrialConfig(study="broken", epochs=4), **kwargs)


FILES = {name: load_study(name, suites=True) for name in list_studies()}  # studies, and suites of them


@pytest.mark.parametrize("name", sorted(FILES))
def test_every_study_and_every_suites_workload_in_the_repository_passes_the_dry_run(name):
    from harness.suite_spec import workload_specs

    found = FILES[name]
    for spec in [found] if isinstance(found, StudySpec) else workload_specs(found):
        check_search_spaces(spec)


def test_the_dry_run_reaches_both_corners_of_every_range():
    spec = make_spec(lambda t, arm: {"lr": t.suggest_float("lr", 1e-4, 0.5, log=True),
                                     "batch_size": t.suggest_categorical("batch_size", [16, 32, 64])})
    configs = [cfg for _, _, cfg in sample_configs(spec, spec.arms[0])]
    assert min(c.lr for c in configs) == 1e-4 and max(c.lr for c in configs) == 0.5
    assert {c.batch_size for c in configs} == {16, 32, 64}


@pytest.mark.parametrize(("space", "arm", "message"), [
    (lambda t, a: {"lr": t.suggest_float("lr", 0.1, 1e-3, log=True)}, Arm("sgd-full", "sgd"),
     r"arm sgd-full: parameter 'lr' fails"),
    (lambda t, a: {"freeze_k": t.suggest_int("freeze_k", 0, 7)}, Arm("deep", "sgd", "freeze_k"),
     r"arm deep, parameter freeze_k \(searched freeze_k = [5-7]\): freeze_k=[5-7], but lenet5 has stages 0..4"),
    (lambda t, a: {"lr": t.suggest_float("lr", 1e-3, 1e-1, log=True)}, Arm("lpft", "sgd", "lp_ft"),
     r"arm lpft, parameter lp_epochs: lp_ft needs 1 <= lp_epochs < epochs"),
    (lambda t, a: {"lr_schedule": t.suggest_categorical("lr_schedule", ["cosine", "step"])}, Arm("s", "sgd"),
     r"arm s, parameter lr_schedule .*unknown lr_schedule 'step'; choices: cosine, constant"),
    (lambda t, a: {"optimizer_params": {"beta1": t.suggest_float("beta1", 0.5, 0.99)}}, Arm("sgd", "sgd"),
     r"arm sgd, parameter optimizer_params: sgd takes optimizer_params momentum, nesterov; not beta1"),
    (lambda t, a: {"lr": t.suggest_float("lr", 1e-3, 1e-1)}, Arm("x", "sgd", "frozen"),
     r"arm x, parameter strategy: unknown strategy 'frozen'; choices: linear_probe"),
    (lambda t, a: {"strategy": t.suggest_categorical("strategy", ["full", "lp_ft"])}, Arm("x", "sgd"),
     r"arm x: the search space sets strategy, which the arm fixes"),
    (lambda t, a: {"learning_rate": t.suggest_float("learning_rate", 1e-3, 1e-1)}, Arm("x", "sgd"),
     r"arm x: the search space returns \['learning_rate'\], not all TrialConfig fields"),
])
def test_a_broken_space_is_refused_naming_the_arm_and_the_parameter(space, arm, message):
    with pytest.raises(ValueError, match=message):
        check_search_spaces(make_spec(space, arms=(arm,)))


def test_lp_ft_with_a_searched_lp_epochs_in_range_passes():
    spec = make_spec(lambda t, a: {"lp_epochs": t.suggest_int("lp_epochs", 1, 3)}, arms=(Arm("lpft", "sgd", "lp_ft"),))
    check_search_spaces(spec)


def test_a_comparison_naming_an_unknown_arm_is_refused_when_the_study_is_made():
    with pytest.raises(ValueError, match="names unknown arms nope; arms: sgd-full"):
        make_spec(lambda t, a: {}, plan=(NonInferior("sgd-full", "nope"),))


def test_an_unknown_variance_source_is_refused():
    with pytest.raises(ValueError, match="vary must include 'seed'"):
        check_search_spaces(make_spec(lambda t, a: {}, vary=("seed", "split")))


BROKEN = """
from harness.spec import Arm, StudySpec, TrialConfig


def search_space(trial, arm):
    return {"lr": trial.suggest_float("lr", 1e-3, 1e-1, log=True), "freeze_k": trial.suggest_int("freeze_k", 0, 9)}


STUDY = StudySpec(name="broken", question="?", arms=(Arm("deep", "sgd", "freeze_k"),), search_space=search_space,
                  base=TrialConfig(study="broken"))
"""


def test_a_broken_study_file_exits_2_naming_arm_and_parameter_and_writes_nothing(tmp_path, capsys, monkeypatch):
    import harness.study

    studies = tmp_path / "studies"
    studies.mkdir()
    (studies / "broken.py").write_text(textwrap.dedent(BROKEN))
    code = harness.study.main(["broken", "--studies", str(studies), "--root", str(tmp_path / "mlruns"),
                               "--reports", str(tmp_path / "reports")])
    assert code == 2
    assert "arm deep, parameter freeze_k" in capsys.readouterr().err
    assert not (tmp_path / "mlruns").exists() and not (tmp_path / "reports").exists()


def test_the_dry_run_leaves_the_spec_untouched():
    spec = load_study("sgd_vs_adam")
    before = dataclasses.replace(spec)
    check_search_spaces(spec)
    assert spec == before
