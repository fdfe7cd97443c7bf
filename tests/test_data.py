"""harness.learn.data: datasets, folders, splits, transforms, streaming. No downloads: the network is cut for every
test."""

import dataclasses
import urllib.error
import urllib.request

import numpy as np
import pytest
import torch
import torchvision
from fabricate import digits, half_written_jpeg, write_folder, write_mnist
from PIL import Image, ImageFile
from torchvision.transforms.v2 import functional as TF

from harness.learn import data, images
from harness.learn.data import make_task, preprocess
from harness.learn.datasets import (
    DATASETS,
    BrokenImage,
    DatasetUnavailable,
    check_data,
    check_images,
    dataset_spec,
    load_raw,
)
from harness.learn.models import Preprocess, preprocessing
from harness.spec import TrialConfig

RGB32 = Preprocess(32, 3, (0.5,) * 3, (0.5,) * 3)
GREY32 = Preprocess(32, 1, (0.5,), (0.5,))


@pytest.fixture(autouse=True)
def _offline(offline):  # conftest.offline, for every test here
    pass


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    """One folder of class subfolders: 4 classes of 20, 25, 30 and 35 coloured digits of varying sizes."""
    images, labels = digits(per_class=35, classes=4)
    keep = np.concatenate([np.flatnonzero(labels == c)[: 20 + 5 * c] for c in range(4)])
    return write_folder(tmp_path_factory.mktemp("single"), images[keep], labels[keep], sizes=(20, 44))


@pytest.fixture(scope="module")
def train_val(tmp_path_factory):
    """The ants-and-bees layout: train/<class>/ (12 images a class) and val/<class>/ (5 a class), 3 classes."""
    root = tmp_path_factory.mktemp("train_val")
    images, labels = digits(per_class=17, classes=3)
    is_val = np.concatenate([np.arange(17) >= 12 for _ in range(3)])  # digits() comes sorted by class
    write_folder(root / "train", images[~is_val], labels[~is_val])
    write_folder(root / "val", images[is_val], labels[is_val])
    return root


def folder_cfg(path, **changes) -> TrialConfig:
    settings = {"source_classes": None, "target_classes": None, "shots": None, **changes}  # all classes, all images
    return TrialConfig(dataset=f"folder:{path}", **settings)


def counts(task, name) -> np.ndarray:
    return np.bincount(getattr(task, name).y.cpu().numpy(), minlength=len(task.classes))


# --- image folders ------------------------------------------------------------------------------------------


def test_single_folder_is_split_into_train_val_and_test(single):
    task = make_task(folder_cfg(single), RGB32)
    sizes = {name: len(s) for name, s in task.splits().items()}
    assert sum(sizes.values()) == 20 + 25 + 30 + 35
    assert sizes["test"] == round(0.4 * 110)
    assert task.classes == ["class_0", "class_1", "class_2", "class_3"]


def test_train_val_layout_uses_val_folder_as_test(train_val):
    task = make_task(folder_cfg(train_val), RGB32)
    assert counts(task, "test").tolist() == [5, 5, 5]  # exactly the val/ folder
    assert counts(task, "train").sum() + counts(task, "val").sum() == 36  # train/ alone, split by the harness


def test_train_val_test_layout_uses_test_folder_and_pools_val_into_training(train_val, tmp_path):
    root = tmp_path / "three"
    images, labels = digits(per_class=4, classes=3)
    write_folder(root / "test", images, labels)
    for part in ("train", "val"):
        (root / part).symlink_to(train_val / part)
    task = make_task(folder_cfg(root), RGB32)
    assert counts(task, "test").tolist() == [4, 4, 4]
    assert counts(task, "train").sum() + counts(task, "val").sum() == 36 + 15


def test_images_of_varying_sizes_are_decoded_to_the_models_size(single):
    imagenet_like = Preprocess(40, 3, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), resize=48)
    task = make_task(folder_cfg(single), imagenet_like)
    assert all(s.x.shape[1:] == (3, 40, 40) for s in task.splits().values())


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="no such directory"):
        dataset_spec(f"folder:{tmp_path / 'nowhere'}")


