"""harness.register_model: your own network as a model a study names, checked when it is registered, frozen by
its declared stages, loaded from a state dict, and run through a real study from a study file."""

from __future__ import annotations

import dataclasses

import mlflow
import mlflow.pytorch
import pytest
import torch
from torch import nn

import harness
import harness.run.objective
from harness.learn.checks import check_config
from harness.learn.models import REGISTERED, build_model, check_weights_file, model_spec, preprocessing, stage_names
from harness.spec import TrialConfig
from harness.stores import Stores
from harness.study import main as study_main


class TinyNet(nn.Module):
    """Two convolutional blocks and a classifier, for 1 x 16 x 16 images: trains in a fraction of a second."""

    def __init__(self):
        super().__init__()
        self.block1 = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.block2 = nn.Sequential(nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.classifier = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.block2(self.block1(x)))


pytestmark = pytest.mark.usefixtures("restored_registry")  # each test leaves the registry as it was


def register(name: str = "tiny", **kwargs):
    settings = {"stages": ["block1", "block2"], "input_size": 16, "in_channels": 1, **kwargs}
    return harness.register_model(name, TinyNet, **settings)


def test_a_registered_model_builds_with_its_stages_head_and_input():
    register(mean=(0.2,), std=(0.3,))
    model = build_model("tiny", 5)
    assert model.stage_names == ["block1", "block2"] and model.head_path == "classifier"
    assert model.net.classifier.out_features == 5
    pre = preprocessing("tiny", "none")
    assert (pre.size, pre.channels, pre.mean, pre.std) == (16, 1, (0.2,), (0.3,))
    assert model(torch.randn(2, 1, 16, 16)).shape == (2, 5)


def test_without_a_declared_normalisation_each_channel_is_centred_at_one_half():
    register()
    assert preprocessing("tiny", "none").mean == preprocessing("tiny", "none").std == (0.5,)


@pytest.mark.parametrize("stages", [
    ["block1", "block2"],
    [("block1", ["block1"]), ("block2", "block2")],
    {"block1": ["block1"], "block2": ["block2"]},
    lambda net: [name for name, _ in net.named_children() if name != "classifier"],
])
def test_stages_are_module_names_stage_pairs_or_a_function_of_the_net(stages):
    register(stages=stages)
    assert build_model("tiny", 3).stage_paths == {"block1": ["block1"], "block2": ["block2"]}


def test_a_stage_of_several_modules_freezes_them_together():
    register(stages=[("convs", ["block1.0", "block2.0"])])
    model = build_model("tiny", 3)
    model.freeze(1)
    assert not any(p.requires_grad for p in [*model.net.block1.parameters(), *model.net.block2.parameters()])
    assert all(p.requires_grad for p in model.net.classifier.parameters())


def test_freezing_the_first_declared_stage_freezes_exactly_its_modules():
    register()
    model = build_model("tiny", 3)
    model.freeze(1)
    assert model.frozen == ("block1",)
    assert not any(p.requires_grad for p in model.net.block1.parameters())
    assert all(p.requires_grad for p in [*model.net.block2.parameters(), *model.net.classifier.parameters()])


@pytest.mark.parametrize(("name", "kwargs", "said"), [
    ("lenet5", {}, "'lenet5' is a built-in model"),
    ("resnet34", {}, "'resnet34' is a built-in model"),  # torchvision's: model_spec would find it first
    ("my/net", {}, "a model's name is a letter"),
    ("tiny", {"stages": ["block1", "blok2"]}, "no module 'blok2'; its top-level modules are: block1, block2, classi"),
    ("tiny", {"stages": ["block1", "classifier"]}, "'classifier' is or holds the head"),
    ("tiny", {"stages": ["block1", "block1.0"]}, "'block1.0' lies inside 'block1'"),
    ("tiny", {"stages": [("a", "block1"), ("a", "block2")]}, "stage names must differ"),
    ("tiny", {"stages": []}, "declares no stage"),
    ("tiny", {"in_channels": 3}, r"a batch of shape \(2, 3, 16, 16\).*fails in its forward pass"),
    ("tiny", {"mean": (0.5, 0.5, 0.5)}, r"mean needs one value a channel \(1\)"),
    ("tiny", {"std": (0.0,)}, "std must be positive"),
    ("tiny", {"input_size": 0}, "input_size must be a positive whole number"),
])
def test_a_model_that_cannot_work_is_refused_when_registered_naming_the_problem(name, kwargs, said):
    with pytest.raises(ValueError, match=said):
        register(name, **kwargs)
    assert name not in REGISTERED or name == "lenet5"


