"""A tiny version of the default study, run for real into a temporary mlruns/, then resumed."""

import mlflow
import optuna
import pytest

import harness.run.objective
from harness.stores import Stores
from harness.study import main

TINY = ["--trials", "2", "--seeds", "2", "--epochs", "2", "--searches", "1"]  # one search: the tests' time
ARMS = ("sgd-frozen", "adam-frozen", "sgd-unfrozen", "adam-unfrozen")
NAME = "sgd_vs_adam--epochs-2--trials-2--searches-1--seeds-2"  # other settings: a study of its own

pytestmark = pytest.mark.slow  # each test reads or runs a whole study


def run_tiny(tmp_path):
    return main(["sgd_vs_adam", *TINY, "--root", str(tmp_path / "mlruns"), "--reports", str(tmp_path / "reports")])


def runs(tmp_path, phase, name=NAME):
    mlflow.set_tracking_uri(Stores(tmp_path / "mlruns").mlflow_uri)
    return mlflow.search_runs(experiment_names=[name], filter_string=f"tags.phase = '{phase}'",
                              output_format="list")


def optuna_trials(tmp_path, arm):
    storage = Stores(tmp_path / "mlruns").optuna_url
    return optuna.load_study(study_name=f"{NAME}/{arm}", storage=storage).trials




def test_every_trial_and_confirmation_is_a_child_run_of_one_parent(finished):
    (parent,) = runs(finished, "study")
    search, confirm = runs(finished, "search"), runs(finished, "confirm")
    assert len(search) == 4 * 2 and len(confirm) == sum(_confirmations(finished, arm) for arm in ARMS)
    assert {r.data.tags["mlflow.parentRunId"] for r in search + confirm} == {parent.info.run_id}
    assert {r.data.tags["arm"] for r in confirm} == set(ARMS)
    assert {"1", "2"} <= {r.data.tags["seed"] for r in confirm} <= {"1", "2", "1000001", "1000002"}
    assert parent.data.tags["command"].startswith("python -m harness.study sgd_vs_adam")
    assert parent.data.tags["version.torch"]


def _confirmations(root, arm) -> int:
    """Two or more complete trials: each on 2 selection seeds, then the chosen one on 2 verdict seeds;
    one: it alone on the verdict seeds."""
    complete = sum(t.state.name == "COMPLETE" for t in optuna_trials(root, arm))
    return 2 * complete + 2 if complete > 1 else 2 * complete


def test_the_chosen_trial_is_judged_on_verdict_seeds_that_did_not_choose_it(finished):
    for arm in ARMS:
        study = optuna.load_study(study_name=f"{NAME}/{arm}", storage=Stores(finished / "mlruns").optuna_url)
        chosen = study.user_attrs["selected_trial"]
        mine = [r for r in runs(finished, "confirm") if r.data.tags["arm"] == arm]
        verdict = {r.data.tags["seed"] for r in mine if r.data.tags["optuna_trial"] == str(chosen)
                   and int(r.data.tags["seed"]) < 1_000_001}
        assert verdict == {"1", "2"}
        others = {r.data.tags["optuna_trial"] for r in mine if int(r.data.tags["seed"]) < 1_000_001}
        assert others == {str(chosen)}  # no candidate but the chosen one ever ran on a verdict seed


def test_runs_carry_epoch_metrics_and_verdict_seeds_alone_a_test_accuracy(finished):
    client = mlflow.MlflowClient()
    for run in runs(finished, "search"):
        if run.data.tags["outcome"] == "complete":
            assert [m.step for m in client.get_metric_history(run.info.run_id, "val_acc")] == [0, 1]
        assert "test_acc" not in run.data.metrics
    confirm = runs(finished, "confirm")
    verdict = [r for r in confirm if int(r.data.tags["seed"]) < 1_000_001]
    assert all(0.0 <= r.data.metrics["test_acc"] <= 1.0 for r in verdict)
    selection = [r for r in confirm if int(r.data.tags["seed"]) >= 1_000_001]
    assert selection, "the tiny study's arms chose among trials on selection seeds"
    assert not any("test_acc" in r.data.metrics or "test_loss" in r.data.metrics for r in selection)
    for arm in ARMS:  # nor in Optuna's record; their classes still judge whether they trained
        for t in optuna_trials(finished, f"{arm}/confirm"):
            if t.user_attrs.get("seed", 0) >= 1_000_001:
                assert "test" not in t.user_attrs and t.user_attrs["classes"] == 5


