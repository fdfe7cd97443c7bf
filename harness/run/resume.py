"""Whether a study's stores can be resumed by this command: paired, of this schema, searched with the same settings;
and whether its report is current (a rerun has nothing to do). Read-only: before anything is written."""

from __future__ import annotations

import json

from harness.schema import StudyAttr, counts, schema_problem
from harness.spec import StudySpec
from harness.stores import Stores, confirm_study_name, open_storage, optuna_study_name


def check_resume(spec: StudySpec, stores: Stores, say: bool = True) -> str:
    """Refuse to top up an arm that was searched with other settings (read-only; before anything is written).
    Returns "current" when the study is done and its report was written from these very records (a rerun has
    nothing to do), "published" when a report was written but the records changed since (one worker rebuilds
    it), else "open"."""
    import optuna

    from harness.run.pairing import mismatch, tokens, tracking_exists
    from harness.run.queue import store_lock
    from harness.run.slots import fixed_settings
    from harness.run.work import records_digest

    fresh_optuna = stores.storage is None and not (stores.root / "optuna.db").exists()
    if fresh_optuna and tracking_exists(stores):
        storage = optuna.storages.InMemoryStorage()  # nothing there: only the MLflow side can hold the study
    elif fresh_optuna:
        return "open"  # a fresh root: nothing to resume
    with store_lock(stores.optuna_url, stores.root):  # another worker may be creating the schema right now
        if not fresh_optuna:
            storage = open_storage(stores)
        problem = mismatch(spec.name, stores, *tokens(spec.name, storage, stores))
        if problem:
            raise ValueError(problem)
        if fresh_optuna:
            return "open"
        try:
            home = optuna.load_study(study_name=spec.name, storage=storage).user_attrs
        except KeyError:
            home = None
        if home is not None and (problem := schema_problem(spec.name, home.get(StudyAttr.SCHEMA))):
            raise ValueError(problem)
        marked = None if home is None else home.get(StudyAttr.REPORT_RECORDS)
        recorded, kept, studies = {}, 0, []
        for arm in spec.units():
            try:
                study = optuna.load_study(study_name=optuna_study_name(spec.name, arm.name), storage=storage)
                recorded[arm.name] = json.loads(study.user_attrs.get(StudyAttr.CONFIG, "{}"))
                confirm = optuna.load_study(study_name=confirm_study_name(spec.name, arm.name), storage=storage)
            except KeyError:
                continue
            kept += sum(counts(t) for s in (study, confirm) for t in s.get_trials(deepcopy=False))
            studies += [study, confirm]
        complete = len(studies) == 2 * len(spec.units())
        state = "open" if marked is None else \
            "current" if complete and records_digest(studies) == marked else "published"
    for name, old in recorded.items():
        arm = next(a for a in spec.units() if a.name == name)
        new = fixed_settings(spec, arm)
        diff = {k: (old[k], new.get(k)) for k in old if old[k] != new.get(k)}
        if diff:
            raise ValueError(f"{optuna_study_name(spec.name, arm.name)} was run with other settings (old, new): "
                             f"{diff}; rerun with those settings to resume, or use another --root to start afresh")
    if kept and state == "open" and say:
        print(f"resuming {spec.name}: {kept} runs already recorded in {stores.root} are kept; what was cut off "
              "runs again, with the same settings", flush=True)
    return state
