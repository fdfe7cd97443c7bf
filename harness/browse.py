"""Links into the MLflow UI, one builder for all of them (the CLI's last line, the report, each trial's
`mlflow_run_url` attribute that optuna-dashboard shows), so each opens the same view in a fresh browser.

What MLflow 3.17's UI does with a plain experiment link, seen in headless Chromium: it opens the GenAI
"Overview" (traces, an assistant) whatever the experiment's kind tag says, and a run link opens as an
"evaluation run"; `workflowType=machine_learning` in the link's query opens the model-training view instead.
Its runs table sorted by creation time nests children under their (collapsed) parent runs, so a study shows
one row per worker over a "Load more" button; any other sort, or a search filter with it, lists the runs
themselves. So the links sort by run name (arm, trial, seed together) or by a metric.

>>> ui = browse("sqlite:///mlruns/mlflow.db")
>>> ui.runs("1")
'http://127.0.0.1:5000/#/experiments/1/runs?workflowType=machine_learning&orderByKey=tags.%60mlflow.runName%60&orderByAsc=true'
>>> ui.run("1", "abc")
'http://127.0.0.1:5000/#/experiments/1/runs/abc?workflowType=machine_learning'
>>> browse("postgresql://u@db/mlflow").url is None  # a database store: no UI address known
True
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote, urlencode

from harness.stores import parse_url

LOCAL_UI = "http://127.0.0.1:5000"  # where `mlflow ui` serves by default (its command below says so)
ui_port = 5000  # the port the links and the `mlflow ui` command name: --ui-port sets it for the whole process
ML_VIEW = {"workflowType": "machine_learning"}  # MLflow 3's query for the model-training (runs) view
BY_NAME = "tags.`mlflow.runName`"  # the UI's own key for "Sort: Run Name"


@dataclass(frozen=True)
class Browse:
    """How a reader opens the runs: a UI base URL (None: no links) and the command that serves it."""

    url: str | None
    command: str

    def runs(self, eid: str, phase: str | None = None, metric: str | None = None) -> str | None:
        """The experiment's runs table, flat: every run by name, or one phase's runs best `metric` first."""
        if self.url is None:
            return None
        query = dict(ML_VIEW)
        if phase:  # ranked by a metric: only the runs that have it (a selection seed has no test accuracy)
            query["searchFilter"] = f"tags.phase = '{phase}'" + (f" and metrics.{metric} >= 0" if metric else "")
        query.update(orderByKey=f"metrics.`{metric}`" if metric else BY_NAME,
                     orderByAsc="false" if metric else "true")
        return f"{self.url}/#/experiments/{eid}/runs?{urlencode(query, quote_via=quote)}"

    def run(self, eid: str, run_id: str) -> str | None:
        """One run's page, in the model-training view."""
        if self.url is None:
            return None
        return f"{self.url}/#/experiments/{eid}/runs/{run_id}?{urlencode(ML_VIEW)}"


def browse(mlflow_uri: str, ui_url: str | None = None) -> Browse:
    """Links follow the tracking store in use: an MLflow server's own URL; a local SQLite store through
    `mlflow ui` on its default port, named in the command; any other store (a database) only with an explicit
    `ui_url`."""
    if ui_url:
        return Browse(ui_url.rstrip("/"), f"open {ui_url}")
    kind = parse_url(mlflow_uri).kind
    if kind == "http":
        return Browse(mlflow_uri.rstrip("/"), f"open {mlflow_uri}")
    command = f"mlflow ui --backend-store-uri {mlflow_uri} --port {ui_port}"
    local = f"http://127.0.0.1:{ui_port}"
    return Browse(local if kind in ("sqlite", "file") or "://" not in mlflow_uri else None, command)
