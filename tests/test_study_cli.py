"""Bad input fails before anything is written, with a message naming the valid choices."""

import os
import subprocess
import sys

import pytest

from harness.study import main


def run_cli(tmp_path, *args):
    return main([*args, "--root", str(tmp_path / "mlruns"), "--reports", str(tmp_path / "reports")])


def test_help_documents_the_overrides():
    out = subprocess.run([sys.executable, "-m", "harness.study", "--help"], capture_output=True, text=True,
                         check=True).stdout
    for flag in ("--list", "--trials", "--seeds", "--epochs", "--storage", "--tracking-uri"):
        assert flag in out


def test_help_is_grouped_names_every_registry_entry_and_states_defaults():
    from harness.learn.datasets import DATASETS
    from harness.learn.models import MODELS

    out = subprocess.run([sys.executable, "-m", "harness.study", "--help"], capture_output=True, text=True,
                         check=True, env={**os.environ, "COLUMNS": "100"}).stdout
    for group in ("budget:", "data:", "model:", "stores:", "workers:"):
        assert f"\n{group}" in out
    for name in [*MODELS, *DATASETS]:
        assert name in " ".join(out.split()), f"{name} is missing from --help"
    flat = " ".join(out.split())  # wrapping may break a line anywhere
    assert "--trials N" in flat and "TRIALS" not in flat  # meaningful metavars, not argparse's defaults
    assert "(default: mlruns)" in flat and "(default: auto)" in flat
    assert max(map(len, out.splitlines())) <= 100  # wrapped to the terminal, not one long line


def test_study_and_report_share_the_store_flags():
    from harness.report import parse_args
    from harness.study import parser

    for flag in ("--root", "--storage", "--tracking-uri", "--reports", "--studies"):
        assert parser().parse_args(["x", flag, "v"]) is not None
        assert parse_args(["x", flag, "v"]) is not None


def test_list_shows_the_studies(capsys):
    assert main(["--list"]) == 0
    assert "sgd_vs_adam" in capsys.readouterr().out


def test_unknown_study_exits_nonzero_naming_choices_and_writes_nothing(tmp_path, capsys):
    assert run_cli(tmp_path, "sgd_vs_adma") != 0
    assert "sgd_vs_adam" in capsys.readouterr().err
    assert not (tmp_path / "mlruns").exists() and not (tmp_path / "reports").exists()


@pytest.mark.parametrize("flag", ["--trials", "--seeds", "--epochs"])
def test_a_count_below_one_is_refused_before_anything_is_written(tmp_path, capsys, flag):
    with pytest.raises(SystemExit) as exit_info:
        run_cli(tmp_path, "sgd_vs_adam", flag, "0")
    assert exit_info.value.code != 0
    assert ">= 1" in capsys.readouterr().err
    assert not (tmp_path / "mlruns").exists()


@pytest.mark.parametrize(("flag", "value", "choice"), [
    ("--model", "lenet6", "resnet18"),
    ("--dataset", "digitz", "digits"),
    ("--weights", "/no/such/file.pt", "imagenet"),
])
def test_an_unknown_name_is_refused_naming_the_valid_choices(tmp_path, capsys, flag, value, choice):
    assert run_cli(tmp_path, "sgd_vs_adam", flag, value) == 2
    assert choice in capsys.readouterr().err
    assert not (tmp_path / "mlruns").exists()


def test_class_lists_accept_ranges_lists_and_all():
    from harness.study import apply_overrides, parser
    from harness.study_file import load_study

    args = parser().parse_args(["sgd_vs_adam", "--source-classes", "0-2,7", "--target-classes", "all"])
    spec = apply_overrides(load_study("sgd_vs_adam"), args)
    assert spec.base.source_classes == (0, 1, 2, 7) and spec.base.target_classes is None


def test_a_class_split_the_dataset_lacks_is_refused_before_anything_is_written(tmp_path, capsys):
    assert run_cli(tmp_path, "sgd_vs_adam", "--target-classes", "5-12") == 2
    assert "0..9" in capsys.readouterr().err
    assert not (tmp_path / "mlruns").exists()


def test_help_names_every_registered_dataset():
    from harness.learn.datasets import DATASETS
    from harness.study import parser

    text = parser().format_help()
    assert all(name in text for name in DATASETS)  # the help is typed out: this keeps it from drifting


def test_resuming_a_study_whose_file_changed_is_refused_naming_the_setting(tmp_path):
    import dataclasses

    from harness.reporting.publish import Publisher
    from harness.run.resume import check_resume
    from harness.run.worker import Worker
    from harness.stores import Stores
    from harness.study_file import load_study

    stores = Stores(root=tmp_path / "mlruns")
    spec = load_study("sgd_vs_adam")
    # a first run records each arm's settings
    Worker(spec, stores, "test", Publisher(tmp_path / "reports"), tmp_path / "report.md").open()
    check_resume(spec, stores)  # the same settings resume
    edited = dataclasses.replace(spec, base=dataclasses.replace(spec.base, epochs=3))  # the file was edited
    with pytest.raises(ValueError, match="epochs"):
        check_resume(edited, stores)


