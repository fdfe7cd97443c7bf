"""A study's work as one worker sees it in the stores: each arm's search and confirmation studies, the study's
own record, and the slots to claim. Planning and claiming run under the storage's lock (`harness.run.queue`).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import FrozenTrial

from harness import ledger
from harness.run import queue
from harness.run.slots import (
    confirm_budget,
    confirm_slots,
    fixed_settings,
    pruner,
    sampler_seed,
    search_points,
    select,
)
from harness.schema import METRIC_NAME, SCHEMA_VERSION, Attr, Phase, StudyAttr, schema_problem
from harness.spec import Arm, StudySpec, digest
from harness.stores import Stores, confirm_study_name, open_storage, optuna_study_name, use_wal

if TYPE_CHECKING:
    from harness.inference.sequential import Sequential


@dataclass(frozen=True)
class Job:
    """One claimed slot: a search trial or a confirmation seed of an arm."""

    kind: Phase  # SEARCH or CONFIRM
    arm: Arm
    study: optuna.Study
    trial: optuna.Trial
    place: int = 0  # among the slots of its study done or running when claimed (this one included)
    of: int = 0  # the slots its study has in all, as last planned

    def label(self) -> str:
        if self.kind is Phase.SEARCH:
            return f"trial {self.trial.number}"
        return f"trial {self.trial.user_attrs[Attr.SEARCH_TRIAL]}, seed {self.trial.user_attrs[Attr.SEED]}"


@dataclass
class Work:
    """Per arm, its search and confirmation studies; `home` is the study's own Optuna study, where what belongs
    to the study as a whole (the report's claim and mark) is kept."""

    spec: StudySpec
    stores: Stores
    storage: Any
    home: optuna.Study
    search: dict[str, optuna.Study]
    confirm: dict[str, optuna.Study]
    done: bool = False
    points: dict[str, list[dict]] = field(default_factory=dict)
    batch: list = field(default_factory=list)  # the sequential rule's state this worker last saw
    # studies found without a waiting slot since this worker last planned: only planning adds slots, so they are
    # not asked again until then (each ask reads every trial of a study)
    drained: set[str] = field(default_factory=set)
    planned: int | None = None  # StudyAttr.PLANNED when `drained` was last emptied
    budgets: dict[str, int] = field(default_factory=dict)  # per arm, its confirmation slots as the rule stands

    def lock(self, name: str = ""):
        return queue.store_lock(self.stores.optuna_url, self.stores.root, name)

    def studies(self) -> list[optuna.Study]:
        return [*self.search.values(), *self.confirm.values()]

    def release_own(self, reason: str) -> None:
        """After a Ctrl-C, under the lock: nothing this worker claimed (or was claiming) is left RUNNING."""
        with self.lock():
            for study in self.studies():
                queue.release_own(study, reason)

    def plan(self, on_stale: Callable[[FrozenTrial], None]) -> None:
        """Under the lock: recover stale work, enqueue what is missing, record selections; sets `done`."""
        done, added = True, 0
        for study in self.studies():
            queue.fail_stale(study, on_stale)
        confirm = {a.name: ledger.slots(self.confirm[a.name].get_trials(deepcopy=False), a.name, Phase.CONFIRM)
                   for a in self.spec.units()}
        rule = ledger.sequential_state(self.spec, confirm)
        wanted = rule.wanted if rule else {a.name: self.spec.seeds for a in self.spec.arms}
        verdict = {a.name: wanted[a.family] for a in self.spec.units()}  # every search of an arm runs its seeds
        if rule and not rule.complete:
            done = False  # a batch is running, or waits for another arm's
            self._announce(rule)
        for arm in self.spec.units():
            search, confirm = self.search[arm.name], self.confirm[arm.name]
            if arm.name not in self.points:
                self.points[arm.name] = search_points(self.spec, arm, self.spec.n_trials)
            added += queue.plan(search, {str(i): (p, {}) for i, p in enumerate(self.points[arm.name])})
            status = queue.slot_status(search)
            self.budgets[arm.name] = confirm_budget(self.spec, verdict[arm.name])
            if any(s != "done" for s in status.values()):
                done = False
                continue
            wanted = confirm_slots(self.spec, search, verdict[arm.name])
            added += queue.plan(confirm, wanted)
            status = queue.slot_status(confirm)
            if all(status.get(slot) == "done" for slot in wanted):
                if wanted and StudyAttr.SELECTED_TRIAL not in search.user_attrs:
                    selecting = len({v[1][Attr.SEARCH_TRIAL] for v in wanted.values()}) > 1
                    select(search, confirm, arm.name, selecting)
                    if selecting:  # chosen: now the verdict seeds of the chosen trial
                        added += queue.plan(confirm, confirm_slots(self.spec, search, verdict[arm.name]))
                        done = False
            else:
                done = False
        self.done = done
        planned = self.home.user_attrs.get(StudyAttr.PLANNED)
        if added:  # the other workers' drained studies may hold slots now: they ask them again at their next claim
            planned = (planned or 0) + 1
            self.home.set_user_attr(StudyAttr.PLANNED, planned)
        self.drained, self.planned = set(), planned

    def _announce(self, rule: Sequential) -> None:
        """A line when the first worker sees a new batch (under the lock): which arms run to how many seeds, why."""
        batch = [list(rule.looks_done), sorted([a, n] for a, n in rule.wanted.items())]
        if not rule.looks_done or batch == self.batch:
            self.batch = batch
            return
        self.batch = batch
        if self.home.user_attrs.get(StudyAttr.ANNOUNCED) == batch:  # another worker printed it
            return
        self.home.set_user_attr(StudyAttr.ANNOUNCED, batch)
        open_ = [f"{d.declared.kind} {d.declared.label}" for d, n in zip(rule.decisions, rule.stopped_at, strict=True)
                 if n is None]
        grown = sorted(a for a, n in rule.wanted.items() if n > rule.looks_done[-1])
        print(f"[look at n = {rule.looks_done[-1]}] {len(open_)} of {len(rule.decisions)} comparisons undecided "
              f"({'; '.join(open_)}); next batch: {', '.join(grown)} to n = {max(rule.wanted.values())}",
              flush=True)

    def next_job(self, on_stale: Callable[[FrozenTrial], None]) -> Job | None:
        """Claim a waiting slot; only when none waits, plan and look again. Planning reads every trial of every
        study: once per empty queue, not once per claim."""
        with self.lock():
            planned = self.home.user_attrs.get(StudyAttr.PLANNED)
            if planned != self.planned:  # another worker planned a batch: a study this one found drained may have
                self.drained, self.planned = set(), planned  # slots again (left stale, two workers walk two
                # arms in step, seed by seed, each new seed's pretraining making the other wait)
            job = self._claim()
            if job is None:
                self.plan(on_stale)
                job = self._claim()
        return job

    def _claim(self) -> Job | None:
        for kind, studies in ((Phase.SEARCH, self.search), (Phase.CONFIRM, self.confirm)):
            for arm in self.spec.units():
                study = studies[arm.name]
                if study.study_name in self.drained:
                    continue
                if self.spec.sampler == "tpe" and kind is Phase.SEARCH:  # distinct points in each worker
                    study.sampler = optuna.samplers.TPESampler(seed=sampler_seed(arm) + len(study.trials))
                claimed = queue.claim(study)
                if claimed is not None:
                    of = self.spec.n_trials if kind is Phase.SEARCH else self.budgets.get(arm.name, 0)
                    return Job(kind, arm, study, *claimed, of=of)
                self.drained.add(study.study_name)
        return None

    def records_digest(self) -> str:
        return records_digest(self.studies())


def records_digest(studies: list[optuna.Study]) -> str:
    """Changes whenever a trial or confirmation finishes: a report built from older records is stale."""
    finished = [(s.study_name, t.number, t.state.name) for s in studies
                for t in s.get_trials(deepcopy=False) if t.state.is_finished()]
    return digest({"records": sorted(finished)})


def open_work(spec: StudySpec, stores: Stores, on_stale: Callable[[FrozenTrial], None] | None) -> Work:
    """Create or open every study of `spec` and plan the slots (not without `on_stale`: the studies only).
    Under the lock: several workers starting at once on fresh stores must not create a schema twice."""
    with queue.store_lock(stores.optuna_url, stores.root):
        use_wal(stores.optuna_url)
        storage = open_storage(stores, heartbeat=True)
        fresh = spec.name not in optuna.get_all_study_names(storage)
        home = _study(storage, spec.name, optuna.pruners.NopPruner())
        if fresh:
            home.set_user_attr(StudyAttr.SCHEMA, SCHEMA_VERSION)
        elif problem := schema_problem(spec.name, home.user_attrs.get(StudyAttr.SCHEMA)):
            raise ValueError(problem)
        search = {a.name: _study(storage, optuna_study_name(spec.name, a.name), pruner(spec, Phase.SEARCH), spec, a)
                  for a in spec.units()}
        confirm = {a.name: _study(storage, confirm_study_name(spec.name, a.name), pruner(spec, Phase.CONFIRM), spec, a)
                   for a in spec.units()}
        work = Work(spec, stores, storage, home, search, confirm)
        if on_stale is not None:
            work.plan(on_stale)
    return work


def _study(storage: Any, name: str, prune: optuna.pruners.BasePruner, spec: StudySpec | None = None,
           arm: Arm | None = None) -> optuna.Study:
    study = optuna.create_study(study_name=name, storage=storage, direction="maximize", load_if_exists=True,
                                sampler=optuna.samplers.RandomSampler(queue.SAMPLER_SEED), pruner=prune)
    if arm is not None and not study.user_attrs:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names([METRIC_NAME])
        study.set_user_attr(StudyAttr.CONFIG, json.dumps(fixed_settings(spec, arm), sort_keys=True))
        study.set_user_attr(StudyAttr.SAMPLER, spec.sampler)
        study.set_user_attr(StudyAttr.BUDGET, spec.settings())
    return study