def test_folder_without_class_subfolders_is_a_clear_error(tmp_path):
    (tmp_path / "loose.png").write_bytes(b"")
    with pytest.raises(ValueError, match="no class subfolders"):
        dataset_spec(f"folder:{tmp_path}")


def test_class_folder_without_images_is_a_clear_error(tmp_path):
    images, labels = digits(per_class=3, classes=2)
    write_folder(tmp_path, images, labels)
    (tmp_path / "empty_class").mkdir()
    with pytest.raises(ValueError, match=r"no images .* \['empty_class'\]"):
        load_raw(f"folder:{tmp_path}", "data")


def test_too_few_classes_for_the_class_split_fail_the_check(single):
    with pytest.raises(ValueError, match=r"target_classes \[5, 6, 7, 8, 9\] not in .* 4 classes"):
        check_data(TrialConfig(dataset=f"folder:{single}"))  # the default split: 0-4 -> 5-9


def test_study_cli_refuses_too_few_classes_before_writing_anything(single, tmp_path, capsys):
    from harness.study import main

    code = main(["sgd_vs_adam", "--dataset", f"folder:{single}", "--target-classes", "5-9",
                 "--root", str(tmp_path / "mlruns"), "--reports", str(tmp_path / "reports")])
    assert code == 2
    assert "4 classes" in capsys.readouterr().err
    assert not (tmp_path / "mlruns").exists() and not (tmp_path / "reports").exists()



def small_folder(path, sizes=(20, 30)):
    """2 classes of 3 coloured digits: a folder whose every image is checked in milliseconds."""
    images, labels = digits(per_class=3, classes=2)
    return write_folder(path, images, labels, sizes=sizes)


def test_a_half_written_jpeg_is_refused_at_the_check_naming_it(tmp_path):
    folder = small_folder(tmp_path / "imgs")
    jpeg = half_written_jpeg(folder / "class_1" / "cut.jpg")
    with Image.open(jpeg) as image:
        image.verify()  # what the check did before: it passed, and every worker's first run died decoding it
    assert not ImageFile.LOAD_TRUNCATED_IMAGES  # nothing in the harness lets PIL fill a cut image with grey
    with pytest.raises(BrokenImage, match=f"cannot read image {jpeg} .*truncated"):
        check_data(folder_cfg(folder, weights="none"))


@pytest.mark.parametrize("side", [40, 64])  # over the limit (PIL warns), over twice it (PIL raises)
def test_an_image_over_pils_pixel_limit_is_refused_at_the_check_naming_it_and_the_limit(tmp_path, monkeypatch,
                                                                                          side):
    folder = small_folder(tmp_path / "imgs")  # images of at most 30 x 30 = 900 pixels
    bomb = folder / "class_0" / "bomb.png"
    Image.new("RGB", (side, side)).save(bomb)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # a real bomb's limit (89 million pixels), scaled down
    with pytest.raises(BrokenImage) as refused:
        check_data(folder_cfg(folder, weights="none"))
    said = str(refused.value)
    assert said.startswith(f"image {bomb} is too large to decode safely (Image size ({side * side} pixels)")
    assert "PIL.Image.MAX_IMAGE_PIXELS = 1,000 pixels" in said and "shrink or remove that file" in said


def count_opens(monkeypatch) -> list[str]:
    opened = []
    real_open = Image.open
    monkeypatch.setattr(Image, "open", lambda path, *args, **kwargs: opened.append(str(path)) or real_open(
        path, *args, **kwargs))
    return opened