def test_command_line_settings_make_a_study_of_their_own(tmp_path):
    from harness.study import apply_overrides, parser
    from harness.study_file import load_study

    spec = load_study("sgd_vs_adam")
    same = apply_overrides(spec, parser().parse_args(["sgd_vs_adam", "--epochs", str(spec.base.epochs)]))
    assert same.name == "sgd_vs_adam"  # a flag that repeats the file's value changes nothing
    other = apply_overrides(spec, parser().parse_args(["sgd_vs_adam", "--epochs", "3", "--model", "resnet18"]))
    assert other.name == "sgd_vs_adam--epochs-3--model-resnet18" and other.base.study == other.name
    folder = apply_overrides(spec, parser().parse_args(["sgd_vs_adam", "--dataset", "folder:/data/my imgs"]))
    assert folder.name.startswith("sgd_vs_adam--dataset-my_imgs-") and "/" not in folder.name
    assert folder.base.source_dataset == "digits" and folder.base.target_classes is None


def test_a_variant_is_rebuilt_from_what_its_runs_recorded_even_without_its_study_file(tmp_path):
    import mlflow

    from harness.analysis.recorded import recorded_study
    from harness.run.parent import variant_record
    from harness.schema import STUDY_SOURCE, STUDY_VARIANT
    from harness.stores import Stores, experiment_id
    from harness.study_file import load_study

    stores = Stores(root=tmp_path / "mlruns")
    spec = load_study("sgd_vs_adam").variant(seeds=4, epochs=3)
    eid = experiment_id(stores, spec.name)
    with mlflow.start_run(experiment_id=eid, tags={"phase": "study"}):
        mlflow.log_text(spec.source, STUDY_SOURCE)
        mlflow.log_dict(variant_record(spec), STUDY_VARIANT)
    rebuilt = recorded_study(spec.name, stores, studies=tmp_path / "no-study-files")
    assert (rebuilt.name, rebuilt.seeds, rebuilt.base.epochs) == ("sgd_vs_adam--epochs-3--seeds-4", 4, 3)
    assert rebuilt.base == spec.base and rebuilt.arms == spec.arms and rebuilt.plan == spec.plan
    with pytest.raises(ValueError, match="neither a file"):
        recorded_study("sgd_vs_adam--epochs-9", stores)


def test_a_fixed_freeze_depth_beyond_the_models_stages_is_refused_before_anything_is_written(tmp_path):
    import dataclasses

    from harness.spec import Arm
    from harness.study import check
    from harness.study_file import load_study

    spec = load_study("sgd_vs_adam")
    spec = dataclasses.replace(spec, arms=(Arm("too-deep", "sgd", "freeze_k", fixed={"freeze_k": 7}),),
                               plan=())
    with pytest.raises(ValueError, match="freeze_k=7, but lenet5 has stages 0..4"):
        check(spec)


def test_the_names_the_command_line_shows_are_the_registries():
    from harness.learn.datasets import DATASETS
    from harness.learn.models import MODELS
    from harness.naming import DATASET_NAMES, MODEL_NAMES

    assert (DATASET_NAMES, MODEL_NAMES) == (tuple(DATASETS), tuple(MODELS))


def test_describe_lists_what_a_study_file_can_name_from_the_registries(capsys):
    import dataclasses

    from harness.describe import STRATEGY_NOTES
    from harness.learn.datasets import DATASETS
    from harness.learn.models import MODELS, STRATEGIES, build_model
    from harness.learn.optim import OPTIMIZERS
    from harness.spec import TrialConfig

    assert main(["--describe"]) == 0
    out = capsys.readouterr().out
    assert set(STRATEGY_NOTES) == set(STRATEGIES)
    for name in [*OPTIMIZERS, *STRATEGIES, *DATASETS, *(f.name for f in dataclasses.fields(TrialConfig))]:
        assert f"  {name} " in out, name
    for name in ("lenet5", "resnet8"):  # the stage counts are the models' own
        stages = build_model(name, 5).stage_names
        assert f"  {name:10s} {len(stages)} stages: {', '.join(stages)};" in out
    assert all(f"  {name:10s} " in out for name in MODELS)
    assert "momentum, nesterov" in out and "NonInferior" in out and "(training images per target class" in out
    # every public constructor, as a study or suite file calls it, and each is what `import harness` gives
    import harness

    for call in ("StudySpec(name='', question, arms, search_space, base=TrialConfig(), n_trials=20",
                 "Arm(name, optimizer, strategy='full'", "SuiteSpec(name='', question, study, workloads",
                 "Workload(label, changes={}, target=None)", "Trend(arms, direction='decreasing'"):
        assert f"  {call}" in out, call
        assert getattr(harness, call.split("(")[0])


@pytest.mark.slow  # a fresh interpreter importing the whole package
def test_a_worker_starts_without_the_report_s_imports():
    """matplotlib and seaborn (with pandas and scipy) are imported by the worker that publishes, when it
    publishes, not by every worker before its first run."""
    code = ("import sys, harness.study, harness.run.worker, harness.reporting.publish\n"
            "assert 'matplotlib' not in sys.modules and 'seaborn' not in sys.modules, 'imported at start'\n")
    done = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_freezing_layers_of_a_model_without_pretrained_weights_is_said_once_per_arm(capsys):
    from harness.study import check
    from harness.study_file import load_study

    check(load_study("sgd_vs_adam").variant(weights="none", epochs=1))
    err = capsys.readouterr().err
    frozen = [line for line in err.splitlines() if "with weights none: those layers stay random" in line]
    assert [line.split("arm ")[1].split(" ")[0] for line in frozen] == ["sgd-frozen", "adam-frozen"]