def test_a_build_that_returns_no_module_is_refused():
    with pytest.raises(TypeError, match="must return a torch.nn.Module, not type"):
        harness.register_model("tiny", lambda: TinyNet, ["block1"])


def test_a_net_whose_last_linear_layer_is_not_its_classifier_is_refused():
    class Reordered(TinyNet):  # a projection defined after the classifier: the harness would replace it instead
        def __init__(self):
            super().__init__()
            self.proj = nn.Linear(16, 16)

        def forward(self, x):
            return self.classifier(self.proj(self.block2(self.block1(x))))

    with pytest.raises(ValueError, match="replaces its last Linear layer, 'proj'.*define the classifier last"):
        harness.register_model("reordered", Reordered, ["block1"], input_size=16, in_channels=1)


def test_a_net_that_returns_more_than_logits_is_refused():
    class Both(TinyNet):
        def forward(self, x):
            features = self.block2(self.block1(x))
            return self.classifier(features), features

    with pytest.raises(ValueError, match="comes out as tuple, not logits of shape"):
        harness.register_model("both", Both, ["block1"], input_size=16, in_channels=1)


def test_registering_a_name_again_replaces_it_as_a_reimported_study_file_does():
    register(stages=["block1"])
    assert stage_names("tiny") == ("block1",)
    register()
    assert stage_names("tiny") == ("block1", "block2")


class WiderNet(TinyNet):
    """TinyNet with a wider first block: the same name registered for another network."""

    def __init__(self):
        super().__init__()
        self.block1 = nn.Sequential(nn.Conv2d(1, 8, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2))


def test_a_source_checkpoint_is_keyed_by_the_registered_network_not_only_its_name():
    from harness.learn.pretrain import checkpoint_key

    cfg = TrialConfig(model="tiny", weights="source")
    register()
    first = checkpoint_key(cfg)
    assert first == checkpoint_key(cfg)  # the same network: its checkpoint is found again
    harness.register_model("tiny", WiderNet, stages=["block1", "block2"], input_size=16, in_channels=1)
    assert checkpoint_key(cfg) != first  # a changed network under the same name is pretrained anew


def test_an_unknown_model_names_the_registered_ones_too():
    register()
    with pytest.raises(ValueError, match="registered: tiny; .*harness.register_model"):
        model_spec("tinny")


def test_a_state_dict_the_user_saved_loads_into_it_and_one_of_another_net_is_refused(tmp_path):
    register()
    saved = TinyNet()
    torch.save(saved.state_dict(), tmp_path / "tiny.pt")
    check_weights_file(tmp_path / "tiny.pt", "tiny")
    check_config(TrialConfig(model="tiny", weights=str(tmp_path / "tiny.pt")))
    model = build_model("tiny", 3, weights=str(tmp_path / "tiny.pt"))
    assert torch.equal(model.net.block2[0].weight, saved.block2[0].weight)
    torch.save(nn.Linear(3, 3).state_dict(), tmp_path / "other.pt")
    with pytest.raises(ValueError, match="does not fit this model"):
        check_weights_file(tmp_path / "other.pt", "tiny")


