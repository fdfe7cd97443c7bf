"""Running one claimed slot, and telling Optuna how it ended: the one place a slot's `Outcome` is decided.

A run that ends by itself (complete, pruned, diverged, failed) is a result and counts toward the budget. A slot
cut off around its run (Ctrl-C, an error while pretraining its source) is INTERRUPTED and runs again; a worker
that died leaves it to `queue.fail_stale`, which marks it STALE.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable

import optuna
from optuna.trial import TrialState

from harness.run.outage import DiskFull, disk_full, is_outage, retrying
from harness.run.outcomes import outcome_for
from harness.run.work import Job
from harness.schema import Attr, Outcome


def run_slot(job: Job, prepare: Callable[[], None],
             run: Callable[[optuna.Trial], float]) -> tuple[Outcome, float | None]:
    """`prepare()` (what the run needs: the parent run, the source checkpoint), then `run(trial)`. Returns the
    outcome and the value (complete runs); re-raises Ctrl-C and any error around the run, after recording the
    slot as interrupted."""
    try:
        prepare()
    except BaseException as error:
        reason = "interrupted (Ctrl-C)" if isinstance(error, KeyboardInterrupt) else \
            f"interrupted: {type(error).__name__}: {error}"
        record(job, Outcome.INTERRUPTED, reason)
        if is_outage(error):  # the storage went away while the slot got ready: it runs again later
            return Outcome.INTERRUPTED, None
        raise
    try:
        value = run(job.trial)
    except BaseException as error:
        outcome, reason = outcome_for(error)
        record(job, outcome, reason)
        if (full := disk_full(error)) is not None:  # every next run would fail alike: the worker stops
            raise DiskFull(full) from error
        if is_outage(error):  # recorded once the storage answered: the slot runs again, the worker goes on
            return outcome, None
        if outcome is Outcome.INTERRUPTED or not isinstance(error, Exception):
            raise
        if outcome is Outcome.FAILED:  # a bad configuration fails its trial, never the study
            logging.getLogger("harness").warning("%s trial %d failed: %s", job.study.study_name,
                                                 job.trial.number, error)
        return outcome, None
    record(job, Outcome.COMPLETE, "", value)
    return Outcome.COMPLETE, value


def record(job: Job, outcome: Outcome, reason: str, value: float | None = None) -> None:
    """Tell Optuna how the slot ended, unless another worker already judged it stale (then its rerun decides);
    through an outage of the storage, once it answers again."""
    retrying(lambda: _tell(job, outcome, reason, value), f"recording {job.label()}")


def _tell(job: Job, outcome: Outcome, reason: str, value: float | None) -> None:
    state = TrialState[outcome.trial_state]
    with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
        if state == TrialState.FAIL:  # complete and pruned say so by their state: one write fewer per slot
            job.trial.set_user_attr(Attr.OUTCOME, outcome.value)
        if reason:
            job.trial.set_user_attr(Attr.REASON, reason[:500])
        job.study.tell(job.trial, value if state == TrialState.COMPLETE else None, state=state,
                       skip_if_finished=True)
