import mlflow
import optuna

from harness.spec import Stores
from harness.tracking import experiment_id, open_storage


def test_experiments_keep_their_artifacts_under_the_root(stores):
    eid = experiment_id(stores, "unit")
    location = mlflow.get_experiment(eid).artifact_location
    assert location.endswith("/mlruns/artifacts/unit") and (stores.root / "mlflow.db").is_file()
    assert experiment_id(stores, "unit") == eid  # found, not created twice


def test_a_journal_file_storage_serves_several_workers(tmp_path):
    stores = Stores(root=tmp_path / "mlruns", storage=f"journal:{tmp_path / 'optuna.journal'}")
    first = optuna.create_study(study_name="s/a", storage=open_storage(stores), direction="maximize")
    first.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    second = optuna.load_study(study_name="s/a", storage=open_storage(stores))  # another process would see this
    assert len(second.trials) == 2
