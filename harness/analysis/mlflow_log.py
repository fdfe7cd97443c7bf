"""MLflow, read as the log: a study's runs with their tags and metrics under plain names, their params, artifacts and
per-epoch curves, found by the run ids the ledger (`harness.ledger`) holds. Results come from the ledger; this is
the one place that knows MLflow's column names.
"""

from __future__ import annotations

import functools
import json
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from harness.schema import Phase, Tag, phase_filter
from harness.stores import Stores, experiment_id

TAGS = (Tag.PHASE, Tag.ARM, Tag.SEED, Tag.OPTUNA_TRIAL, Tag.OUTCOME, Tag.CHECKPOINT, Tag.CHECKPOINT_RUN_ID, Tag.MODEL,
        Tag.REPORT)
METRICS = ("wall_seconds",)  # results (accuracies) come from the ledger, never from here


def _plain(runs: pd.DataFrame) -> pd.DataFrame:
    """run_id, status, start_time, the schema's tags and the final metrics, under their own names."""
    columns = {"run_id": "run_id", "status": "status", "start_time": "start_time",
               **{f"tags.{t}": t for t in TAGS}, **{f"metrics.{m}": m for m in METRICS}}
    return runs.reindex(columns=list(columns)).rename(columns=columns)


@dataclass
class RunLog:
    """A study's MLflow runs, newest first."""

    stores: Stores
    experiment_id: str
    raw: pd.DataFrame  # mlflow.search_runs columns

    @functools.cached_property
    def runs(self) -> pd.DataFrame:
        return _plain(self.raw)

    @functools.cached_property
    def parents(self) -> pd.DataFrame:
        """The study's parent runs (one per worker invocation that took work)."""
        return self.runs[self.runs[Tag.PHASE] == Phase.STUDY]

    def children(self, arm: str | None = None, phase: Phase | None = None) -> pd.DataFrame:
        """Trial and confirmation runs, of one arm and one phase if given."""
        phases = [Phase.SEARCH.value, Phase.CONFIRM.value] if phase is None else [phase]
        runs = self.runs[self.runs[Tag.PHASE].isin(phases)]
        return runs if arm is None else runs[runs[Tag.ARM] == arm]

    def parent_tags(self) -> dict[str, str]:
        """Tags of the newest parent run that has each one."""
        parents = self.raw.loc[self.parents.index]
        firsts = {c.removeprefix("tags."): parents[c].dropna() for c in parents.columns if c.startswith("tags.")}
        return {k: str(v.iloc[0]) for k, v in firsts.items() if len(v)}

    def parent_tag_values(self, key: str) -> list[str]:
        """Every value the parent runs gave tag `key`, oldest run first, each once (a study resumed from another
        commit has several)."""
        column = self.raw.loc[self.parents.index].get(f"tags.{key}", pd.Series(dtype=object)).dropna()
        return list(dict.fromkeys(map(str, reversed(list(column)))))

    @functools.cached_property
    def _params(self) -> pd.DataFrame:
        children = self.raw.loc[self.children().index]
        columns = {c: c.removeprefix("params.") for c in children.columns if c.startswith("params.")}
        return children[["run_id", *columns]].rename(columns=columns).set_index("run_id")

    def params(self, run_ids: Iterable[str] | None = None) -> pd.DataFrame:
        """Child runs' params, one row per run id (newest first), one column per param (as MLflow holds it: text)."""
        if run_ids is None:
            return self._params
        return self._params.reindex([r for r in run_ids if r is not None])

    def param_values(self, param: str) -> list[str]:
        """Every value a param took across the child runs, newest first."""
        column = self._params.get(param, pd.Series(dtype=object)).dropna()
        return list(dict.fromkeys(map(str, column)))

    def newest_params(self) -> dict[str, str]:
        """Params of the newest child run (those every arm shares, such as the dataset)."""
        found = self._params.dropna(subset=["dataset"]) if "dataset" in self._params else self._params.iloc[0:0]
        if found.empty:
            return {}
        newest = found.iloc[0]
        return {k: str(v) for k, v in newest.items() if pd.notna(v)}

    def checkpoints(self) -> list[tuple[str, str]]:
        """(checkpoint key, the MLflow run that pretrained it) of every source model the child runs used."""
        pairs = self.children()[[Tag.CHECKPOINT, Tag.CHECKPOINT_RUN_ID]].dropna().drop_duplicates()
        return list(pairs.itertuples(index=False, name=None))

    def source_result(self, run_id: str) -> tuple[float | None, str]:
        """A pretraining run's best validation accuracy and its target classes param (raises if unreadable)."""
        run = MlflowClient(self.stores.mlflow_uri).get_run(run_id)
        return run.data.metrics.get("best_val_acc"), run.data.params.get("target_classes", "")

    def model(self, run_id: str) -> str | None:
        """The name of the MLflow model a run logged, if it logged one."""
        found = self.runs.loc[self.runs["run_id"] == run_id, Tag.MODEL].dropna()
        return str(found.iloc[0]) if len(found) else None

    def artifact(self, run_ids: Iterable[str], path: str) -> Any:
        return artifact(MlflowClient(self.stores.mlflow_uri), run_ids, path)

    def history(self, runs: pd.DataFrame, metrics: tuple[str, ...] = ("val_acc",)) -> pd.DataFrame:
        """Per-epoch `metrics` of `runs` (arm, seed, run_id columns): arm, seed, run_id, epoch, a column per metric."""
        client = MlflowClient(self.stores.mlflow_uri)
        rows: dict[tuple, dict] = {}
        for arm, seed, run_id in runs[["arm", "seed", "run_id"]].itertuples(index=False):
            for metric in metrics:
                for m in client.get_metric_history(run_id, metric):
                    rows.setdefault((run_id, m.step), {"arm": arm, "seed": seed, "run_id": run_id,
                                                       "epoch": m.step})[metric] = m.value
        frame = pd.DataFrame(list(rows.values()), columns=["arm", "seed", "run_id", "epoch", *metrics])
        return frame.sort_values(["run_id", "epoch"], ignore_index=True)


def load_log(stores: Stores, name: str) -> RunLog:
    """The study's MLflow runs; ValueError when the stores hold none."""
    eid = experiment_id(stores, name, create=False)
    runs = pd.DataFrame() if eid is None else mlflow.search_runs([eid], order_by=["attributes.start_time DESC"])
    if runs.empty:
        raise ValueError(f"no MLflow runs of study {name!r} in {stores.mlflow_uri}; "
                         f"run `python -m harness.study {name}` first")
    return RunLog(stores, eid, runs.reset_index(drop=True))


def suite_runs(eid: str, max_results: int = 1000) -> pd.DataFrame:
    """A suite's own runs (phase suite) in its experiment, with its tags under their own names."""
    found = mlflow.search_runs([eid], filter_string=phase_filter(Phase.SUITE), max_results=max_results)
    return found.rename(columns={c: c.removeprefix("tags.") for c in found.columns if c.startswith("tags.")})


def artifact(client: MlflowClient, run_ids: Iterable[str], path: str) -> Any:
    """The artifact at `path` of the first run that has it: a dict (.json), arrays (.npz), else None."""
    for run_id in run_ids:
        with tempfile.TemporaryDirectory() as tmp:  # quiet: stores.use_tracking
            try:
                local = Path(client.download_artifacts(run_id, path, tmp))
            except (MlflowException, OSError):  # not logged by this run: the next one may have it
                continue
            if local.suffix == ".npz":
                with np.load(local) as npz:
                    return {k: npz[k] for k in npz.files}
            return json.loads(local.read_text())
    return None
