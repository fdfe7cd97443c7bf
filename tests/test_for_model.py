"""StudySpec.for_model: a study whose arms follow the model's stages (freeze_depth: an arm per depth;
fine_tune_recipes: freeze_k over the stages) answers for any model a variant names, and the file's own model
keeps the file's study."""

from __future__ import annotations

import dataclasses

import pytest
from torch import nn

import harness
from harness.analysis_plan import Equivalent, NonInferior, Trend
from harness.describe import describe_study
from harness.run.dryrun import sample_configs
from harness.spec import Arm, StudySpec
from harness.study import check
from harness.study_file import list_studies, load_study

# freeze_depth's arms as its reports name them (reports/freeze_depth/): LeNet-5's 4 stages
LENET_ARMS = ["baseline", "AnB-0", "AnB-1", "AnB-2", "AnB-3", "AnB-4", "AnB+-0", "AnB+-1", "AnB+-2", "AnB+-3", "AnB+-4"]
LENET_PLAN = ["AnB-1 -> AnB-2 -> AnB-3 -> AnB-4 (decreasing)", "AnB+-1 - baseline", "AnB+-2 - baseline",
              "AnB+-3 - baseline", "AnB+-4 - baseline", "AnB-0 - baseline", "AnB+-0 - baseline"]


pytestmark = pytest.mark.usefixtures("restored_registry")  # each test leaves the registry as it was


def searched_range(spec: StudySpec, arm: str, param: str) -> tuple:
    corners = {label: params for label, params, _ in sample_configs(spec, spec.arm(arm))}
    return corners["the low corner"][param], corners["the high corner"][param]


def test_freeze_depth_for_its_own_model_keeps_the_arms_plan_and_settings_its_reports_name():
    spec = load_study("freeze_depth")
    assert [a.name for a in spec.arms] == LENET_ARMS
    assert [c.label for c in spec.family] == LENET_PLAN
    assert [type(c) for c in spec.family] == [Trend, *[NonInferior] * 4, *[Equivalent] * 2]
    assert spec.settings()["n_trials"] == 6 and spec.seeds == 10 and spec.seeds_cap == 20
    assert spec.variant(model="lenet5") == spec and spec.variant(model="lenet5").name == "freeze_depth"


def test_freeze_depth_for_resnet18_has_an_arm_per_depth_0_to_5_and_the_plan_over_them():
    spec = load_study("freeze_depth").variant(model="resnet18")
    assert spec.name == "freeze_depth--model-resnet18"
    assert [a.name for a in spec.arms] == ["baseline", *(f"AnB-{n}" for n in range(6)),
                                          *(f"AnB+-{n}" for n in range(6))]
    assert spec.arm("AnB-5").fixed == {"transfer_stages": 5}
    trend, *rest = spec.family
    assert trend.arms == tuple(f"AnB-{n}" for n in range(1, 6))
    assert [c.label for c in rest] == [*(f"AnB+-{n} - baseline" for n in range(1, 6)), "AnB-0 - baseline",
                                       "AnB+-0 - baseline"]
    assert spec.settings() == load_study("freeze_depth").settings()  # only what follows the stages changes


def test_freeze_depth_for_resnet18_passes_the_dry_run_offline_without_imagenet_weights(offline):
    check(load_study("freeze_depth").variant(model="resnet18", weights="none", epochs=1))


def test_fine_tune_recipes_searches_freeze_k_over_the_model_s_stages_but_the_last():
    spec = load_study("fine_tune_recipes")
    assert searched_range(spec, "freeze_k", "freeze_k") == (1, 3)  # LeNet-5's 4 stages, as before
    assert searched_range(spec.variant(model="resnet18"), "freeze_k", "freeze_k") == (1, 4)  # stem, layer1-4
    assert [a.name for a in spec.variant(model="resnet18").arms] == [a.name for a in spec.arms]


@pytest.mark.parametrize("name", [n for n in list_studies() if getattr(load_study(n, suites=True), "for_model", None)])
def test_a_committed_study_s_for_model_rebuilds_the_file_s_own_arms_plan_and_space(name):
    spec = load_study(name)
    again = dataclasses.replace(spec, **spec.for_model(spec.base.model))
    assert again.arms == spec.arms and again.family == spec.family
    for arm in spec.arms:
        assert [p for _, p, _ in sample_configs(again, arm)] == [p for _, p, _ in sample_configs(spec, arm)]


def test_freeze_depth_follows_a_registered_model_s_declared_stages():
    class Two(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
            self.hidden = nn.Sequential(nn.Linear(4, 8), nn.ReLU())
            self.head = nn.Linear(8, 10)

        def forward(self, x):
            return self.head(self.hidden(self.conv(x)))

    harness.register_model("two", Two, ["conv", "hidden"], input_size=16, in_channels=1)
    spec = load_study("freeze_depth").variant(model="two", epochs=1)
    assert [a.name for a in spec.arms] == ["baseline", "AnB-0", "AnB-1", "AnB-2", "AnB+-0", "AnB+-1", "AnB+-2"]
    assert spec.family[0].label == "AnB-1 - AnB-2"  # two depths: a difference, not a trend
    check(spec)


def test_describe_study_shows_the_model_s_stages_arms_searched_ranges_and_comparisons():
    text = describe_study(load_study("freeze_depth").variant(model="resnet18", weights="none"))
    assert "model resnet18, weights none: 5 stages, stem, layer1, layer2, layer3, layer4" in text
    assert "  AnB-5            sgd, freeze_k; transfer_stages=5; searched: lr 0.001..0.3" in text
    assert "trend            AnB-1 -> AnB-2 -> AnB-3 -> AnB-4 -> AnB-5 (decreasing)" in text
    assert "freeze_k 1..4" in describe_study(load_study("fine_tune_recipes").variant(model="resnet18"))


def test_a_for_model_that_sets_what_a_variant_sets_is_refused():
    spec = StudySpec(name="s", question="?", arms=(Arm("a", "sgd"),), search_space=lambda t, a: {},
                     for_model=lambda model: {"arms": (Arm("b", "sgd"),), "n_trials": 3})
    with pytest.raises(ValueError, match="for_model returns n_trials"):
        spec.variant(model="resnet18")
    assert spec.variant(epochs=3).arms == spec.arms  # called for another model only


def test_an_unknown_model_is_refused_by_the_variant_naming_the_choices():
    with pytest.raises(ValueError, match="unknown model 'resnet19'"):
        load_study("freeze_depth").variant(model="resnet19")
