"""timm's models by name (`timm:ARCH`), offline: timm's own tiny test architectures, staged and frozen like
torchvision's, trained by the harness's loop; ImageNet weights from a local file, and a clear refusal when
they can be neither found nor downloaded."""

from __future__ import annotations

import pytest
import torch

from harness.learn.models import build_model, model_spec, preprocessing
from harness.learn.weights import WeightsUnavailable
from tests.test_train import changed, config, run
from tests.tiers import slow_except

timm = pytest.importorskip("timm", reason="timm is an optional dependency (pip install timm; .[dev] has it)")

TINY = ["timm:test_resnet", "timm:test_convnext", "timm:test_efficientnet", "timm:test_vit"]  # timm's own


@pytest.mark.parametrize("name", slow_except(TINY, "timm:test_resnet", "timm:test_vit"))
def test_a_timm_model_is_staged_frozen_and_trained_like_a_torchvision_one(name):
    model = build_model(name, num_classes=3)
    stages = model.stage_names
    assert len(stages) >= 4 and model.net.get_submodule(model.head_path).out_features == 3
    grouped = [id(p) for _, params in model.parameter_groups() for p in params]
    assert len(grouped) == len(set(grouped)) == len(list(model.parameters()))  # every parameter exactly once
    frozen, snapshots = run(name, config(strategy="freeze_k", freeze_k=2), watch=[stages[0], stages[-1], "head"])
    assert frozen == [2]
    assert not changed(snapshots, stages[0], 0) and changed(snapshots, stages[-1], 0) and changed(snapshots, "head", 0)


def test_a_fixed_size_architecture_is_fed_the_size_it_declares():
    assert model_spec("timm:test_vit").input_size == timm.models.get_pretrained_cfg("test_vit").input_size[-1]
    assert model_spec("timm:test_resnet").input_size == 32  # convolutional: small tasks stay small


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_imagenet_weights_from_a_local_file_are_the_backbone_and_the_head_is_new(tmp_path, suffix):
    torch.manual_seed(1)
    pretrained = timm.create_model("test_resnet", pretrained=False)  # stands for the hub's file
    path = tmp_path / f"model{suffix}"
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(pretrained.state_dict(), str(path))
    else:
        torch.save(pretrained.state_dict(), path)
    model = build_model("timm:test_resnet", num_classes=3, weights=str(path))
    assert torch.equal(model.net.conv1[0].weight, pretrained.conv1[0].weight)
    assert torch.equal(model.net.layer4[0].conv1.weight, pretrained.layer4[0].conv1.weight)
    assert model.net.fc.out_features == 3 and pretrained.fc.out_features == 1000


def test_a_corrupt_safetensors_file_is_refused_naming_it(tmp_path):
    path = tmp_path / "broken.safetensors"
    path.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(ValueError, match=r"broken.safetensors is not a readable safetensors file"):
        build_model("timm:test_resnet", num_classes=3, weights=str(path))


def test_offline_imagenet_weights_stop_with_the_hub_id_the_cache_and_the_way_out(tmp_path, monkeypatch, offline):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # as HF_HUB_OFFLINE=1: no retries against the network
    with pytest.raises(WeightsUnavailable) as raised:
        build_model("timm:test_resnet", num_classes=3, weights="imagenet")
    message = str(raised.value)
    assert "timm/test_resnet.r160_in1k" in message and str(tmp_path / "hub") in message and "--weights PATH" in message


def test_imagenet_preprocessing_is_the_weights_own_size_normalisation_and_crop():
    cfg = timm.models.get_pretrained_cfg("test_efficientnet")
    pre = preprocessing("timm:test_efficientnet", "imagenet")
    assert (pre.size, pre.mean, pre.std, pre.interpolation) == (cfg.input_size[-1], cfg.mean, cfg.std,
                                                                 cfg.interpolation)
    assert pre.resize == int(cfg.input_size[-1] / cfg.crop_pct)


def test_an_unknown_timm_name_is_refused_naming_where_the_names_are():
    with pytest.raises(ValueError, match=r"unknown timm model 'no_such_net'.*timm.list_models\(\)"):
        model_spec("timm:no_such_net")
