"""A suite (harness.suite_spec): its file is checked like a study's, each workload runs as its own study (one the study
already ran is reused, not rerun), an interrupted suite resumes where it was cut off (Ctrl-C inside a workload is
Ctrl-C inside a study: the run cut off is KILLED and redone, the budget exact), and its report aggregates over the
workloads with links to each workload's report, in markdown and in MLflow."""

from __future__ import annotations

import json
import shutil

import mlflow
import optuna
import pandas as pd
import pytest

import harness.run.objective
from harness.report import main as report_main
from harness.spec import STUDIES_DIR
from harness.stores import Stores
from harness.study import main
from harness.study_file import load_study
from harness.suite_spec import SuiteSpec, Workload, workload_specs
from tests.test_end_to_end import ARMS, NAME, TINY

SUITE_FILE = '''
from harness.suite_spec import SuiteSpec, Workload

SUITE = SuiteSpec(question="Over these tasks, does Adam beat SGD?", study="sgd_vs_adam", workloads=(
    Workload("30 shots"), Workload("10 shots", {"shots": 10}, target=0.5)))
'''
SUITE_NAME = "tiny_suite--epochs-2--trials-2--searches-1--seeds-2"
SHOTS_10 = f"{NAME}--shots-10"


def _studies(tmp_path):
    studies = tmp_path / "studies"
    studies.mkdir()
    shutil.copy(STUDIES_DIR / "sgd_vs_adam.py", studies)
    (studies / "tiny_suite.py").write_text(SUITE_FILE)
    return studies


def test_a_suite_file_is_checked_before_anything_runs(tmp_path):
    with pytest.raises(ValueError, match="labels must differ"):
        SuiteSpec(question="?", study="s", workloads=(Workload("a"), Workload("a", {"shots": 3})))
    with pytest.raises(ValueError, match="may set .*shots.*; not optimizer"):
        SuiteSpec(question="?", study="s", workloads=(Workload("a", {"optimizer": "adam"}),))
    with pytest.raises(ValueError, match="target is a validation accuracy"):
        SuiteSpec(question="?", study="s", workloads=(Workload("a", target=80),))
    same = SuiteSpec(name="x", question="?", study="sgd_vs_adam",
                     workloads=(Workload("a"), Workload("b", {"epochs": 12})))
    with pytest.raises(ValueError, match="same study"):  # epochs 12 is the file's own: both are sgd_vs_adam
        workload_specs(same)
    suite = load_study("transfer_suite", suites=True)
    assert next(s.name for s in workload_specs(suite)) == "sgd_vs_adam"  # the default study is its first workload
    assert len({s.name for s in workload_specs(suite)}) == len(suite.workloads)


def test_an_unknown_study_or_setting_in_a_suite_is_refused_before_anything_is_written(tmp_path, capsys):
    studies = _studies(tmp_path)
    (studies / "bad_suite.py").write_text(SUITE_FILE.replace('"shots": 10', '"shots": 1000'))
    root = tmp_path / "mlruns"
    assert main(["bad_suite", "--root", str(root), "--studies", str(studies)]) == 2
    assert "use --shots" in capsys.readouterr().err and not root.exists()


def _suite_runs(root, phase):
    mlflow.set_tracking_uri(Stores(root).mlflow_uri)
    return mlflow.search_runs(experiment_names=[SHOTS_10], filter_string=f"tags.phase = '{phase}'",
                              output_format="list")


