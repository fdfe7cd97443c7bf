"""The ledger: what each slot of a study produced, read from Optuna's storage, the one authority for results.

A slot's outcome, validation and test accuracy, target classes, parameters and MLflow run id are Optuna's record
of its trial. The planner, the sequential rule, selection, the census and the report all read them here, through
`Slot` rows, so they cannot disagree. MLflow is the log (curves, artifacts, models, provenance, the UI), found by
the run ids the ledger holds.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from optuna.trial import FrozenTrial, TrialState

from harness.schema import Attr, Outcome, Phase, StudyAttr, counts, schema_problem, trial_outcome
from harness.spec import StudySpec, is_verdict_seed
from harness.stores import confirm_study_name, optuna_study_name

if TYPE_CHECKING:
    import optuna

    from harness.inference.sequential import Sequential


@dataclass(frozen=True)
class Slot:
    """One slot's result as Optuna recorded it: a search trial, or a confirmation seed of a search trial."""

    arm: str
    phase: Phase
    trial: FrozenTrial

    @property
    def number(self) -> int:
        return self.trial.number

    @property
    def state(self) -> TrialState:
        return self.trial.state

    @property
    def outcome(self) -> Outcome | None:
        return trial_outcome(self.trial.state.name, self.trial.user_attrs)

    @property
    def counted(self) -> bool:
        """A result that counts toward the budget; a slot cut off (interrupted, stale) runs again."""
        return counts(self.trial)

    @property
    def diverged(self) -> bool:
        return self.outcome is Outcome.DIVERGED

    @property
    def seed(self) -> int | None:
        seed = self.trial.user_attrs.get(Attr.SEED)
        return None if seed is None else int(seed)

    @property
    def search_trial(self) -> int | None:
        """A confirmation seed's search trial (the configuration it reruns)."""
        return self.trial.user_attrs.get(Attr.SEARCH_TRIAL)

    @property
    def is_verdict(self) -> bool:
        return self.phase is Phase.CONFIRM and self.seed is not None and is_verdict_seed(self.seed)

    @property
    def val_acc(self) -> float | None:
        """Best validation accuracy of a run that finished training (none for a pruned, diverged or failed one)."""
        return float(self.trial.value) if self.trial.state == TrialState.COMPLETE else None

    @property
    def test_acc(self) -> float | None:
        """A confirmation seed's test accuracy; none for a run that left no model (diverged, raised)."""
        test = self.trial.user_attrs.get(Attr.TEST)
        return None if test is None else float(test["acc"])

    def score(self, chance: float) -> float | None:
        """What the run scores over all verdict runs (the endpoint "all"): its test accuracy, a run that failed to
        train included; `chance` (1 / classes) for a run that left no model to test (diverged, raised)."""
        if self.test_acc is not None:
            return self.test_acc
        return chance if self.outcome in (Outcome.DIVERGED, Outcome.FAILED) else None

    @property
    def classes(self) -> int | None:
        """The target task's classes: a verdict seed's with its test accuracy, a selection seed's on its own."""
        test = self.trial.user_attrs.get(Attr.TEST)
        classes = self.trial.user_attrs.get(Attr.CLASSES) if test is None else test["classes"]
        return None if classes is None else int(classes)

    @property
    def params(self) -> dict[str, Any]:
        return self.trial.params

    @property
    def run_id(self) -> str | None:
        return self.trial.user_attrs.get(Attr.MLFLOW_RUN_ID)

    @property
    def budget_value(self) -> float:
        """What a slot the budget paid for scored: a complete trial its value, a pruned one the best validation
        accuracy it reached before pruning, a diverged one 0 (no model); nan for a crash."""
        if self.state == TrialState.COMPLETE:
            return float(self.trial.value)
        if self.state == TrialState.PRUNED:
            return max(self.trial.intermediate_values.values(), default=0.0)
        return 0.0 if self.diverged else np.nan

    def failed_to_train(self, chance_margin: float) -> bool:
        """Diverged, raised, or finished with validation accuracy within the chance margin of chance (1 / classes).
        Validation decides, never test: the test split judges the comparisons, not what they compare."""
        from harness.inference.failures import failed  # scipy.stats: imported where a decision is made

        if self.outcome in (Outcome.DIVERGED, Outcome.FAILED):
            return True
        chance = 1 / self.classes if self.classes else None
        return self.val_acc is not None and failed(self.val_acc, False, chance, chance_margin)