def test_checked_images_are_not_decoded_again_by_a_later_check(tmp_path, monkeypatch):
    folder = small_folder(tmp_path / "imgs")
    before = sorted(folder.rglob("*"))
    opened = count_opens(monkeypatch)
    check_images(str(folder))
    assert len(opened) == 2 * 6  # each image opened twice: its structure verified, then every pixel decoded
    assert sorted(folder.rglob("*")) == before  # the cache lives in the harness's cache folder, not the dataset's

    opened.clear()
    monkeypatch.setattr(images, "_decoded", set())  # a new process: only the cache on disk remembers
    check_images(str(folder))
    assert opened == []

    changed = folder / "class_0" / min(p.name for p in (folder / "class_0").iterdir())
    Image.new("RGB", (25, 25)).save(changed)  # another size: a new stamp, whatever the clock's resolution
    check_images(str(folder))
    assert opened == [str(changed)] * 2  # only the changed file is decoded again


def test_a_broken_image_found_again_after_the_others_passed_is_the_only_one_decoded(tmp_path, monkeypatch):
    folder = small_folder(tmp_path / "imgs")
    jpeg = half_written_jpeg(folder / "class_1" / "cut.jpg")
    with pytest.raises(BrokenImage):
        check_images(str(folder))
    monkeypatch.setattr(images, "_decoded", set())
    opened = count_opens(monkeypatch)
    with pytest.raises(BrokenImage):
        check_images(str(folder))
    assert opened == [str(jpeg)] * 2  # the six that passed were remembered though the check failed


def test_a_folder_datasets_pretraining_checkpoint_is_a_plain_file_name(single):
    from harness.learn.pretrain import checkpoint_key

    key = checkpoint_key(TrialConfig(dataset=f"folder:{single}"))
    assert "/" not in key and ":" not in key

# --- splits and subsets -------------------------------------------------------------------------------------


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_stratified_splits_keep_class_proportions_within_one_image(single, split):
    task = make_task(folder_cfg(single), RGB32)
    got = counts(task, split)
    expected = got.sum() * np.array([20, 25, 30, 35]) / 110
    assert np.all(np.abs(got - expected) <= 1), (got, expected)


def test_train_val_and_test_indices_are_disjoint(single):
    task = make_task(folder_cfg(single), RGB32)
    train, val, test = (set(s.indices.tolist()) for s in task.splits().values())
    assert not (train & val or train & test or val & test)


def test_few_shot_takes_exactly_n_images_per_class(single):
    task = make_task(folder_cfg(single, shots=7), RGB32)
    assert counts(task, "train").tolist() == [7, 7, 7, 7]


def test_few_shot_with_more_shots_than_images_is_an_error(single):
    with pytest.raises(ValueError, match="shots=50"):
        make_task(folder_cfg(single, shots=50), RGB32)


def test_source_and_target_class_splits_are_disjoint(single):
    cfg = folder_cfg(single, source_classes=(0, 1), target_classes=(2, 3))
    source, target = make_task(cfg, RGB32, role="source"), make_task(cfg, RGB32, role="target")
    assert source.classes == ["class_0", "class_1"] and target.classes == ["class_2", "class_3"]
    for name in ("train", "val", "test"):
        assert not set(getattr(source, name).indices) & set(getattr(target, name).indices)
        assert set(getattr(target, name).y.tolist()) == {0, 1}  # relabelled 0..n-1


def test_no_class_list_means_all_classes(single):
    assert len(make_task(folder_cfg(single, target_classes=None), RGB32).classes) == 4


def test_same_split_seed_gives_the_same_fingerprints(single):
    a, b = (make_task(folder_cfg(single, split_seed=3), RGB32) for _ in range(2))
    assert a.fingerprints() == b.fingerprints()


def test_another_split_seed_gives_other_fingerprints(single):
    a, b = (make_task(folder_cfg(single, split_seed=seed), RGB32) for seed in (0, 1))
    assert all(a.fingerprints()[name] != b.fingerprints()[name] for name in ("train", "val", "test"))


# --- transforms ---------------------------------------------------------------------------------------------


def test_grey_dataset_feeds_an_rgb_model_three_identical_channels():
    task = make_task(TrialConfig(), preprocessing("resnet18", "none"))  # digits are grey
    x = task.train.x
    assert x.shape[1] == 3 and torch.equal(x[:, 0], x[:, 1]) and torch.equal(x[:, 1], x[:, 2])


