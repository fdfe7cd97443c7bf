"""The study a report is about, rebuilt from what its runs recorded: the study file's text as it ran and the
settings that made it a variant (parent-run artifacts). A report therefore needs no study file, and one rebuilt
after the file changed or was deleted is the report of the study that ran."""

from __future__ import annotations

import json

import mlflow

from harness.schema import STUDY_SOURCE, STUDY_VARIANT, Phase, phase_filter, renamed, schema_problem
from harness.spec import STUDIES_DIR, StudySpec
from harness.stores import Stores, experiment_id
from harness.study_file import load_study, study_from_source


def recorded_study(name: str, stores: Stores, studies=STUDIES_DIR) -> StudySpec:
    """`name`'s study as its newest parent run recorded it; a study file of that name where nothing is
    recorded (a study that has not run, or records from before studies were recorded)."""
    found = _recorded(name, stores)
    if found is not None:
        return found
    try:
        return load_study(name, studies)
    except ValueError:
        if "--" not in name:
            raise
    raise ValueError(f"unknown study {name!r}: neither a file in {studies} nor a study recorded in "
                     f"{stores.mlflow_uri}")


def is_recorded(name: str, stores: Stores) -> bool:
    """Whether a parent run of `name` recorded its study (so a report can be rebuilt without the file)."""
    return _recorded(name, stores) is not None


def _recorded(name: str, stores: Stores) -> StudySpec | None:
    if stores.tracking_uri is None and not (stores.root / "mlflow.db").is_file():
        return None  # do not create an empty store just to look
    eid = experiment_id(stores, name, create=False)
    if eid is None:
        return None
    client = mlflow.MlflowClient()
    for run in client.search_runs([eid], phase_filter(Phase.STUDY), order_by=["attributes.start_time DESC"]):
        try:
            source = mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/{STUDY_SOURCE}")
            variant = json.loads(mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/{STUDY_VARIANT}"))
        except Exception:  # noqa: BLE001, S112 - a parent run from before studies were recorded: try the next
            continue
        if renamed(source) != source:  # recorded by an older harness: `--migrate` rewrites it
            raise ValueError(schema_problem(name, None))
        spec = study_from_source(variant["file"], source, f"{STUDY_SOURCE} of MLflow run {run.info.run_id}")
        spec = spec.variant(**variant["changes"])
        if spec.name != name:
            raise ValueError(f"the study recorded in run {run.info.run_id} rebuilds as {spec.name!r}, not {name!r}")
        return spec
    return None
