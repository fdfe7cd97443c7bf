"""Every bad input exits 2 with one message that says what is wrong, where, and how to fix it, before anything is
written; a cached checkpoint that no longer reads is pretrained again."""

import contextlib
import os
import random

import numpy as np
import pytest
import torch
from fabricate import digits, half_written_jpeg, write_folder

import harness.cli
import harness.study
from harness.learn.datasets import BrokenImage, ImageFiles
from harness.learn.weights import read_state_dict
from harness.run.checkpoints import source_checkpoint
from harness.spec import TrialConfig
from tests.tiers import slow_except


def run_cli(tmp_path, *args):
    """`python -m harness.study ...` with its records under tmp_path: (exit code, stderr)."""
    return harness.study.main([*args, "--root", str(tmp_path / "runs"), "--reports", str(tmp_path / "reports")])


def nothing_written(tmp_path) -> bool:
    return not (tmp_path / "runs").exists() and not (tmp_path / "reports").exists()


@pytest.fixture
def studies_dir(tmp_path, monkeypatch):
    """Study files in a folder of the test's own, read by the CLI."""
    folder = tmp_path / "studies"
    folder.mkdir()
    monkeypatch.setattr(harness.cli, "STUDIES_DIR", folder)  # the default of --studies
    return folder


def test_a_study_file_with_a_syntax_error_is_named_with_its_line(tmp_path, studies_dir, capsys):
    (studies_dir / "broken.py").write_text("from harness.spec import StudySpec\n\nSTUDY = StudySpec(name='x',\n")
    assert run_cli(tmp_path, "broken") == 2
    err = capsys.readouterr().err
    assert f"{studies_dir / 'broken.py'}, line 3" in err and "fix the study file" in err
    assert "Traceback" not in err and nothing_written(tmp_path)


def test_a_study_file_whose_import_fails_is_named_with_the_line_that_failed(tmp_path, studies_dir, capsys):
    (studies_dir / "imports.py").write_text("import math\nimport no_such_package_xyz\n")
    assert run_cli(tmp_path, "imports") == 2
    err = capsys.readouterr().err
    assert f"{studies_dir / 'imports.py'}, line 2: ModuleNotFoundError" in err and "no_such_package_xyz" in err
    assert nothing_written(tmp_path)


def test_a_broken_install_is_blamed_on_the_package_not_the_study_file(tmp_path, studies_dir, capsys, monkeypatch):
    """As torchvision does when it does not match torch: RuntimeError: operator torchvision::nms does not exist."""
    package = tmp_path / "site-packages" / "brokenvision"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("raise RuntimeError('operator torchvision::nms does not exist')\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site-packages"))
    (studies_dir / "uses.py").write_text("import math\nimport brokenvision\n")
    assert run_cli(tmp_path, "uses") == 2
    err = capsys.readouterr().err
    assert "the installed package 'brokenvision' failed while loading (RuntimeError: operator" in err
    assert "the study file is not at fault" in err and "fix the study file" not in err and nothing_written(tmp_path)


def test_torch_and_torchvision_that_do_not_match_are_the_environments_problem(tmp_path, capsys, monkeypatch):
    """The default study file imports no torchvision: a mismatched pair surfaced in the checks, as a traceback.
    Now: exit 2 before anything is written, the versions named and the fix given, the study not blamed."""
    import sys

    fake = tmp_path / "site-packages" / "torchvision"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise RuntimeError('operator torchvision::nms does not exist')\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site-packages"))
    monkeypatch.delitem(sys.modules, "torchvision")  # put back after the test
    assert run_cli(tmp_path, "sgd_vs_adam") == 2
    err = capsys.readouterr().err
    assert "the Python environment is broken, not the study: torch 2." in err and "torchvision 0." in err
    assert "operator torchvision::nms does not exist" in err and "pip install torch==" in err
    assert "Traceback" not in err and "study file" not in err and nothing_written(tmp_path)