def slots(trials: Iterable[FrozenTrial], arm: str, phase: Phase) -> list[Slot]:
    return [Slot(arm, phase, t) for t in trials]


@dataclass(frozen=True)
class VerdictResults:
    """An arm's counted verdict seeds: those that finished (a result: failures included), the test accuracy of
    those that trained, those that failed to train, and every finished seed's score over all runs."""

    done: set[int]
    trained: dict[int, float]
    failed: set[int]
    scored: dict[int, float]

    def values(self, endpoint: str) -> dict[int, float]:
        """The declared endpoint's values (harness.analysis_plan.ENDPOINTS): every verdict run, or those that
        trained."""
        return self.scored if endpoint == "all" else self.trained


def verdict_results(confirm: Iterable[Slot], chance_margin: float, chance: float) -> VerdictResults:
    """What the sequential rule and the report both judge: one result per counted verdict seed, a run without a
    model scored at `chance`."""
    done, trained, down, scored = set(), {}, set(), {}
    for s in confirm:
        if not s.counted or not s.is_verdict:
            continue
        done.add(s.seed)
        if s.score(chance) is None:
            raise ValueError(f"confirmation seed {s.seed} of arm {s.arm} finished without a test accuracy in Optuna's "
                             "records; run `python -m harness.report --migrate` on these stores")
        scored[s.seed] = s.score(chance)
        if s.failed_to_train(chance_margin):
            down.add(s.seed)
        else:
            trained[s.seed] = s.test_acc
    return VerdictResults(done, trained, down, scored)


def chances(spec: StudySpec, confirm: Mapping[str, Iterable[Slot]]) -> dict[str, float]:
    """Each arm's chance accuracy, 1 / its target task's classes: what a run that left no model scores. The
    classes come from the arm's own tested runs (each records the classes it was tested on), else the classes
    its configuration declares, else another arm's tested runs (a study's arms share their target task unless
    an arm fixes another), else the dataset registry's count; 0 only when nothing says."""
    tested = {name: [s.classes for s in slots if s.classes] for name, slots in confirm.items()}
    anyone = next((k for found in tested.values() for k in found), None)
    out = {}
    for arm in spec.units():  # with several searches, each search of an arm
        declared = arm.config(spec.base).target_classes
        classes = next(iter(tested.get(arm.name, [])), None) or (len(declared) if declared else anyone)
        out[arm.name] = 1 / (classes or _registry_classes(arm.config(spec.base).dataset) or np.inf)
    return out


def _registry_classes(dataset: str) -> int | None:
    """The dataset's class count from the registry (imports torch: asked only when no run was ever tested)."""
    from harness.learn.datasets import dataset_spec

    try:
        return dataset_spec(dataset).num_classes
    except (ValueError, OSError):
        return None


def sequential_state(spec: StudySpec, confirm: Mapping[str, list[Slot]], power: bool = False) -> Sequential | None:
    """The sequential rule replayed over every arm's confirmation slots, on the study's endpoint; None for a
    one-look design."""
    from harness.inference.sequential import replay

    if len(spec.design.looks) == 1:
        return None
    chance = chances(spec, confirm)
    results = {u.name: verdict_results(confirm.get(u.name, []), spec.chance_margin, chance[u.name])
               for u in spec.units()}
    return replay(spec.family, [a.name for a in spec.arms], done_by_arm(spec, {u: r.done for u, r in results.items()}),
                  by_arm(spec, {u: r.values(spec.endpoint) for u, r in results.items()}), spec.margin, spec.design,
                  power=power, failed=by_arm(spec, {u: r.failed for u, r in results.items()}))


def by_arm(spec: StudySpec, per_unit: Mapping[str, Any]) -> dict[str, Any]:
    """Each arm's values (a {seed: value} dict or a set of seeds): with several searches, its searches' merged,
    keyed (search, seed) (harness.inference.searches)."""
    if spec.searches == 1:
        return {a.name: per_unit.get(a.name, {}) for a in spec.arms}
    out: dict[str, Any] = {}
    for u in spec.units():
        mine = per_unit.get(u.name, {})
        keyed = {(u.search, s): mine[s] for s in mine} if isinstance(mine, Mapping) else {(u.search, s) for s in mine}
        out[u.family] = (out[u.family] | keyed) if u.family in out else keyed
    return out


