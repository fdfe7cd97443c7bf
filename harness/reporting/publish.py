"""Publishing a finished study: the report (markdown, figures, the self-contained HTML page) in reports/ and as
an artifact of the publishing worker's parent run, and the index of all reports. Each arm's chosen model is
already logged, by the confirmation run that trained it (`harness.run.objective.log_run_model`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import mlflow

if TYPE_CHECKING:
    from harness.run.worker import Worker


@dataclass
class Publisher:
    """What a worker calls when it is the one to publish: the report, into `reports`. The report's imports
    (pandas, matplotlib, seaborn, scipy) are paid by the publishing worker alone, when it publishes."""

    reports: Path

    def __call__(self, worker: Worker) -> Path:
        return write_report(worker, self.reports)


def write_report(worker: Worker, reports: Path) -> Path:
    from harness.reporting.html import render_html
    from harness.reporting.markdown import build_index, build_report

    report = build_report(worker.spec, worker.stores, reports)
    render_html(report.parent)  # readable inside MLflow's artifact viewer, images included
    build_index(reports)
    if worker.parent.run_id is not None:
        mlflow.log_artifacts(str(report.parent), artifact_path="report")
    return report