def test_the_ranked_mlflow_links_filter_to_runs_with_the_metric(finished):
    from urllib.parse import parse_qs, urlsplit

    from harness.browse import Browse

    link = Browse("http://127.0.0.1:5000", "mlflow ui").runs("1", "confirm", "test_acc")
    query = parse_qs(urlsplit(link.split("#", 1)[1]).query)
    mlflow.set_tracking_uri(Stores(finished / "mlruns").mlflow_uri)
    found = mlflow.search_runs(experiment_names=[NAME], filter_string=query["searchFilter"][0], output_format="list")
    assert found and all(int(r.data.tags["seed"]) < 1_000_001 for r in found)


def test_each_arm_is_its_own_optuna_study_with_the_budget(finished):
    for arm in ARMS:
        trials = optuna_trials(finished, arm)
        assert len(trials) == 2
        assert all(t.user_attrs["mlflow_run_id"] for t in trials)


def test_the_report_has_its_sections_and_is_logged_on_the_parent_run(finished):
    text = (finished / "reports" / NAME / "README.md").read_text()
    for needle in ("Verdict", "adam-frozen", "sgd-unfrozen", "95%", "mlflow ui", "Setup"):
        assert needle in text
    (parent,) = runs(finished, "study")
    names = [a.path for a in mlflow.MlflowClient().list_artifacts(parent.info.run_id, "report")]
    assert "report/README.md" in names and any(n.endswith(".png") for n in names)
    assert (finished / "reports" / "README.md").is_file()
    assert parent.data.tags["report"] == "report/README.md"  # and the report says which parent run holds it
    line = next(li for li in text.splitlines() if parent.info.run_id in li and li.startswith("  - "))
    assert line.endswith("holds the report (artifacts `report/README.md`)")


def test_the_chosen_trial_has_the_best_mean_validation_over_the_confirmation_seeds(finished):
    for arm in ARMS:
        study = optuna.load_study(study_name=f"{NAME}/{arm}", storage=Stores(finished / "mlruns").optuna_url)
        means = study.user_attrs["confirm_val_acc"]
        assert study.user_attrs["selected_trial"] == int(max(means, key=means.get))


def test_running_again_resumes_without_new_trials(finished):
    before = len(runs(finished, "confirm"))
    assert run_tiny(finished) == 0
    assert all(len(optuna_trials(finished, arm)) == 2 for arm in ARMS)
    assert len(runs(finished, "confirm")) == before  # confirmed seeds are not rerun
    # seed 0 (the search), one per verdict seed, one per selection seed where an arm chose; all reused
    selecting = any(_confirmations(finished, arm) > 2 for arm in ARMS)
    assert len(runs(finished, "pretrain")) == 3 + 2 * selecting


# Ctrl-C inside a study (a KILLED run, its trial redone, the budget exact) is tested through a suite's workload in
# tests/test_suite.py, and as a real SIGINT to a study's process group in tests/test_workers.py.


def test_diverging_runs_are_recorded_and_an_arm_that_never_trained_is_judged_failing(finished, tmp_path, monkeypatch):
    """Verdict seed 2 diverges in every arm; adam-unfrozen diverges everywhere, its search trial too: its one trial
    still runs on the verdict seeds, and the report judges it as failing to train (not "no confirmation runs")."""
    import json
    import shutil

    from harness.learn.train import Diverged

    # the source checkpoints this study needs are the finished study's (the same source task and seeds): shared
    shutil.copytree(finished / "mlruns" / "checkpoints", tmp_path / "mlruns" / "checkpoints")

    real_fit = harness.run.objective.fit

    def fit_diverging(model, task, cfg, on_epoch=None):
        if cfg.seed == 2 or cfg.arm == "adam-unfrozen":  # the search runs at seed 0, confirmation at 1 and 2
            raise Diverged("training loss became nan in epoch 0")
        return real_fit(model, task, cfg, on_epoch)

    monkeypatch.setattr(harness.run.objective, "fit", fit_diverging)
    args = ["sgd_vs_adam", "--trials", "1", "--seeds", "2", "--epochs", "1", "--searches", "1",
            "--root", str(tmp_path / "mlruns"),
            "--reports", str(tmp_path / "reports")]
    assert main(args) == 0
    name = "sgd_vs_adam--epochs-1--trials-1--searches-1--seeds-2"
    confirm = runs(tmp_path, "confirm", name)
    failed = [r for r in confirm if r.info.status == "FAILED"]
    assert len(failed) == 5 and all(r.data.tags["outcome"] == "diverged" for r in failed)
    never = [r for r in confirm if r.data.tags["arm"] == "adam-unfrozen"]
    assert sorted(r.data.tags["seed"] for r in never) == ["1", "2"]  # its diverged trial, on the verdict seeds
    text = " ".join(json.loads((tmp_path / "reports" / name / "summary.json").read_text())["verdicts"])
    assert "has no confirmation runs" not in text
    assert "adam-unfrozen failed to train on every seed (2 of 2" in text  # and its comparisons are judged on
    assert "adam-unfrozen - sgd-unfrozen: **undecided**; estimate -" in text  # the endpoint: at chance
    assert "Failure to train: adam-unfrozen and sgd-unfrozen" in text  # Fisher's test: its own claim
    assert main(args) == 0  # resuming does not retry a diverged seed
    assert len(runs(tmp_path, "confirm", name)) == 8


