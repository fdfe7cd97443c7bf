"""A search trial's pruning and its curve in Optuna: the pruner decides from a view of the study read once when
the trial starts, and the curve reaches the storage once, when the trial ends (neither costs a storage round-trip
per epoch)."""

from __future__ import annotations

import optuna

from harness import internals


def write_curve(trial: optuna.Trial, curve: dict[int, float]) -> None:
    """A trial's validation curve as Optuna's intermediate values, written when the trial ends: one transaction
    on a database instead of one per epoch (a tenth of a search trial's time on the default study). Nothing reads
    them earlier: pruning decides from `PruningView`, and Optuna's pruners read only complete trials' curves, so
    every decision is the same; a trial cut off before the end runs again, curve and all."""
    backend = internals.rdb_backend(trial.storage)  # the database behind Optuna's cache
    if backend is None:  # a journal file: each value an appended line
        for step, value in curve.items():
            trial.report(value, step)
        return
    internals.write_intermediate_values(backend, internals.trial_id(trial), curve)


class PruningView:
    """The study as its pruner sees it, read once when a trial starts, so each epoch's pruning decision costs no
    read of the storage (`trial.should_prune` reads every trial of the study twice per epoch: a seventh of a
    search's time on the default study). Optuna's own pruner decides, on the trials complete when this one
    began: with one worker no trial completes meanwhile, so every decision is the one `should_prune` makes;
    with many, the decision no longer depends on how far the others got while this trial ran."""

    def __init__(self, study: optuna.Study):
        self.pruner, self.direction = study.pruner, study.direction
        self._complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        self.intermediate_values: dict[int, float] = {}

    def get_trials(self, deepcopy: bool = False, states=None) -> list[optuna.trial.FrozenTrial]:
        return [t for t in self._complete if states is None or t.state in states]

    @property
    def last_step(self) -> int | None:
        return max(self.intermediate_values, default=None)

    def should_prune(self, step: int, value: float) -> bool:
        self.intermediate_values[step] = value
        return self.pruner.prune(self, self)  # the view stands for the study and for this trial's curve
