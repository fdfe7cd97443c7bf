"""The one migration of a study's stores to this release's schema (`python -m harness.report NAME --migrate`).

Schema 1 (no version recorded) to 2: the study files the parent runs recorded are rewritten to the modules' new
names, and every confirmation trial must already hold its test accuracy and MLflow run id in Optuna (stores
written since the sequential rule do); those that do not cannot be read by the ledger and are refused.
"""

from __future__ import annotations


def rewrite_sources(name: str, stores) -> int:
    """Rewrite the study file each parent run of `name` recorded, where it imports a renamed module."""
    import mlflow

    from harness.schema import STUDY_SOURCE, Phase, phase_filter, renamed
    from harness.stores import experiment_id, use_tracking

    use_tracking(stores)
    eid = experiment_id(stores, name, create=False)
    if eid is None:
        return 0
    client, changed = mlflow.MlflowClient(), 0
    for run in client.search_runs([eid], phase_filter(Phase.STUDY)):
        try:
            source = mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/{STUDY_SOURCE}")
        except Exception:  # noqa: BLE001, S112 - a parent run that recorded no study file
            continue
        if renamed(source) != source:
            client.log_text(run.info.run_id, renamed(source), STUDY_SOURCE)
            changed += 1
    return changed


def migrate(spec, stores) -> str:
    """Bring the study's Optuna records to SCHEMA_VERSION (after `rewrite_sources`); what was done, in words.
    ValueError where the stores cannot be migrated."""
    import optuna

    from harness import ledger
    from harness.schema import SCHEMA_VERSION, Attr, StudyAttr, schema_problem
    from harness.stores import open_storage

    storage = open_storage(stores)
    found = ledger.schema_version(spec.name, storage)
    if found == SCHEMA_VERSION:
        return f"{spec.name}: already at schema {SCHEMA_VERSION}"
    if found is not None and found > SCHEMA_VERSION:
        raise ValueError(schema_problem(spec.name, found))
    arms = {arm.name: ledger.read_arm(spec, arm.name, storage) for arm in spec.units()}
    missing = [f"{name} trial {s.number}" for name, arm in arms.items() for s in arm.confirm
               if s.counted and s.is_verdict and s.val_acc is not None
               and (Attr.TEST not in s.trial.user_attrs or s.run_id is None)]
    if missing:
        some = ", ".join(missing[:3]) + (", ..." if len(missing) > 3 else "")
        raise ValueError(f"study {spec.name!r} was run before confirmation trials recorded their test accuracy in "
                         f"Optuna ({len(missing)} of them: {some}), so no report of this release can judge it; run "
                         "the study again under a fresh --root")
    home = optuna.create_study(study_name=spec.name, storage=storage, direction="maximize", load_if_exists=True)
    home.set_user_attr(StudyAttr.SCHEMA, SCHEMA_VERSION)
    return f"{spec.name}: migrated to schema {SCHEMA_VERSION}"