def done_by_arm(spec: StudySpec, done: Mapping[str, set[int]]) -> dict[str, set[int]]:
    """The verdict seeds an arm has finished in every one of its searches: a look waits for all of them."""
    out: dict[str, set[int]] = {}
    for u in spec.units():
        out[u.family] = out[u.family] & done.get(u.name, set()) if u.family in out else set(done.get(u.name, set()))
    return out


def ranked(search: Iterable[Slot]) -> list[Slot]:
    """Complete search slots, best validation accuracy first; ties go to the lower trial number."""
    return sorted((s for s in search if s.state == TrialState.COMPLETE), key=lambda s: (-s.val_acc, s.number))


def selection_means(confirm: Iterable[Slot], selecting: bool = True) -> dict[int, float]:
    """Search trial -> mean validation accuracy over its counted confirmation seeds (the selection seeds only when
    `selecting`); a seed that diverged or failed left no model and counts as 0."""
    by_trial: dict[int, list[float]] = {}
    for s in confirm:
        if s.counted and (not selecting or not s.is_verdict):
            by_trial.setdefault(s.search_trial, []).append(s.val_acc or 0.0)
    return {n: sum(v) / len(v) for n, v in sorted(by_trial.items())}


@dataclass
class ArmLedger:
    """One arm's slots: its search study's counted trials and every trial of its confirmation study."""

    arm: str
    study: optuna.Study | None  # the search study (fANOVA reads it); None before the arm started
    search: list[Slot] = field(default_factory=list)
    confirm: list[Slot] = field(default_factory=list)

    @property
    def best(self) -> Slot | None:
        """The trial the confirmation chose (best mean validation accuracy over seeds), else the search's best."""
        chosen = None if self.study is None else self.study.user_attrs.get(StudyAttr.SELECTED_TRIAL)
        if chosen is not None:
            return next(s for s in self.search if s.number == chosen)
        top = ranked(self.search)
        return top[0] if top else None

    def verdict(self) -> list[Slot]:
        """The chosen trial's counted verdict seeds, in seed order: the seeds that chose it never judge it."""
        best = self.best
        if best is None:
            return []
        mine = [s for s in self.confirm if s.counted and s.is_verdict and s.search_trial == best.number]
        return sorted(mine, key=lambda s: s.seed)

    def cut_off(self) -> int:
        """Verdict seeds of the chosen trial that had a run cut off (crashed, killed): not scored, run again."""
        best = self.best
        if best is None:
            return 0
        return len({s.seed for s in self.confirm if s.is_verdict and s.search_trial == best.number
                    and s.state.is_finished() and not s.counted})

    def count(self, state: TrialState) -> int:
        return sum(s.state == state for s in self.search)


def read_arm(spec: StudySpec, arm: str, storage: Any) -> ArmLedger:
    import optuna

    try:
        study = optuna.load_study(study_name=optuna_study_name(spec.name, arm), storage=storage)
    except KeyError:  # this arm has not started
        return ArmLedger(arm, None)
    search = [s for s in slots(study.get_trials(deepcopy=False), arm, Phase.SEARCH) if s.counted]
    try:
        confirm = optuna.load_study(study_name=confirm_study_name(spec.name, arm), storage=storage)
        confirm_slots = slots(confirm.get_trials(deepcopy=False), arm, Phase.CONFIRM)
    except KeyError:
        confirm_slots = []
    return ArmLedger(arm, study, search, confirm_slots)


def schema_version(name: str, storage: Any) -> int | None:
    """The schema version the study's own Optuna study records (None: older stores, or no such study)."""
    import optuna

    try:
        return optuna.load_study(study_name=name, storage=storage).user_attrs.get(StudyAttr.SCHEMA)
    except KeyError:
        return None


def read(spec: StudySpec, storage: Any) -> dict[str, ArmLedger]:
    """Every arm's slots, as Optuna's storage holds them; ValueError for stores of another schema."""
    problem = schema_problem(spec.name, schema_version(spec.name, storage))
    if problem:
        raise ValueError(problem)
    return {arm.name: read_arm(spec, arm.name, storage) for arm in spec.units()}
