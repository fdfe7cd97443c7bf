"""Publishing a finished study: the report (markdown, figures, the self-contained HTML page) in reports/ and as
an artifact of the publishing worker's parent run, and the index of all reports. Each arm's chosen model is
already logged, by the confirmation run that trained it (`harness.run.objective.log_run_model`)."""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import mlflow

if TYPE_CHECKING:
    from harness.run.worker import Worker


def _import_report_modules() -> None:
    # pandas, matplotlib, seaborn, scipy.stats and Optuna's fANOVA (which Optuna imports on first use): 1.2 s of
    # imports that only the publishing worker needs. A broken install fails here quietly: publishing imports
    # them again, and says what is wrong where it matters
    with contextlib.suppress(Exception):
        import optuna.importance  # noqa: F401

        import harness.reporting.html
        import harness.reporting.markdown  # noqa: F401


@dataclass
class Publisher:
    """What a worker calls when it is the one to publish: the report, into `reports`.

    The report's imports are not paid at a worker's start (0.9 s before its first run, in every worker): `warm`
    starts them in a thread when the worker first waits for others' runs, so the worker that publishes at the
    end has seldom any left to wait for, and one that never waits pays for them only if it publishes."""

    reports: Path
    _warming: threading.Thread | None = field(default=None, repr=False)

    def warm(self) -> None:
        if self._warming is None:
            self._warming = threading.Thread(target=_import_report_modules, name="report imports", daemon=True)
            self._warming.start()

    def settle(self) -> None:
        """Wait for the imports `warm` started: a fork (the figures', a data loader's) while another thread
        imports can leave the child waiting forever on that import's lock."""
        if self._warming is not None:
            self._warming.join()

    def __call__(self, worker: Worker) -> Path:
        self.settle()
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
