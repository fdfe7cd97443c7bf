"""What a study's work is: each arm's search slots (the seeded sampler's points, drawn up front) and its
confirmation slots (the best trials over fresh seeds), and the choice of trial once they are done.

Pure functions of the study and its Optuna records: every worker computes the same plan.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterable
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from harness.run import queue
from harness.schema import Attr, StudyAttr
from harness.spec import Arm, StudySpec, is_verdict_seed, selection_seeds


def pruner(spec: StudySpec, kind: str) -> optuna.pruners.BasePruner:
    """The study's pruning policy: the median pruner on search trials (after 5 trials, from epoch 3) when the
    study prunes; confirmation seeds always run to the end, since each is a result."""
    if spec.prune and kind == "search":
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=3)
    return optuna.pruners.NopPruner()


def _sampler(name: str, seed: int) -> optuna.samplers.BaseSampler:
    if name == "qmc":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.QMCSampler(qmc_type="sobol", scramble=True, seed=seed,
                                              warn_independent_sampling=False)
    return {"random": optuna.samplers.RandomSampler, "tpe": optuna.samplers.TPESampler}[name](seed=seed)


SAMPLERS = ("qmc", "random", "tpe")
PLANNED = ("qmc", "random")  # samplers whose points do not depend on results: drawn up front, one sequence


def search_points(spec: StudySpec, arm: Arm, n: int) -> list[dict[str, Any]]:
    """The arm's first `n` sampler points, drawn on a throwaway in-memory study: a pure function of the seed,
    so every worker plans the same sequence and a top-up continues it. TPE's points depend on the results:
    its slots start empty and the sampler fills them when a worker takes one."""
    if spec.sampler not in PLANNED:
        return [{} for _ in range(n)]
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    scratch = optuna.create_study(sampler=_sampler(spec.sampler, queue.SAMPLER_SEED))
    points = []
    for _ in range(n):
        trial = scratch.ask()
        spec.search_space(trial, arm)
        scratch.tell(trial, 0.0)
        points.append(trial.params)
    return points


def searched_fields(spec: StudySpec, arm: Arm) -> set[str]:
    """The TrialConfig fields (opt.<name> for optimizer params) the arm's search space sets."""
    overrides = spec.search_space(optuna.create_study(sampler=optuna.samplers.RandomSampler(0)).ask(), arm)
    fields = {k for k in overrides if k != "optimizer_params"}
    return fields | {f"opt.{k}" for k in overrides.get("optimizer_params", {})}


def fixed_settings(spec: StudySpec, arm: Arm) -> dict[str, Any]:
    """The arm's settings as a resume compares them and optuna-dashboard shows them: searched values say so."""
    flat = json.loads(json.dumps(arm.config(spec.base).flat(), default=str))
    flat.pop("data_root")  # moving the data does not change the experiment
    for name in searched_fields(spec, arm):
        flat[name] = "searched"
    return flat


def confirm_slots(spec: StudySpec, search: optuna.Study) -> dict[str, tuple[dict, dict]]:
    """The confirmation slots wanted now (the search ran at seed 0). One candidate (confirm_top = 1, or one
    complete trial): it runs on the verdict seeds. Several: each runs on the selection seeds first; once
    `select` has chosen one, the chosen one runs on the verdict seeds as well. A pure function of the stores."""
    complete = [t for t in search.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
    top = sorted(complete, key=lambda t: (-t.value, t.number))[: spec.confirm_top]

    def slots(t: FrozenTrial, seeds: Iterable[int]) -> dict[str, tuple[dict, dict]]:
        return {f"{t.number}/{seed}": (t.params, {Attr.SEARCH_TRIAL: t.number, Attr.SEED: seed}) for seed in seeds}

    verdict = range(1, spec.seeds + 1)
    if len(top) <= 1 or spec.confirm_top <= 1:
        return slots(top[0], verdict) if top else {}
    wanted = {k: v for t in top for k, v in slots(t, selection_seeds(spec)).items()}
    chosen = search.user_attrs.get(StudyAttr.SELECTED_TRIAL)
    if chosen is not None:
        wanted.update(slots(next(t for t in top if t.number == chosen), verdict))
    return wanted


def confirm_budget(spec: StudySpec) -> int:
    """Confirmation slots per arm: the selection seeds of every candidate, then the verdict seeds."""
    return spec.seeds + (spec.confirm_top * spec.select_seeds if spec.confirm_top > 1 else 0)


def confirmed_value(trial: FrozenTrial) -> float:
    """A confirmation seed's validation accuracy; one that diverged or failed left no model and counts as 0."""
    return trial.value if trial.state == TrialState.COMPLETE else 0.0


def choose(means: dict[int, float]) -> int:
    """The candidate with the best mean validation accuracy; ties go to the lower trial number."""
    return max(sorted(means), key=lambda n: means[n])


def select(search: optuna.Study, confirm: optuna.Study, selecting: bool = True) -> None:
    """Keep the trial with the best mean validation accuracy over its selection seeds (study attr
    `selected_trial`): one lucky seed can crown a fragile configuration, a mean over seeds does not. Test
    accuracy plays no part in the choice, and with `selecting` no verdict seed does either. Without it (one
    candidate) the mean over its verdict seeds is only recorded."""
    by_trial: dict[int, list[float]] = {}
    for t in confirm.get_trials(deepcopy=False):
        if queue.counts(t) and (not selecting or not is_verdict_seed(t.user_attrs[Attr.SEED])):
            by_trial.setdefault(t.user_attrs[Attr.SEARCH_TRIAL], []).append(confirmed_value(t))
    if not by_trial:
        return
    means = {n: sum(v) / len(v) for n, v in sorted(by_trial.items())}
    search.set_user_attr(StudyAttr.SELECTED_TRIAL, choose(means))
    search.set_user_attr(StudyAttr.CONFIRM_VAL_ACC, {str(k): v for k, v in means.items()})
