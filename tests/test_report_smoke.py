"""The report end to end in the fast tier (`pytest -m "not slow"`): one small study's records, written as
tests/test_report.py writes them (through the MLflow and Optuna clients, no training), make a README with its
sections, its verdict and its figures, and an index. tests/test_report.py checks each part on three studies; its
stores and reports take seconds to build, so it runs in CI's full run."""

from __future__ import annotations

import re

import pandas as pd
import pytest

from harness.reporting.markdown import build_index, build_report
from harness.stores import Stores
from tests.test_report import CLEAR, JITTER, SHUFFLED, write_study


def test_a_small_study_reports_its_sections_verdict_and_figures_and_is_indexed(tmp_path):
    stores, reports = Stores(root=tmp_path / "mlruns"), tmp_path / "reports"
    write_study(stores, CLEAR, {"sgd-frozen": [0.6 + j for j in JITTER], "adam-frozen": [0.9 + j for j in SHUFFLED]})
    readme = build_report(CLEAR, stores, reports)
    text = readme.read_text()
    positions = [text.index(t) for t in ("## Answer", "## Verdict", "## Results per arm", "## Figures", "## Setup")]
    assert positions == sorted(positions)
    assert "**adam-frozen beats sgd-frozen**" in text
    answer = text[: text.index("## Verdict")]  # the answer first: the sentence, the key figure, the table
    assert "- adam-frozen beats sgd-frozen by 30.0 points" in answer and "(test_acc.png)" in answer
    results = pd.read_csv(readme.parent / "results.csv").set_index("arm")
    assert results.loc["adam-frozen", "test_acc"] - results.loc["sgd-frozen", "test_acc"] == pytest.approx(0.3)
    runs = pd.read_csv(readme.parent / "runs.csv")
    verdict = runs[runs["verdict"]]
    assert len(verdict) == 2 * len(JITTER) and verdict["test_acc"].notna().all()
    assert runs.loc[~runs["verdict"], "test_acc"].isna().all()  # no test accuracy for search or selection runs
    assert "\\toprule" in (readme.parent / "results.tex").read_text()
    links = set(re.findall(r"\]\(([^)]+\.png)\)", text))
    assert {"learning_curves.png", "val_acc_vs_lr.png", "test_acc.png", "confusion.png"} <= links
    assert all((readme.parent / link).is_file() for link in links)  # drawn, where the README points
    assert (readme.parent / "summary.json").is_file()
    assert "[clear](clear/README.md)" in build_index(reports).read_text()
