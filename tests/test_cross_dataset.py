"""A source task on another dataset than the target: pretrain on digits, fine-tune on a user's image folder."""

import dataclasses
from unittest import mock

import mlflow
import pytest
import torch
from fabricate import digits, write_folder

from harness.learn.data import make_task
from harness.learn.datasets import check_data
from harness.learn.models import build_model, preprocessing
from harness.learn.pretrain import checkpoint_key, pretrain_config, source_preprocessing
from harness.learn.weights import read_state_dict
from harness.run.checkpoints import source_checkpoint
from harness.spec import TrialConfig, retarget
from harness.study_file import load_study


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Three classes of coloured digit PNGs (digits 0-2), 40 of each: a user's folder of colour photos."""
    images, labels = digits(per_class=40, classes=3)
    return write_folder(tmp_path_factory.mktemp("imgs"), images, labels, rgb=True, sizes=(20, 40))


def test_retarget_keeps_the_studys_source_and_takes_every_class_of_the_new_target():
    base = load_study("sgd_vs_adam").base
    cfg = retarget(base, "folder:/imgs")
    assert (cfg.dataset, cfg.target_classes) == ("folder:/imgs", None)
    assert (cfg.source_dataset, cfg.source_classes) == ("digits", base.source_classes)


def test_retarget_to_the_studys_own_dataset_changes_nothing_and_keeps_an_explicit_source():
    base = TrialConfig(dataset="digits", source_dataset="mnist")
    assert retarget(base, "digits") is base
    assert retarget(base, "svhn").source_dataset == "mnist"


def test_the_source_task_is_the_source_datasets_classes_seeded_by_pretrain_seed():
    cfg = TrialConfig(dataset="folder:/imgs", source_dataset="digits", target_classes=None, pretrain_seed=4)
    pcfg = pretrain_config(cfg)
    assert (pcfg.dataset, pcfg.target_classes, pcfg.seed) == ("digits", (0, 1, 2, 3, 4), 4)


def test_checkpoint_key_names_the_source_not_the_target_and_changes_with_pretrain_seed():
    own = TrialConfig(dataset="digits", target_classes=(5, 6, 7, 8, 9))
    explicit = dataclasses.replace(own, source_dataset="digits")
    assert checkpoint_key(explicit) == checkpoint_key(own)  # naming the target's dataset is the default
    a = TrialConfig(dataset="folder:/a", source_dataset="digits", target_classes=None)
    b = dataclasses.replace(a, dataset="folder:/b")
    assert checkpoint_key(a) == checkpoint_key(b) and checkpoint_key(a).startswith("lenet5-digits-")
    assert checkpoint_key(dataclasses.replace(a, pretrain_seed=1)) != checkpoint_key(a)


@pytest.mark.parametrize("model, channels", [("lenet5", 1), ("resnet18", 3)])
def test_the_source_task_is_built_for_the_models_input_like_the_target(folder, model, channels):
    """Grey digits feed an RGB model as 3 channels; colour photos feed LeNet-5 as 1."""
    cfg = retarget(TrialConfig(model=model, shots=5), f"folder:{folder}")
    source = make_task(pretrain_config(cfg), source_preprocessing(cfg))
    target = make_task(cfg, preprocessing(model, "none"))
    assert source.dataset == "digits" and source.classes == ["0", "1", "2", "3", "4"]
    assert target.classes == ["class_0", "class_1", "class_2"]
    assert source.train.x.shape[1:] == target.train.x.shape[1:] == (channels, 32, 32)


def test_check_data_refuses_an_unknown_source_dataset_or_source_classes_it_lacks(folder):
    cfg = retarget(TrialConfig(), f"folder:{folder}")
    check_data(cfg)  # digits 0-4 -> the folder's three classes: fine, no overlap check across datasets
    with pytest.raises(ValueError, match="source_dataset: unknown dataset 'nope'"):
        check_data(dataclasses.replace(cfg, source_dataset="nope"))
    with pytest.raises(ValueError, match=r"source_classes \[12\] not in digits"):
        check_data(dataclasses.replace(cfg, source_classes=(0, 12)))
    check_data(dataclasses.replace(cfg, source_classes=None))  # all of another dataset's classes is no leak


@pytest.mark.slow  # pretrains on digits
def test_a_digits_pretrained_model_fine_tunes_on_a_folder(folder, stores, tracking, capsys):
    cfg = retarget(TrialConfig(pretrain_epochs=2, shots=5), f"folder:{folder}")
    with mock.patch("harness.learn.pretrain.SLOW_EPOCH_SECONDS", 0.0):  # every epoch counts as slow
        ckpt = source_checkpoint(cfg, stores.checkpoints)
    out = capsys.readouterr().err  # progress on stderr: stdout stays machine-readable (bench --json)
    assert "pretrain epoch 1/2: val acc" in out and "pretrain epoch 2/2" in out  # progress while slow epochs train
    assert f"pretrained {ckpt.key}: best val acc" in out
    run = mlflow.get_run(ckpt.run_id)
    assert len(mlflow.MlflowClient().get_metric_history(ckpt.run_id, "val_acc")) == 2  # buffered, every epoch kept
    assert (run.data.params["dataset"], run.data.params["target_classes"]) == ("digits", "(0, 1, 2, 3, 4)")
    target = make_task(cfg, preprocessing(cfg.model, "none"))
    model = build_model(cfg.model, len(target.classes), str(ckpt.path))
    pretrained = read_state_dict(ckpt.path)
    assert torch.equal(model.net.conv1[0].weight, pretrained["conv1.0.weight"])  # the digits features carried over
    assert model(target.val.x).shape == (len(target.val), 3)  # a new head for the folder's three classes
