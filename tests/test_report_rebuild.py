"""A report is a function of the stores alone: rebuilt after its study file is deleted, or after the file
changed, it is the report the run wrote."""

from __future__ import annotations

import pytest

from harness.report import main as report_main
from harness.study import main as study_main

STUDY = '''
from harness.analysis_plan import Difference
from harness.spec import Arm, StudySpec, TrialConfig


def search_space(trial, arm):
    return {"lr": trial.suggest_float("lr", 1e-3, 1e-1, log=True)}


STUDY = StudySpec(
    question="Does the report outlive its study file?",
    arms=(Arm("sgd", "sgd", "linear_probe"), Arm("adam", "adam", "linear_probe")),
    search_space=search_space,
    base=TrialConfig(model="lenet5", weights="source", pretrain_epochs=2, epochs=3, shots=10),
    n_trials=2, seeds=2, confirm_top=1, prune=False, plan=(Difference("adam", "sgd"),),
)
'''


@pytest.mark.slow  # runs a whole study
def test_a_variants_report_rebuilt_after_its_study_file_changed_or_went_is_the_one_the_run_wrote(tmp_path):
    studies, reports, rebuilt = tmp_path / "studies", tmp_path / "reports", tmp_path / "rebuilt"
    studies.mkdir()
    (studies / "outlives.py").write_text(STUDY)
    common = ["--root", str(tmp_path / "mlruns"), "--studies", str(studies)]
    assert study_main(["outlives", "--seeds", "3", *common, "--reports", str(reports)]) == 0
    name = "outlives--seeds-3"
    written, again = reports / name, rebuilt / name
    (studies / "outlives.py").write_text(STUDY.replace("Does the report outlive", "An edited question:"))
    assert report_main([name, *common, "--reports", str(rebuilt)]) == 0  # the study that ran, not the edited file
    text = (again / "README.md").read_text()
    assert "Does the report outlive its study file?" in text and "An edited question" not in text
    (studies / "outlives.py").unlink()
    assert report_main([name, *common, "--reports", str(rebuilt)]) == 0  # no study file at all
    assert (again / "README.md").read_text() == (written / "README.md").read_text()
    assert (again / "summary.json").read_text() == (written / "summary.json").read_text()
    assert sorted(p.name for p in again.iterdir()) == sorted(p.name for p in written.iterdir())