STUDY_FILE = """from harness.spec import Arm, StudySpec, TrialConfig
STUDY = StudySpec(question="?", search_space=lambda trial, arm: {{}}, {fields})
"""
TWO_ARMS = 'arms=(Arm("a", "sgd"), Arm("b", "adam"))'


@pytest.mark.parametrize(("fields", "said"), [
    (f"{TWO_ARMS}, n_trials=0", "n_trials must be a whole number from 1 to 10,000; got 0"),
    (f"{TWO_ARMS}, n_trials=-3", "n_trials must be a whole number from 1 to 10,000; got -3"),
    (f"{TWO_ARMS}, n_trials='20'", "n_trials must be a whole number from 1 to 10,000; got '20'"),
    (f"{TWO_ARMS}, seeds=0", "seeds must be a whole number from 1"),
    (f"{TWO_ARMS}, confirm_top=0", "confirm_top must be a whole number from 1"),
    (f"{TWO_ARMS}, seed_step=-5", "seed_step must be a whole number from 0"),
    (f"{TWO_ARMS}, seed_cap=0", "seed_cap must be a whole number from 1"),
    (f"{TWO_ARMS}, seeds=5, seed_step=5, seed_cap=3", "seed_cap must be at least seeds (5) or None; got 3"),
    (f"{TWO_ARMS}, spending='bayes'", "choose one of obrien_fleming, pocock"),
    ('arms=(Arm("a", "sgd"), Arm("a", "adam"))', "arm names must differ; declared more than once: a"),
    ("arms=()", "arms must be a non-empty tuple"),
    ('arms=("sgd", "adam")', "arms must be Arm(...) values, not str"),
    (f"{TWO_ARMS}, base=TrialConfig(epochs='12')", "epochs='12' must be a whole number"),
    (f"{TWO_ARMS}, n_trials=1_000_000_000", "n_trials must be a whole number from 1 to 10,000"),
])
def test_a_study_files_bad_values_are_refused_like_the_flags_before_anything_is_written(
        tmp_path, studies_dir, capsys, fields, said):
    (studies_dir / "bad.py").write_text(STUDY_FILE.format(fields=fields))
    assert run_cli(tmp_path, "bad") == 2
    err = capsys.readouterr().err
    assert said in err and "Traceback" not in err and nothing_written(tmp_path), err


@pytest.mark.parametrize(("flags", "said"), [
    (("--trials", "1000000000"), "--trials: must be at most 10,000"),
    (("--seeds", "1000000000"), "--seeds: must be at most 1,000"),
    (("--epochs", "100000000"), "--epochs: must be at most 10,000"),
    (("--workers", "1000"), "--workers 1000: this machine's free memory holds about"),
])
def test_runaway_sizes_are_refused_before_anything_is_written(tmp_path, capsys, flags, said):
    with contextlib.suppress(SystemExit):  # argparse exits 2 on a bad flag value
        assert run_cli(tmp_path, "sgd_vs_adam", *flags) == 2
    err = capsys.readouterr().err
    assert said in err and "Traceback" not in err and nothing_written(tmp_path), err


@pytest.mark.parametrize("seed", range(4))  # random bytes fail in torch.load at different places
def test_weights_of_random_bytes_are_refused_before_anything_is_written(tmp_path, capsys, seed):
    weights = tmp_path / "random.pt"
    weights.write_bytes(np.random.default_rng(seed).bytes(2048))
    assert run_cli(tmp_path, "sgd_vs_adam", "--weights", str(weights)) == 2
    err = capsys.readouterr().err
    assert f"checkpoint {weights} is not a readable PyTorch file" in err and "torch.save(model.state_dict()" in err
    assert "weights_only=False" not in err and nothing_written(tmp_path)


