"""Publishing a finished study: the report (markdown, figures, the self-contained HTML page) in reports/ and as
an artifact of the publishing worker's parent run, and the index of all reports. Each arm's chosen model is
already logged, by the confirmation run that trained it (`harness.run.objective.log_run_model`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import mlflow

from harness.reporting.html import render_html
from harness.reporting.markdown import build_index, build_report
from harness.run.worker import Worker


def publisher(reports: Path) -> Callable[[Worker], Path]:
    """What a worker calls when it is the one to publish: the report, into `reports`."""

    def publish(worker: Worker) -> Path:
        return write_report(worker, reports)

    return publish


def write_report(worker: Worker, reports: Path) -> Path:
    report = build_report(worker.spec, worker.stores, reports)
    render_html(report.parent)  # readable inside MLflow's artifact viewer, images included
    build_index(reports)
    if worker.parent.run_id is not None:
        mlflow.log_artifacts(str(report.parent), artifact_path="report")
    return report
