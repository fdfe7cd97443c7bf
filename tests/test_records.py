"""Specification of harness.analysis.records: what the stores' runs and trials count for."""

from __future__ import annotations

import numpy as np
import optuna
import pandas as pd
import pytest

from harness.analysis.records import _counted, budget_value
from harness.browse import browse
from harness.stores import Stores

LR = optuna.distributions.FloatDistribution(1e-4, 1.0, log=True)


def _trial(state: str, value=None, history=(), outcome: str = "") -> optuna.trial.FrozenTrial:
    return optuna.trial.create_trial(state=optuna.trial.TrialState[state], value=value, params={"lr": 0.1},
                                     distributions={"lr": LR}, intermediate_values=dict(enumerate(history)),
                                     user_attrs={"outcome": outcome})


def test_every_trial_the_budget_paid_for_scores():
    assert budget_value(_trial("COMPLETE", 0.8, [0.5, 0.8])) == 0.8
    assert budget_value(_trial("PRUNED", None, [0.3, 0.45, 0.4])) == 0.45  # its best before pruning
    assert budget_value(_trial("FAIL", None, [0.3], "diverged")) == 0.0  # no model
    assert np.isnan(budget_value(_trial("FAIL", None, [0.3], "failed")))  # redone


def _run(seed: int, status: str, acc: float | None, outcome: str = "") -> dict:
    return {"tags.seed": str(seed), "status": status, "metrics.test_acc": acc, "tags.outcome": outcome,
            "run_id": f"{status}-{seed}"}


def test_a_diverged_confirmation_seed_counts_as_zero_and_a_crashed_one_not_at_all():
    runs = pd.DataFrame([_run(1, "FINISHED", 0.9), _run(2, "FAILED", None, "diverged"),
                         _run(3, "FAILED", None, "failed"), _run(4, "KILLED", None, "interrupted")])
    counted, uncounted = _counted(runs)
    assert dict(zip(counted["tags.seed"], counted["metrics.test_acc"])) == {"1": 0.9, "2": 0.0}
    assert counted["diverged"].tolist() == [False, True] and uncounted == 2


def test_a_finished_rerun_of_a_seed_wins_over_its_diverged_attempt():
    runs = pd.DataFrame([_run(1, "FAILED", None, "diverged"), _run(1, "FINISHED", 0.7)])
    counted, _ = _counted(runs)
    assert counted["metrics.test_acc"].tolist() == [0.7]


@pytest.mark.parametrize(("uri", "ui_url", "url"), [
    (None, None, "http://127.0.0.1:5000"),  # local SQLite: `mlflow ui` on its default port
    ("http://tracking.lab:8080/", None, "http://tracking.lab:8080"),  # a server: its own address
    ("postgresql://u@db/mlflow", None, None),  # a database: no link we could know
    (None, "http://127.0.0.1:5050", "http://127.0.0.1:5050"),  # told
])
def test_mlflow_links_follow_the_tracking_store_in_use(tmp_path, uri, ui_url, url):
    b = browse(Stores(root=tmp_path, tracking_uri=uri).mlflow_uri, ui_url)
    assert b.url == url
    if uri is None and ui_url is None:
        assert b.command == f"mlflow ui --backend-store-uri sqlite:///{tmp_path}/mlflow.db --port 5000"
