"""Search replicates run for real: a tiny sgd_vs_adam with two searches per arm, each its own Optuna studies,
sampler scrambling and chosen configuration, tagged in MLflow, counted and reported over searches."""

import mlflow
import optuna
import pytest

from harness.run.slots import search_points
from harness.spec import split_unit
from harness.stores import Stores
from harness.study import main
from harness.study_file import load_study
from tests.test_end_to_end import ARMS

SMALL = {"n_trials": 1, "seeds": 2, "epochs": 1, "searches": 2}  # one trial a search: no selection runs, a quick study
NAME = load_study("sgd_vs_adam").variant(**SMALL).name


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    root = tmp_path_factory.mktemp("searched")
    assert main(["sgd_vs_adam", "--trials", "1", "--seeds", "2", "--epochs", "1", "--searches", "2",
                 "--root", str(root / "mlruns"),
                 "--reports", str(root / "reports")]) == 0
    return root


@pytest.mark.slow
def test_each_search_is_its_own_optuna_study_with_its_own_scrambling_and_choice(searched):
    storage = Stores(searched / "mlruns").optuna_url
    names = set(optuna.get_all_study_names(storage))
    for arm in ARMS:
        for j in (1, 2):
            assert {f"{NAME}/{arm}/search-{j}", f"{NAME}/{arm}/search-{j}/confirm"} <= names
            search = optuna.load_study(study_name=f"{NAME}/{arm}/search-{j}", storage=storage)
            assert len([t for t in search.trials if t.state.is_finished()]) == 1
        one, two = (optuna.load_study(study_name=f"{NAME}/{arm}/search-{j}", storage=storage) for j in (1, 2))
        assert [t.params for t in one.trials] != [t.params for t in two.trials]
    # the first search is the single-search design's: the same sampler points
    spec = load_study("sgd_vs_adam")
    units = spec.variant(searches=2).units()
    assert search_points(spec, spec.arms[0], 2) == search_points(spec, units[0], 2) != search_points(spec, units[1], 2)


@pytest.mark.slow
def test_every_run_is_tagged_with_its_search_and_every_search_ran_the_verdict_seeds(searched):
    mlflow.set_tracking_uri(Stores(searched / "mlruns").mlflow_uri)
    confirm = mlflow.search_runs(experiment_names=[NAME], filter_string="tags.phase = 'confirm'", output_format="list")
    verdict = {(r.data.tags["arm"], r.data.tags["search"], r.data.tags["seed"]) for r in confirm
               if int(r.data.tags["seed"]) < 1000}
    assert verdict == {(f"{a}/search-{j}", str(j), str(s)) for a in ARMS for j in (1, 2) for s in (1, 2)}
    assert all(split_unit(r.data.tags["arm"])[1] == int(r.data.tags["search"]) for r in confirm)


@pytest.mark.slow
def test_the_report_is_about_the_optimizer_over_searches(searched):
    text = (searched / "reports" / NAME / "README.md").read_text()
    assert "**Over 2 searches**" in text and "Conditional on one search" not in text
    assert "searches per arm" in text  # each decision says its interval is over searches