def test_rgb_images_become_their_luminance_for_a_grey_model(single):
    rgb, grey = (make_task(folder_cfg(single), pre) for pre in (RGB32, GREY32))
    assert grey.train.x.shape[1] == 1
    assert torch.allclose(grey.train.x, TF.rgb_to_grayscale(rgb.train.x * 0.5 + 0.5) * 2 - 1, atol=1e-5)


def test_evaluation_inputs_are_identical_on_every_build(single):
    a, b = (make_task(folder_cfg(single), RGB32) for _ in range(2))
    assert torch.equal(a.val.x, b.val.x) and torch.equal(a.test.x, b.test.x)


def test_digit_datasets_are_never_flipped():
    assert not any(DATASETS[name].hflip for name in ("digits", "mnist", "svhn"))
    assert all(DATASETS[name].hflip for name in ("cifar10", "stl10", "flowers102", "oxford_iiit_pet"))


# --- torchvision datasets -----------------------------------------------------------------------------------

EXPECTED_FOLDERS = {
    "mnist": "MNIST/raw", "fashion_mnist": "FashionMNIST/raw", "cifar10": "cifar-10-batches-py",
    "cifar100": "cifar-100-python", "svhn": "train_32x32.mat", "stl10": "stl10_binary",
    "flowers102": "flowers-102", "oxford_iiit_pet": "oxford-iiit-pet",
}


def test_every_downloadable_dataset_has_an_offline_message():
    assert set(EXPECTED_FOLDERS) == {name for name, spec in DATASETS.items() if spec.download is not None}


@pytest.mark.parametrize("name", sorted(EXPECTED_FOLDERS))
def test_offline_and_missing_dataset_names_the_folder_and_the_download(name, tmp_path):
    with pytest.raises(DatasetUnavailable) as error:
        load_raw(name, str(tmp_path))
    message = str(error.value)
    assert str(tmp_path / EXPECTED_FOLDERS[name]) in message
    assert "https://" in message or "http://" in message


def test_missing_files_are_downloaded_and_a_failure_reports_its_cause(monkeypatch, tmp_path):
    calls = []

    def refuse(*args, **kwargs):
        calls.append(args)
        raise urllib.error.URLError("refused")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    with pytest.raises(DatasetUnavailable, match="refused"):
        load_raw("cifar10", str(tmp_path))
    assert calls  # the download was tried once the files were found missing


@pytest.fixture(scope="module")
def mnist_root(tmp_path_factory):
    """A local MNIST in torchvision's raw idx format: 8 training and 3 test digits a class."""
    root = tmp_path_factory.mktemp("mnist")
    images, labels = digits(per_class=11)  # sorted by class
    is_test = np.concatenate([np.arange(11) >= 8 for _ in range(10)])
    write_mnist(root, (images[~is_test], labels[~is_test]), (images[is_test], labels[is_test]))
    return root


def test_mnist_from_a_local_copy_runs_end_to_end_with_its_official_test_split(mnist_root):
    cfg = TrialConfig(dataset="mnist", data_root=str(mnist_root), shots=4)  # digits 0-4 -> 5-9
    task = make_task(cfg, preprocessing("lenet5", "none"))
    assert counts(task, "train").tolist() == [4] * 5
    assert task.test.indices.tolist() == list(range(15, 30))  # t10k's digits 5-9, none carved from train
    assert task.train.x.shape[1:] == (1, 32, 32)


# --- streaming ----------------------------------------------------------------------------------------------


@pytest.fixture
def streamed(monkeypatch):
    monkeypatch.setattr(data, "TENSOR_BUDGET_BYTES", 0)  # every split streams


def test_a_split_over_the_memory_budget_streams(single, streamed):
    task = make_task(folder_cfg(single), RGB32)
    assert all(s.x is None for s in task.splits().values())


