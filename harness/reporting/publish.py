"""Publishing a finished study: each arm's chosen model on the confirmation run that trained it, the report
(markdown, figures, the self-contained HTML page) in reports/ and as an artifact of the publishing worker's
parent run, and the index of all reports."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import mlflow
from optuna.trial import TrialState

from harness.reporting.html import render_html
from harness.reporting.markdown import build_index, build_report
from harness.run import checkpoints
from harness.run.objective import confirmation_trial_config, log_chosen_model
from harness.run.worker import Worker
from harness.schema import Attr, StudyAttr
from harness.spec import is_verdict_seed


def publisher(reports: Path) -> Callable[[Worker], Path]:
    """What a worker calls when it is the one to publish: models, then the report into `reports`."""

    def publish(worker: Worker) -> Path:
        if worker.parent.run_id is not None:  # a rebuild without a parent run writes the report only
            log_chosen_models(worker)
        report = write_report(worker, reports)
        return report

    return publish


def log_chosen_models(worker: Worker) -> None:
    """Each arm's chosen trial, at its best confirmation seed, as an MLflow model on that seed's run."""
    spec, work = worker.spec, worker.work
    for arm in spec.arms:
        chosen = work.search[arm.name].user_attrs.get(StudyAttr.SELECTED_TRIAL)
        seeds = [t for t in work.confirm[arm.name].get_trials(states=(TrialState.COMPLETE,))
                 if t.user_attrs.get(Attr.SEARCH_TRIAL) == chosen and t.user_attrs.get(Attr.MLFLOW_RUN_ID)
                 and is_verdict_seed(t.user_attrs[Attr.SEED])]
        if seeds:
            best = max(seeds, key=lambda t: (t.value, -t.user_attrs[Attr.SEED]))
            cfg = confirmation_trial_config(spec, arm, best)
            checkpoints.ensure_source(cfg, worker.stores, worker.parent.experiment_id)
            log_chosen_model(spec, arm, best, worker.ctx)
    if worker.ctx.kept is not None:  # logged: the candidates' weights have served
        shutil.rmtree(worker.ctx.kept, ignore_errors=True)


def write_report(worker: Worker, reports: Path) -> Path:
    report = build_report(worker.spec, worker.stores, reports)
    render_html(report.parent)  # readable inside MLflow's artifact viewer, images included
    build_index(reports)
    if worker.parent.run_id is not None:
        mlflow.log_artifacts(str(report.parent), artifact_path="report")
    return report