def test_each_arms_chosen_model_is_logged_by_its_first_verdict_seed_s_run_and_loads_back(finished):
    import mlflow.pytorch
    import numpy as np
    import torch

    confirm = runs(finished, "confirm")
    logged = [r for r in confirm if r.data.tags.get("model") == "model"]
    assert sorted(r.data.tags["arm"] for r in logged) == sorted(ARMS)  # one a arm
    for run in logged:
        assert run.data.tags["seed"] == "1" and run.info.status == "FINISHED"  # the declared seed, not the best
        verdicts = {r.data.tags["optuna_trial"] for r in confirm
                    if r.data.tags["arm"] == run.data.tags["arm"] and int(r.data.tags["seed"]) < 1_000_001}
        assert verdicts == {run.data.tags["optuna_trial"]}  # the chosen trial: the one the verdict seeds ran
        assert "resumed_by" not in run.data.tags  # written while the run was open, never reopened
    line = next(x for x in (finished / "reports" / NAME / "README.md").read_text().splitlines()
                if "**Chosen models**" in x)  # the report names each, where to load it from
    assert all(f"`runs:/{run.info.run_id}/model` (seed 1)" in line for run in logged)
    model = mlflow.pytorch.load_model(f"runs:/{logged[0].info.run_id}/model")
    x = torch.from_numpy(np.random.default_rng(0).random((2, 1, 32, 32), dtype=np.float32))
    assert tuple(model(x).shape) == (2, 5)


def test_the_report_command_rebuilds_a_variant_from_the_stores(finished, tmp_path):
    from harness.report import main as report_main

    assert report_main(["--all", "--root", str(finished / "mlruns"), "--reports", str(tmp_path)]) == 0
    assert (tmp_path / NAME / "README.md").is_file() and (tmp_path / NAME / "report.html").is_file()


def test_ui_port_moves_every_link_and_the_mlflow_ui_command(finished, tmp_path, monkeypatch):
    import harness.browse
    from harness.report import main as report_main

    monkeypatch.setattr(harness.browse, "ui_port", 5000)  # restored after: the flag sets it for the process
    assert report_main([NAME, "--root", str(finished / "mlruns"), "--reports", str(tmp_path), "--ui-port", "5055"]) == 0
    text = (tmp_path / NAME / "README.md").read_text()
    assert "http://127.0.0.1:5055/#/experiments/" in text and "--port 5055" in text
    assert "127.0.0.1:5000" not in text and "--port 5000" not in text


def test_stores_of_an_older_harness_are_refused_until_migrated_then_report_the_same(finished, tmp_path, capsys):
    """An older store: no schema version, and a recorded study file importing a module by its old name."""
    import shutil

    from harness.report import main as report_main
    from harness.schema import STUDY_SOURCE, StudyAttr

    shutil.copytree(finished / "mlruns", tmp_path / "mlruns")
    stores = Stores(tmp_path / "mlruns")
    optuna.load_study(study_name=NAME, storage=stores.optuna_url).set_user_attr(StudyAttr.SCHEMA, None)
    mlflow.set_tracking_uri(stores.mlflow_uri)
    (parent,) = runs(tmp_path, "study")
    source = mlflow.artifacts.load_text(f"runs:/{parent.info.run_id}/{STUDY_SOURCE}")
    mlflow.MlflowClient().log_text(parent.info.run_id, source.replace("harness.analysis_plan", "harness.plan"),
                                   STUDY_SOURCE)
    capsys.readouterr()
    flags = ["--root", str(tmp_path / "mlruns"), "--reports", str(tmp_path / "reports")]
    assert report_main([NAME, *flags]) == 2  # a refusal, as the worker's below
    assert f"run `python -m harness.report {NAME} --migrate`" in capsys.readouterr().err
    assert main(["sgd_vs_adam", *TINY, *flags]) == 2  # a worker refuses too, before it writes anything
    assert "--migrate" in capsys.readouterr().err and len(runs(tmp_path, "study")) == 1
    assert report_main([NAME, *flags, "--migrate"]) == 0
    assert f"{NAME}: migrated to schema 2" in capsys.readouterr().out
    again = (tmp_path / "reports" / NAME / "README.md").read_text()
    assert _verdict(again) == _verdict((finished / "reports" / NAME / "README.md").read_text())


def _verdict(report: str) -> str:
    return report.split("## Verdict", 1)[1].split("\n## ", 1)[0]