STUDY = '''
import torch
from torch import nn

import harness
from harness.analysis_plan import Difference
from harness.spec import Arm, StudySpec, TrialConfig


class TinyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.block1 = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.block2 = nn.Sequential(nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.classifier = nn.Linear(16, 10)

    def forward(self, x):
        return self.classifier(self.block2(self.block1(x)))


harness.register_model("tinynet", TinyNet, stages=["block1", "block2"], input_size=16, in_channels=1)


def search_space(trial, arm):
    return {"lr": trial.suggest_float("lr", 1e-2, 1e-1, log=True)}


STUDY = StudySpec(
    question="Does freezing my net's first block help?",
    arms=(Arm("frozen", "sgd", "freeze_k", fixed={"freeze_k": 1}), Arm("full", "sgd", "full")),
    search_space=search_space,
    base=TrialConfig(model="tinynet", weights="source", pretrain_epochs=2, epochs=2, shots=10),
    n_trials=1, seeds=2, confirm_top=1, prune=False, plan=(Difference("frozen", "full"),),
)
'''


@pytest.mark.slow  # runs a whole (tiny) study, twice
def test_a_study_file_s_own_model_runs_end_to_end_pretrained_here_or_from_a_saved_state_dict(tmp_path, monkeypatch):
    studies = tmp_path / "studies"
    studies.mkdir()
    (studies / "own_model.py").write_text(STUDY)
    trained: dict[str, list[tuple[bool, bool]]] = {}
    real_fit = harness.run.objective.fit

    def spying_fit(model, task, cfg, *args, **kwargs):  # was the declared stage frozen, and did it stay put?
        before = model.net.block1[0].weight.detach().clone()
        result = real_fit(model, task, cfg, *args, **kwargs)
        frozen = not any(p.requires_grad for p in model.net.block1.parameters())
        trained.setdefault(cfg.arm, []).append((frozen, torch.equal(before, model.net.block1[0].weight)))
        return result

    monkeypatch.setattr(harness.run.objective, "fit", spying_fit)
    common = ["--root", str(tmp_path / "mlruns"), "--studies", str(studies), "--reports", str(tmp_path / "reports")]
    assert study_main(["own_model", *common]) == 0
    assert set(trained["frozen"]) == {(True, True)} and set(trained["full"]) == {(False, False)}
    mlflow.set_tracking_uri(Stores(tmp_path / "mlruns").mlflow_uri)
    runs = mlflow.search_runs(experiment_names=["own_model"], output_format="list")
    assert {r.data.params.get("model") for r in runs if "model" in r.data.params} == {"tinynet"}
    assert (tmp_path / "reports" / "own_model" / "README.md").is_file()
    logged = [r for r in runs if r.data.tags.get("model") == "model"]  # each arm's chosen model, its class with it
    assert len(logged) == 2
    model = mlflow.pytorch.load_model(f"runs:/{logged[0].info.run_id}/model")
    assert tuple(model(torch.zeros(2, 1, 16, 16)).shape) == (2, 5)

    torch.save(TinyNet().state_dict(), tmp_path / "mine.pt")  # the same architecture, saved by the user
    assert study_main(["own_model", "--weights", str(tmp_path / "mine.pt"), *common]) == 0
    weights_runs = [r for e in mlflow.search_experiments() if e.name.startswith("own_model--weights-mine.pt")
                    for r in mlflow.search_runs([e.experiment_id], output_format="list")]
    assert {r.data.params["weights"] for r in weights_runs if "weights" in r.data.params} == {str(tmp_path / "mine.pt")}


def test_a_study_built_in_python_with_a_registered_model_passes_the_dry_run_and_its_depths_are_checked():
    from harness.spec import Arm, StudySpec
    from harness.study import check

    register()

    def space(trial, arm):
        return {"lr": trial.suggest_float("lr", 1e-3, 1e-1, log=True), "freeze_k": trial.suggest_int("freeze_k", 1, 3)}

    spec = StudySpec(name="mine", question="?", arms=(Arm("frozen", "sgd", "freeze_k"), Arm("full", "sgd", "full")),
                     search_space=space, base=TrialConfig(model="tiny", weights="none", epochs=1))
    with pytest.raises(ValueError, match="freeze_k = 3.*tiny has stages 0..2"):
        check(spec)
    check(dataclasses.replace(spec, search_space=lambda trial, arm: {"freeze_k": 2}))