def test_streamed_batches_equal_the_in_memory_ones(single, monkeypatch):
    in_memory = make_task(folder_cfg(single), RGB32)
    monkeypatch.setattr(data, "TENSOR_BUDGET_BYTES", 0)
    streamed = make_task(folder_cfg(single), RGB32)
    order = torch.randperm(len(in_memory.train), generator=torch.Generator().manual_seed(0))
    for (xa, ya), (xb, yb) in zip(in_memory.train.batches(16, order), streamed.train.batches(16, order), strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_training_on_a_streamed_task_gives_the_same_result(single, monkeypatch):
    from harness.learn.models import build_model
    from harness.learn.train import fit

    cfg = folder_cfg(single, epochs=2, augment=True)
    pre = preprocessing(cfg.model, "none")
    histories = []
    for budget in (data.TENSOR_BUDGET_BYTES, 0):
        monkeypatch.setattr(data, "TENSOR_BUDGET_BYTES", budget)
        task = make_task(cfg, pre)
        torch.manual_seed(0)
        result = fit(build_model(cfg.model, len(task.classes), "none"), task, cfg)
        histories.append([{k: v for k, v in h.items() if k != "epoch_seconds"} for h in result.history])
    assert histories[0] == histories[1]


def test_dataset_spec_names_the_choices_for_an_unknown_dataset():
    with pytest.raises(ValueError, match="cifar10.*folder:PATH"):
        dataset_spec("imagenet")



def test_overlapping_source_and_target_classes_are_refused_for_source_pretraining():
    from harness.spec import TrialConfig

    with pytest.raises(ValueError, match="share"):
        check_data(TrialConfig(weights="source", source_classes=None, target_classes=(5, 6, 7, 8, 9)))
    check_data(TrialConfig(weights="none", source_classes=None, target_classes=None))  # no pretraining: fine


def test_imagenet_preprocessing_runs_the_weights_own_transforms_interpolation_included():
    pre = preprocessing("swin_t", "imagenet")  # Swin's weights declare bicubic resizing
    expected = ("bicubic", 232, 224, "Swin_T_Weights.IMAGENET1K_V1")
    assert (pre.interpolation, pre.resize, pre.size, pre.weights) == expected
    images = torch.rand(2, 3, 64, 48)
    declared = torchvision.models.get_model_weights("swin_t").DEFAULT.transforms()
    torch.testing.assert_close(preprocess(images, pre), declared(images))
    bilinear = dataclasses.replace(pre, interpolation="bilinear", weights=None)
    assert not torch.allclose(preprocess(images, bilinear), declared(images))


def test_grey_images_feed_the_weights_transforms_as_three_channels():
    pre = preprocessing("resnet18", "imagenet")
    assert preprocess(torch.rand(2, 1, 40, 40), pre).shape == (2, 3, 224, 224)


def test_colour_images_turned_grey_on_request_are_warned_about_and_grey_ones_are_not(tmp_path):
    from harness.learn.checks import colour_warning

    images, labels = digits(per_class=4, classes=3)
    colour = write_folder(tmp_path / "colour", images, labels, rgb=True)
    grey = write_folder(tmp_path / "grey", images, labels, rgb=False)
    said = colour_warning(TrialConfig(dataset=f"folder:{colour}", model="lenet5", colour="grey"))
    assert said and "colour='grey' turns them grey for lenet5" in said and "Leave colour at 'keep'" in said
    assert colour_warning(TrialConfig(dataset=f"folder:{colour}", model="lenet5")) is None  # kept: nothing lost
    assert colour_warning(TrialConfig(dataset=f"folder:{grey}", model="lenet5", colour="grey")) is None
    assert colour_warning(TrialConfig(dataset=f"folder:{colour}", model="resnet18", weights="none")) is None


def test_a_one_channel_model_on_colour_images_gets_three_channels_and_grey_images_keep_one(tmp_path):
    from harness.learn.data import target_preprocessing

    images, labels = digits(per_class=4, classes=3)
    colour = write_folder(tmp_path / "colour", images, labels, rgb=True)
    grey = write_folder(tmp_path / "grey", images, labels, rgb=False)
    kept = target_preprocessing(TrialConfig(dataset=f"folder:{colour}", model="lenet5"))
    assert (kept.channels, kept.widened_from, kept.mean) == (3, 1, (0.5, 0.5, 0.5))
    assert target_preprocessing(TrialConfig(dataset=f"folder:{grey}", model="lenet5")).channels == 1
    assert target_preprocessing(TrialConfig(dataset=f"folder:{colour}", model="lenet5", colour="grey")).channels == 1
    assert target_preprocessing(TrialConfig(dataset="cifar10", model="lenet5")).channels == 3  # the registry says
    assert target_preprocessing(TrialConfig(dataset="digits", model="lenet5")).widened_from is None


def test_the_widened_first_convolution_sees_a_grey_image_as_the_pretrained_one_did():
    from harness.learn.models import build_model, widen_input

    grey_model = build_model("lenet5", 5)
    wide = build_model("lenet5", 5)
    wide.load_state_dict(grey_model.state_dict())
    widen_input(wide.net, 3)
    grey = torch.rand(4, 1, 32, 32)
    torch.testing.assert_close(wide.net.conv1(grey.expand(-1, 3, -1, -1)), grey_model.net.conv1(grey))
    assert wide.net.conv1[0].in_channels == 3 and build_model("lenet5", 5, in_channels=3).net.conv1[0].in_channels == 3


@pytest.mark.slow  # trains two models to tell the colours apart
def test_classes_that_differ_only_in_colour_are_learned_once_colour_is_kept(tmp_path):
    """Red, green and blue squares of one brightness: grey, the three classes are one; in colour, easy."""
    from PIL import Image

    from harness.learn.data import make_task, target_preprocessing
    from harness.learn.models import build_model
    from harness.learn.train import evaluate, fit

    rng = np.random.default_rng(0)
    for label, rgb in enumerate([(150, 0, 0), (0, 77, 0), (0, 0, 255)]):  # nearly one brightness
        (tmp_path / "c" / f"class_{label}").mkdir(parents=True)
        for i in range(40):
            pixels = np.clip(np.array(rgb) * rng.uniform(0.9, 1.1) + rng.normal(0, 4, (32, 32, 3)), 0, 255)
            Image.fromarray(pixels.astype(np.uint8)).save(tmp_path / "c" / f"class_{label}" / f"{i}.png")
    accuracy = {}
    for colour in ("keep", "grey"):
        cfg = TrialConfig(dataset=f"folder:{tmp_path / 'c'}", target_classes=None, shots=None, model="lenet5",
                          weights="none", optimizer="adam", lr=3e-3, epochs=25, colour=colour)
        task = make_task(cfg, target_preprocessing(cfg))
        torch.manual_seed(0)  # the same initialisation each time
        model = build_model("lenet5", 3, in_channels=task.pre.channels)
        fit(model, task, cfg)
        accuracy[colour] = evaluate(model, task.test).acc
    assert accuracy["keep"] > 0.9 and accuracy["grey"] < 0.7, accuracy


def test_too_many_shots_names_the_classes_short_of_images_and_the_flag_to_change():
    from harness.learn.data import few_shot

    labels = np.array([0] * 4 + [1] * 9 + [2] * 5)
    with pytest.raises(ValueError, match=r"'cat': 4, 'owl': 5; use --shots 4 or less, or add images"):
        few_shot(np.arange(len(labels)), labels, 6, seed=0, names=["cat", "dog", "owl"])
    assert len(few_shot(np.arange(len(labels)), labels, 4, seed=0, names=["cat", "dog", "owl"])) == 12


def test_a_validation_split_too_small_to_rank_trials_is_warned_about():
    from harness.learn.checks import validation_warning

    assert validation_warning(TrialConfig()) is None  # the default task: 108 validation images
    said = validation_warning(TrialConfig(val_fraction=0.02))
    assert said and said.startswith("the validation split holds 11 images for 5 classes") and "steps of 9" in said
