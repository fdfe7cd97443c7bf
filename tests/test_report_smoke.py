"""The report end to end in the fast tier (`pytest -m "not slow"`): one small study's records, written as
tests/test_report.py writes them (through the MLflow and Optuna clients, no training), make a README with its
sections, its verdict and its figures, and an index. tests/test_report.py checks each part on three studies; its
stores and reports take seconds to build, so it runs in CI's full run."""

from __future__ import annotations

import re

from harness.reporting.markdown import build_index, build_report
from harness.stores import Stores
from tests.test_report import CLEAR, JITTER, SHUFFLED, write_study


def test_a_small_study_reports_its_sections_verdict_and_figures_and_is_indexed(tmp_path):
    stores, reports = Stores(root=tmp_path / "mlruns"), tmp_path / "reports"
    write_study(stores, CLEAR, {"sgd-frozen": [0.6 + j for j in JITTER], "adam-frozen": [0.9 + j for j in SHUFFLED]})
    readme = build_report(CLEAR, stores, reports)
    text = readme.read_text()
    positions = [text.index(t) for t in ("## Verdict", "## Results per arm", "## Figures", "## Setup")]
    assert positions == sorted(positions)
    assert "**adam-frozen beats sgd-frozen**" in text
    links = set(re.findall(r"\]\(([^)]+\.png)\)", text))
    assert {"learning_curves.png", "val_acc_vs_lr.png", "test_acc.png", "confusion.png"} <= links
    assert all((readme.parent / link).is_file() for link in links)  # drawn, where the README points
    assert (readme.parent / "summary.json").is_file()
    assert "[clear](clear/README.md)" in build_index(reports).read_text()
