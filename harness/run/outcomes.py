"""How a run ended, as the records name it: the one mapping from what a run raised to an `Outcome` and the reason
people read, for trials, confirmation seeds and source pretraining alike."""

from __future__ import annotations

import optuna

from harness.learn.train import Diverged
from harness.run.outage import disk_full, is_outage
from harness.schema import Outcome


def outcome_for(error: BaseException | None) -> tuple[Outcome, str]:
    """How a run ended, from what it raised (None: it returned), with the reason people read.

    >>> outcome_for(optuna.TrialPruned())[0], outcome_for(KeyboardInterrupt())[0], outcome_for(None)[0]
    (<Outcome.PRUNED: 'pruned'>, <Outcome.INTERRUPTED: 'interrupted'>, <Outcome.COMPLETE: 'complete'>)
    """
    if error is None:
        return Outcome.COMPLETE, ""
    if isinstance(error, optuna.TrialPruned):
        return Outcome.PRUNED, "median pruner"
    if isinstance(error, Diverged):
        return Outcome.DIVERGED, f"diverged: {error}"
    if isinstance(error, KeyboardInterrupt):
        return Outcome.INTERRUPTED, "interrupted (Ctrl-C)"
    if (full := disk_full(error)) is not None:  # nothing about the configuration either: it runs again
        return Outcome.INTERRUPTED, f"interrupted: the disk is full ({full})"
    if is_outage(error):  # the storage went away mid-run: says nothing about the configuration
        return Outcome.INTERRUPTED, f"interrupted: the storage was unreachable ({type(error).__name__})"
    return Outcome.FAILED, f"error: {type(error).__name__}: {error}"