class RunsCode:
    """A pickle that would run a shell command when unpickled without weights_only."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_weights_that_would_run_code_are_refused_unread(tmp_path, capsys):
    weights, marker = tmp_path / "evil.pt", tmp_path / "ran"
    torch.save({"conv1.0.weight": RunsCode(marker)}, weights)
    assert run_cli(tmp_path, "sgd_vs_adam", "--weights", str(weights)) == 2
    err = capsys.readouterr().err
    assert "holds Python objects" in err and "none of its code ran" in err and "weights_only=False" not in err
    assert not marker.exists() and nothing_written(tmp_path)


def test_weights_of_another_model_are_refused_naming_the_mismatch(tmp_path, capsys):
    weights = tmp_path / "other.pt"
    torch.save({"fc.weight": torch.zeros(2, 2)}, weights)
    assert run_cli(tmp_path, "sgd_vs_adam", "--weights", str(weights)) == 2
    assert "does not fit this model" in capsys.readouterr().err and nothing_written(tmp_path)


def test_a_whole_pickled_model_is_refused_as_objects_not_a_state_dict(tmp_path):
    weights = tmp_path / "model.pt"
    torch.save(torch.nn.Linear(2, 2), weights)  # the model object, not its state_dict(): a common slip
    with pytest.raises(ValueError, match=r"holds Python objects \(torch\.nn\..*Linear\)"):
        read_state_dict(weights)


def test_any_damaged_bytes_are_a_clear_value_error(tmp_path):
    """Random bytes reach the unpickler's stack and memo in many ways (an empty-stack pop is IndexError inside
    torch): each must read as 'not a readable PyTorch file', never as a traceback."""
    path = tmp_path / "damaged.pt"
    damaged = [b"\x80\x02.", *(random.Random(seed).randbytes(500) for seed in range(200))]
    for data in damaged:
        path.write_bytes(data)
        with pytest.raises(ValueError, match="is not a readable PyTorch file"):
            read_state_dict(path)


@pytest.mark.parametrize("damage", slow_except(["garbage", "empty stack", "truncated"], "truncated"))  # 2 pretrainings
def test_a_corrupted_cached_checkpoint_is_pretrained_again(stores, tracking, capsys, damage):
    cfg = TrialConfig(pretrain_epochs=1)
    first = source_checkpoint(cfg, stores.checkpoints)
    data = first.path.read_bytes()
    bad = {"garbage": random.Random(0).randbytes(500), "empty stack": b"\x80\x02.", "truncated": data[: len(data) // 2]}
    first.path.write_bytes(bad[damage])
    capsys.readouterr()
    second = source_checkpoint(cfg, stores.checkpoints)
    err = capsys.readouterr().err
    assert f"cached source checkpoint {first.key} is unreadable" in err and "pretraining it again" in err
    assert second.path == first.path and second.run_id != first.run_id
    assert set(read_state_dict(second.path)) == set(torch.load(second.path, weights_only=True))  # readable again


@pytest.mark.slow  # two pretrainings
def test_a_cached_checkpoint_whose_record_is_corrupted_is_pretrained_again(stores, tracking):
    cfg = TrialConfig(pretrain_epochs=1)
    first = source_checkpoint(cfg, stores.checkpoints)
    first.path.with_suffix(".json").write_text("{not json")
    assert source_checkpoint(cfg, stores.checkpoints).run_id != first.run_id


@pytest.fixture
def image_folder(tmp_path):
    images, labels = digits(per_class=5, classes=10)
    return write_folder(tmp_path / "imgs", images, labels, rgb=True)


@pytest.mark.parametrize("damage", ["not an image", "truncated", "half-written jpeg"])
def test_a_broken_image_in_a_folder_dataset_is_named_before_anything_is_written(tmp_path, image_folder, capsys,
                                                                               damage):
    broken = min((image_folder / "class_7").iterdir())
    data = broken.read_bytes()
    if damage == "half-written jpeg":
        broken = half_written_jpeg(image_folder / "class_7" / "cut.jpg")
    else:
        broken.write_bytes(b"<html>not found</html>" if damage == "not an image" else data[: len(data) // 2])
    code = run_cli(tmp_path, "sgd_vs_adam", "--dataset", f"folder:{image_folder}")
    err = capsys.readouterr().err
    assert code == 2 and f"cannot read image {broken}" in err and "remove or replace that file" in err
    assert nothing_written(tmp_path)


@pytest.mark.slow  # a process of its own: 5 to 10 s of importing PyTorch
def test_a_half_written_jpeg_stops_the_study_command_with_one_line_before_anything_is_written(tmp_path,
                                                                                               image_folder):
    """As the user runs it: exit 2, one line naming the file, no traceback, nothing written."""
    import subprocess
    import sys

    jpeg = half_written_jpeg(image_folder / "class_7" / "cut.jpg")
    done = subprocess.run([sys.executable, "-m", "harness.study", "sgd_vs_adam", "--dataset", f"folder:{image_folder}",
                           "--root", str(tmp_path / "runs"), "--reports", str(tmp_path / "reports")],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2, done.stderr
    said = f"cannot read image {jpeg} (OSError: image file is truncated (1 bytes not processed)); remove or replace"
    assert done.stderr.splitlines() == [f"error: arm sgd-frozen: {said} that file"]
    assert nothing_written(tmp_path)


def test_a_broken_image_met_while_reading_names_the_file(tmp_path):
    broken = tmp_path / "x.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n broken")
    with pytest.raises(BrokenImage, match=f"cannot read image {broken}"):
        ImageFiles([str(broken)]).read([0], 32)


def test_a_one_class_folder_is_refused_before_anything_is_written(tmp_path, capsys):
    images, labels = digits(per_class=40, classes=1)
    folder = write_folder(tmp_path / "one", images, labels)
    assert run_cli(tmp_path, "sgd_vs_adam", "--dataset", f"folder:{folder}", "--target-classes", "all") == 2
    err = capsys.readouterr().err
    assert f"folder:{folder}, which has one class: a classifier needs at least 2 classes" in err
    assert nothing_written(tmp_path)


def test_a_one_class_target_is_refused_before_anything_is_written(tmp_path, capsys):
    assert run_cli(tmp_path, "sgd_vs_adam", "--target-classes", "7") == 2
    assert "target_classes [7]: a classifier needs at least 2 classes" in capsys.readouterr().err
    assert nothing_written(tmp_path)


def test_a_broken_image_met_by_a_loader_worker_is_one_message_not_the_workers_traceback(tmp_path):
    from harness.learn.data import make_task
    from harness.learn.models import preprocessing

    images, labels = digits(per_class=60, classes=10)  # splits of over 256 images are read by worker processes
    folder = write_folder(tmp_path / "imgs", images, labels)
    broken = min((folder / "class_7").iterdir())
    broken.write_bytes(b"junk")
    cfg = TrialConfig(dataset=f"folder:{folder}", target_classes=None, shots=None)
    with pytest.raises(BrokenImage) as caught:
        make_task(cfg, preprocessing("lenet5", "none"))
    assert str(caught.value).startswith(f"cannot read image {broken} (") and "Traceback" not in str(caught.value)


@pytest.mark.parametrize("where", ["below", "is"])
def test_a_reports_folder_a_file_stands_in_for_is_refused_before_anything_is_written(tmp_path, capsys, where):
    blocker = tmp_path / "taken"
    blocker.write_text("a regular file")
    folder = blocker / "reports" if where == "below" else blocker
    code = harness.study.main(["sgd_vs_adam", "--root", str(tmp_path / "runs"), "--reports", str(folder)])
    err = capsys.readouterr().err
    assert code == 2 and f"{blocker} is a file, not a folder" in err and "Traceback" not in err, err
    assert not (tmp_path / "runs").exists()


def test_without_reports_a_study_reports_beside_its_records(tmp_path):
    args = harness.study.parser().parse_args(["sgd_vs_adam", "--root", str(tmp_path / "runs")])
    assert harness.cli.reports_folder(args) == tmp_path / "runs" / "reports"  # the checkout's reports/ untouched


# --- fuzzing: hundreds of damaged inputs, each a clear error (or, where the damage is harmless, accepted) -------


def test_a_real_checkpoint_truncated_or_bit_flipped_anywhere_is_a_clear_value_error(tmp_path):
    from harness.learn.models import build_model

    good = tmp_path / "good.pt"
    torch.save(build_model("lenet5", 5, "none").net.state_dict(), good)
    data, rng, path = good.read_bytes(), random.Random(0), tmp_path / "damaged.pt"
    cuts = [rng.randrange(len(data)) for _ in range(60)]
    flips = [rng.randrange(len(data)) for _ in range(60)]
    for damaged in [data[:c] for c in cuts] + [data[:f] + bytes([data[f] ^ 0xFF]) + data[f + 1:] for f in flips]:
        path.write_bytes(damaged)
        try:
            read_state_dict(path)  # a flip inside tensor data still loads: damaged numbers, not a broken file
        except ValueError as error:
            assert str(path) in str(error) and "torch.save(model.state_dict()" in str(error)


@pytest.mark.parametrize("kind", ["png", "jpg"])
def test_an_image_truncated_or_bit_flipped_anywhere_reads_or_is_a_broken_image_naming_it(tmp_path, kind):
    from PIL import Image

    good = tmp_path / f"good.{kind}"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (24, 24, 3), dtype=np.uint8)).save(good)
    data, rng, path = good.read_bytes(), random.Random(1), tmp_path / f"damaged.{kind}"
    cuts = [rng.randrange(1, len(data)) for _ in range(40)]
    flips = [rng.randrange(len(data)) for _ in range(40)]
    broken = 0
    for damaged in [data[:c] for c in cuts] + [data[:f] + bytes([data[f] ^ 0xFF]) + data[f + 1:] for f in flips]:
        path.write_bytes(damaged)
        try:
            assert ImageFiles([str(path)]).read([0], 32).shape[-2:] == (32, 32)
        except BrokenImage as error:
            assert f"cannot read image {path}" in str(error)
            broken += 1
    assert broken >= 40  # every truncation at least is caught


def test_a_study_file_damaged_anywhere_is_refused_naming_the_file(tmp_path):
    from harness.spec import STUDIES_DIR
    from harness.study_file import study_from_source

    source, rng, path = (STUDIES_DIR / "sgd_vs_adam.py").read_text(), random.Random(2), tmp_path / "sgd_vs_adam.py"
    lines = source.splitlines(keepends=True)
    damaged = [source[: rng.randrange(len(source))] for _ in range(40)]  # truncated
    damaged += ["".join(line for j, line in enumerate(lines) if j != rng.randrange(len(lines))) for _ in range(40)]
    for i in range(40):  # a character replaced by another anywhere
        at = rng.randrange(len(source))
        damaged.append(source[:at] + rng.choice("()[]{},:=\"'#0a ") + source[at + 1:])
    refused = 0
    for text in damaged:
        try:
            study_from_source("sgd_vs_adam", text, path)
        except (ValueError, TypeError) as error:  # the errors the command line turns into exit 2 and one message
            assert str(error).startswith(str(path)) or "sgd_vs_adam" in str(error), error
            refused += 1
    assert refused >= 60  # most damage breaks the file; what loads is a (changed) valid study


def test_a_report_of_an_unknown_or_unrun_study_is_refused_with_exit_2_and_writes_nothing(tmp_path, capsys):
    from harness.report import main as report_main

    root = tmp_path / "mlruns"
    assert report_main(["nosuch", "--root", str(root), "--reports", str(tmp_path / "reports")]) == 2
    err = capsys.readouterr().err
    assert "unknown study 'nosuch'; studies in" in err and "sgd_vs_adam" in err
    assert report_main(["sgd_vs_adam", "--root", str(root), "--reports", str(tmp_path / "reports")]) == 2
    assert "run `python -m harness.study sgd_vs_adam` first" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # no empty store, no report folder
