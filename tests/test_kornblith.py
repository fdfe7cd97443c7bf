"""kornblith_suite, the suite for users with internet and a GPU: every workload's dataset loads through the
harness's own download-and-load code from local stand-ins in torchvision's layouts (written here; only the
checksums are stood in for), and offline the suite stops before anything is written, naming what to fetch."""

from __future__ import annotations

import dataclasses
import os

import pytest
import torchvision.datasets as tvd

from harness.learn.data import make_task
from harness.learn.models import preprocessing
from harness.study import main
from harness.study_file import load_study
from harness.suite_spec import workload_specs
from tests.fabricate import write_cifar, write_flowers102, write_pets, write_stl10

SUITE = load_study("kornblith_suite", suites=True)


@pytest.fixture(autouse=True)
def _offline(offline):  # conftest.offline, for every test here
    pass


@pytest.fixture(scope="module")
def stand_ins(tmp_path_factory):
    root = tmp_path_factory.mktemp("kornblith")
    write_cifar(root, 10, 12)
    write_cifar(root, 100, 3)
    write_stl10(root, 12)
    write_flowers102(root)
    write_pets(root, 4)
    return root


@pytest.fixture
def checksums_stood_in(monkeypatch):
    """The stand-ins cannot match torchvision's checksums of the real files: a file's presence stands in."""
    for module in (tvd.cifar, tvd.stl10, tvd.flowers102):
        monkeypatch.setattr(module, "check_integrity", lambda path, md5=None: os.path.isfile(path))


@pytest.mark.slow  # stand-ins of five datasets, hundreds of images
@pytest.mark.parametrize("index", range(len(SUITE.workloads)))
def test_every_workload_of_the_kornblith_suite_loads_its_dataset(stand_ins, checksums_stood_in, index):
    spec = workload_specs(SUITE)[index]
    cfg = spec.arms[0].config(spec.base)
    classes = {"cifar10": 10, "cifar100": 100, "flowers102": 102, "oxford_iiit_pet": 37, "stl10": 10}[cfg.dataset]
    assert cfg.weights == "imagenet" and cfg.target_classes is None  # every class of the target
    small = dataclasses.replace(cfg, data_root=str(stand_ins), shots=1, val_fraction=0.34)
    task = make_task(small, preprocessing("resnet18", "none"))  # the dataset's loading, not the weights, is tested
    assert len(task.classes) == classes and len(task.train) == classes
    assert task.train.x.shape[1:] == (3, 32, 32) and len(task.test) > 0


def test_offline_the_kornblith_suite_stops_before_writing_naming_what_to_fetch(tmp_path, capsys):
    root = tmp_path / "mlruns"
    assert main(["kornblith_suite", "--root", str(root), "--data-root", str(tmp_path / "data")]) == 2
    err = capsys.readouterr().err
    assert "https://" in err and not root.exists()
