"""Publishing a finished study: the report (markdown, figures, the self-contained HTML page) in reports/ and as
an artifact of the publishing worker's parent run, and the index of all reports. Each arm's chosen model is
already logged, by the confirmation run that trained it (`harness.run.objective.log_run_model`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import mlflow

from harness.schema import Tag
from harness.spec import StudySpec
from harness.stores import Stores

ARTIFACTS = "report"  # the folder of the publishing parent run's artifacts that holds the report


@dataclass
class Publisher:
    """What a worker calls when it is the one to publish: the report, into `reports`. The report's imports
    (pandas, matplotlib, seaborn, scipy) are paid by the publishing worker alone, when it publishes."""

    reports: Path

    def __call__(self, spec: StudySpec, stores: Stores, in_run: bool) -> Path:
        return write_report(spec, stores, self.reports, in_run)


def write_report(spec: StudySpec, stores: Stores, reports: Path, in_run: bool) -> Path:
    """The report, the HTML page and the index; with `in_run`, also as artifacts of the active MLflow run."""
    from harness.reporting.html import render_html
    from harness.reporting.markdown import build_index, build_report

    if in_run:  # tagged first, so the report it holds says which parent run holds it
        mlflow.set_tag(Tag.REPORT, f"{ARTIFACTS}/README.md")
    report = build_report(spec, stores, reports)
    render_html(report.parent)  # readable inside MLflow's artifact viewer, images included
    build_index(reports)
    if in_run:
        mlflow.log_artifacts(str(report.parent), artifact_path=ARTIFACTS)
    return report
