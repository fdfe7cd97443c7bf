"""What a study's work is: each arm's search slots (the seeded sampler's points, drawn up front) and its
confirmation slots (the best trials over fresh seeds), and the choice of trial once they are done.

Pure functions of the study and its Optuna records: every worker computes the same plan.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Iterable
from typing import Any

import optuna
from optuna.trial import FrozenTrial

from harness import ledger
from harness.run import queue
from harness.schema import Attr, Phase, StudyAttr
from harness.spec import Arm, StudySpec, selection_seeds


def pruner(spec: StudySpec, kind: Phase) -> optuna.pruners.BasePruner:
    """The study's pruning policy: the median pruner on search trials (after 5 trials, from epoch 3) when the
    study prunes; confirmation seeds always run to the end, since each is a result."""
    if spec.prune and kind is Phase.SEARCH:
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


def sampler_seed(arm: Arm) -> int:
    """The same for every arm (a fair comparison); an arm's search j scrambles with seed j - 1, so its first
    search is the single-search design's."""
    return queue.SAMPLER_SEED + max(arm.search - 1, 0)
PLANNED = ("qmc", "random")  # samplers whose points do not depend on results: drawn up front, one sequence


def search_points(spec: StudySpec, arm: Arm, n: int) -> list[dict[str, Any]]:
    """The arm's first `n` sampler points, drawn on a throwaway in-memory study: a pure function of the seed,
    so every worker plans the same sequence and a top-up continues it. TPE's points depend on the results:
    its slots start empty and the sampler fills them when a worker takes one."""
    if spec.sampler not in PLANNED:
        return [{} for _ in range(n)]
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    scratch = optuna.create_study(sampler=_sampler(spec.sampler, sampler_seed(arm)))
    points = []
    for _ in range(n):
        trial = scratch.ask()
        spec.search_space(trial, spec.arm(arm.family))  # a search space knows arms, not their searches
        scratch.tell(trial, 0.0)
        points.append(trial.params)
    return points


def searched_fields(spec: StudySpec, arm: Arm) -> set[str]:
    """The TrialConfig fields (opt.<name> for optimizer params) the arm's search space sets."""
    overrides = spec.search_space(optuna.create_study(sampler=optuna.samplers.RandomSampler(0)).ask(),
                                  spec.arm(arm.family))
    fields = {k for k in overrides if k != "optimizer_params"}
    return fields | {f"opt.{k}" for k in overrides.get("optimizer_params", {})}


def fixed_settings(spec: StudySpec, arm: Arm) -> dict[str, Any]:
    """The arm's settings as a resume compares them and optuna-dashboard shows them: searched values say so."""
    flat = json.loads(json.dumps(arm.config(spec.base).flat(), default=str))
    flat.pop("data_root")  # moving the data does not change the experiment
    for name in searched_fields(spec, arm):
        flat[name] = "searched"
    return flat


def confirm_slots(spec: StudySpec, search: optuna.Study,
                  verdict_seeds: int | None = None) -> dict[str, tuple[dict, dict]]:
    """The confirmation slots wanted now (the search ran at seed 0). One candidate (confirm_top = 1, or one
    complete trial): it runs on the verdict seeds 1..verdict_seeds (the sequential rule's current batch;
    default the study's first). Several: each runs on the selection seeds first; once `select` has chosen
    one, the chosen one runs on the verdict seeds as well. A pure function of the stores."""
    searched = ledger.slots(search.get_trials(deepcopy=False), "", Phase.SEARCH)
    top = [s.trial for s in ledger.ranked(searched)][: spec.confirm_top]
    if not top:  # no trial trained (each diverged or failed): the best of them still runs on the verdict seeds, so
        # the arm is judged as failing to train on the declared endpoint instead of left without a result
        top = [s.trial for s in sorted((s for s in searched if s.counted),
                                       key=lambda s: (-_or(s.budget_value, -1.0), s.number))][:1]

    def slots(t: FrozenTrial, seeds: Iterable[int]) -> dict[str, tuple[dict, dict]]:
        return {f"{t.number}/{seed}": (t.params, {Attr.SEARCH_TRIAL: t.number, Attr.SEED: seed}) for seed in seeds}

    verdict = range(1, (verdict_seeds or spec.seeds) + 1)
    if len(top) <= 1 or spec.confirm_top <= 1:
        return slots(top[0], verdict) if top else {}
    wanted = {k: v for t in top for k, v in slots(t, selection_seeds(spec)).items()}
    chosen = search.user_attrs.get(StudyAttr.SELECTED_TRIAL)
    if chosen is not None:
        wanted.update(slots(next(t for t in top if t.number == chosen), verdict))
    return wanted


def _or(value: float, instead: float) -> float:
    return instead if math.isnan(value) else value


def confirm_budget(spec: StudySpec, verdict_seeds: int | None = None) -> int:
    """Confirmation slots per arm: the selection seeds of every candidate, then the verdict seeds (the
    current batch's count; default the study's first)."""
    return (verdict_seeds or spec.seeds) + (spec.confirm_top * spec.select_seeds if spec.confirm_top > 1 else 0)


def choose(means: dict[int, float]) -> int:
    """The candidate with the best mean validation accuracy; ties go to the lower trial number."""
    return max(sorted(means), key=lambda n: means[n])


def select(search: optuna.Study, confirm: optuna.Study, arm: str, selecting: bool = True) -> None:
    """Keep the trial with the best mean validation accuracy over its selection seeds (study attr
    `selected_trial`): one lucky seed can crown a fragile configuration, a mean over seeds does not. Test
    accuracy plays no part in the choice, and with `selecting` no verdict seed does either. Without it (one
    candidate) the mean over its verdict seeds is only recorded."""
    means = ledger.selection_means(ledger.slots(confirm.get_trials(deepcopy=False), arm, Phase.CONFIRM), selecting)
    if not means:
        return
    search.set_user_attr(StudyAttr.SELECTED_TRIAL, choose(means))
    search.set_user_attr(StudyAttr.CONFIRM_VAL_ACC, {str(k): v for k, v in means.items()})