@pytest.mark.slow
def test_a_suite_reuses_what_its_study_ran_resumes_after_ctrl_c_and_reports_over_its_workloads(
        finished, tmp_path, monkeypatch, capsys):
    root = tmp_path / "mlruns"
    shutil.copytree(finished / "mlruns", root, ignore=shutil.ignore_patterns("artifacts", "kept"))
    reports, studies = tmp_path / "reports", _studies(tmp_path)
    argv = ["tiny_suite", *TINY, "--root", str(root), "--reports", str(reports), "--studies", str(studies)]
    mlflow.set_tracking_uri(Stores(root).mlflow_uri)
    before = len(mlflow.search_runs(experiment_names=[NAME], output_format="list"))
    real_fit, calls = harness.run.objective.fit, []

    def fit_then_interrupt(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:  # in the second workload: the first, run by the study before, trains nothing
            raise KeyboardInterrupt
        return real_fit(*args, **kwargs)

    monkeypatch.setattr(harness.run.objective, "fit", fit_then_interrupt)
    assert main(argv) == 130
    storage = Stores(root).optuna_url
    killed = [r for r in _suite_runs(root, "search") if r.info.status == "KILLED"]
    assert len(killed) == 1 and killed[0].data.tags["outcome"] == "interrupted"
    trials = {arm: optuna.load_study(study_name=f"{SHOTS_10}/{arm}", storage=storage).trials for arm in ARMS[:2]}
    assert len(trials["sgd-frozen"]) == 2  # the first arm finished before the interruption
    assert "RUNNING" not in [t.state.name for t in trials["adam-frozen"]]
    monkeypatch.setattr(harness.run.objective, "fit", real_fit)
    assert main(argv) == 0
    states = [t.state.name for t in optuna.load_study(study_name=f"{SHOTS_10}/adam-frozen", storage=storage).trials]
    assert states.count("FAIL") == 1 and len(states) == 3  # the interrupted trial is redone, not counted
    out = capsys.readouterr().out
    assert f"nothing to do: every trial and confirmation seed of {NAME}" in out  # reused, not rerun
    assert len(mlflow.search_runs(experiment_names=[NAME], output_format="list")) == before
    for arm in ARMS:  # the interrupted workload: its budget exact, the cut-off trial redone, nothing RUNNING
        trials = optuna.load_study(study_name=f"{SHOTS_10}/{arm}", storage=storage).trials
        assert sum(t.state.name in ("COMPLETE", "PRUNED") for t in trials) == 2
        assert "RUNNING" not in {t.state.name for t in trials}
    assert "RUNNING" not in {r.info.status for r in _suite_runs(root, "search") + _suite_runs(root, "confirm")}

    readme = (reports / SUITE_NAME / "README.md").read_text()
    assert f"[{NAME}](../{NAME}/README.md)" in readme and f"[{SHOTS_10}](../{SHOTS_10}/README.md)" in readme
    assert "P(adam-unfrozen > sgd-unfrozen) = " in readme and "Performance profiles" in readme
    assert "| 10 shots | " in readme and "20.0%, 50.0%" in readme  # chance, and the declared target
    summary = json.loads((reports / SUITE_NAME / "summary.json").read_text())
    assert summary["workloads"] == {"30 shots": NAME, "10 shots": SHOTS_10}
    assert [d["comparison"] for d in summary["decisions"]] == ["adam-frozen vs sgd-frozen",
                                                               "adam-unfrozen vs sgd-unfrozen"]
    times = pd.read_csv(reports / SUITE_NAME / "time_to_target.csv")
    counted = [r for r in _suite_runs(root, "confirm") if r.info.status == "FINISHED"
               and int(r.data.tags["seed"]) < 1_000_001 and r.data.tags["optuna_trial"]]
    assert set(times["study"]) == {NAME, SHOTS_10} and (times["epochs"] >= 1).all()
    assert len(times[times["study"] == SHOTS_10]) <= len(counted)
    assert f"[{SUITE_NAME}]({SUITE_NAME}/README.md)" in (reports / "README.md").read_text()  # indexed
    (run,) = mlflow.search_runs(experiment_names=[SUITE_NAME], output_format="list")
    assert run.data.tags["phase"] == "suite" and run.data.tags["workload.1"] == f"10 shots: {SHOTS_10}"
    files = {f.path for f in mlflow.MlflowClient().list_artifacts(run.info.run_id, "report")}
    assert {"report/README.md", "report/time_to_target.csv", "report/profiles.png"} <= files

    (reports / SUITE_NAME / "README.md").unlink()  # rebuilt from the stores alone, the variant's settings recorded
    assert report_main([SUITE_NAME, "--root", str(root), "--reports", str(reports), "--studies", str(studies)]) == 0
    assert (reports / SUITE_NAME / "README.md").read_text() == readme
    again = (reports / SUITE_NAME / "README.md").stat().st_mtime_ns
    assert main(argv) == 0  # a rerun with nothing to do: the workloads answer at once, the report stays as it is
    assert "its report is up to date" in capsys.readouterr().out
    assert (reports / SUITE_NAME / "README.md").stat().st_mtime_ns == again
