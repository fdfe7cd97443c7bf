"""One study's two stores belong together: a token written into both (the study's own Optuna study and its
MLflow experiment) when the study is first opened, and compared by every worker before it writes anything.

Without it a worker that shares the PostgreSQL storage but omits `--tracking-uri` logs its slots into a local
MLflow store (the server's records stay short for good), a deleted `optuna.db` next to a live `mlflow.db`
reruns everything into the old experiment, and a deleted `mlflow.db` reads as "nothing to do".
"""

from __future__ import annotations

import uuid
from typing import Any

from harness.schema import PAIRING_TAG, StudyAttr
from harness.stores import Stores, parse_url


def mismatch(study: str, stores: Stores, optuna_token: str | None, mlflow_token: str | None) -> str | None:
    """Why the stores do not belong together, or None (both unpaired: fresh, or written before the tokens)."""
    if optuna_token == mlflow_token:
        return None
    where = f"the Optuna storage {stores.optuna_url} and the MLflow store {stores.mlflow_uri}"
    if mlflow_token is None:
        return (f"{where} do not belong together: the Optuna storage holds study {study!r}, logged to another "
                "MLflow store, and this one has no record of it. Give every worker the same --tracking-uri as "
                "the others (and the same --storage); if the MLflow records were deleted, start afresh with "
                "another --root or --storage")
    if optuna_token is None:
        return (f"{where} do not belong together: the MLflow store already holds study {study!r}'s runs, but "
                "the Optuna storage has no record of them (deleted, or another --storage), so running would "
                "repeat them. Pass the --storage the other workers use, restore it, or start afresh with "
                "another --root")
    return f"{where} hold two different runs of study {study!r}; use the pair they were made with"


def tracking_exists(stores: Stores) -> bool:
    """Whether the MLflow store is there to read: a server, or a database file already written."""
    parsed = parse_url(stores.mlflow_uri)
    return not parsed.is_file or parsed.path.exists()


def tokens(study: str, storage: Any, stores: Stores) -> tuple[str | None, str | None]:
    """(the Optuna token, the MLflow token) as the stores hold them now; read-only (a local MLflow store that
    does not exist yet is not created by looking)."""
    import optuna
    from mlflow import MlflowClient

    try:
        optuna_token = optuna.load_study(study_name=study, storage=storage).user_attrs.get(StudyAttr.PAIRING)
    except KeyError:
        optuna_token = None
    if not tracking_exists(stores):
        return optuna_token, None
    experiment = MlflowClient(stores.mlflow_uri).get_experiment_by_name(study)
    return optuna_token, None if experiment is None else experiment.tags.get(PAIRING_TAG)


def pair(home: Any, stores: Stores, experiment_id: str) -> None:
    """Under the queue's lock, once both exist: write one token into both stores, or refuse a mismatch."""
    from mlflow import MlflowClient

    client = MlflowClient(stores.mlflow_uri)
    optuna_token = home.user_attrs.get(StudyAttr.PAIRING)
    mlflow_token = client.get_experiment(experiment_id).tags.get(PAIRING_TAG)
    if optuna_token is None and mlflow_token is None:
        token = uuid.uuid4().hex
        home.set_user_attr(StudyAttr.PAIRING, token)
        client.set_experiment_tag(experiment_id, PAIRING_TAG, token)
        return
    problem = mismatch(home.study_name, stores, optuna_token, mlflow_token)
    if problem:
        raise ValueError(problem)
