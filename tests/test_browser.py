"""MLflow in a real browser: the links a finished study prints, writes in its report and stores on each trial
(optuna-dashboard's `mlflow_run_url`) open the runs themselves in MLflow's model-training view, and the report
renders in MLflow's artifact viewer. Headless Chromium (Debian's package: `.ci/run` installs it where missing)
against `mlflow ui` serving the study's own stores, as a user would start it.

Without Chromium these tests skip, unless HARNESS_TEST_REQUIRE_SERVERS=1 (set by `.ci/run`): there it fails."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import mlflow
import optuna
import pytest

from harness.browse import LOCAL_UI
from harness.stores import Stores
from tests.test_end_to_end import NAME

pytestmark = pytest.mark.slow  # a whole study (the session's `finished`), `mlflow ui` and Chromium

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# Chromium's own calls home are refused on a closed network, many at a time: switch them off
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1600,1000", "--virtual-time-budget=20000"]
MLFLOW_NAME_COLUMN = 25  # characters the runs table shows of a run name before "..." (MLflow 3.17, seen)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ui(finished):
    """`mlflow ui` on the finished tiny study's SQLite store, on a free port; its base URL."""
    if CHROMIUM is None:
        if os.environ.get("HARNESS_TEST_REQUIRE_SERVERS") == "1":
            pytest.fail("chromium is not installed (.ci/run installs Debian's package)")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    port = _free_port()
    uri = Stores(finished / "mlruns").mlflow_uri
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    server = subprocess.Popen([sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host",
                               "127.0.0.1", "--port", str(port), "--workers", "1"], env=env, start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):
            try:
                urllib.request.urlopen(f"{base}/health", timeout=1)
                break
            except OSError:
                assert server.poll() is None, server.stderr.read().decode()[-2000:]
                time.sleep(0.25)
        yield base
    finally:
        os.killpg(server.pid, 9)  # its store is read-only here: nothing to shut down gracefully
        server.wait(30)


def _chromium(url: str, *how: str) -> str:
    with tempfile.TemporaryDirectory() as profile:  # a fresh browser: no state from an earlier visit
        done = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *how, url],
                              check=False, capture_output=True, text=True, timeout=120)
    return done.stdout


def page_text(url: str, expected: str) -> str:
    """The page's text once rendered; loaded again (up to three times) until `expected` is in it, since the app
    fetches its runs after the first paint."""
    for _ in range(3):
        html = _chromium(url, "--dump-dom")
        text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))
        if expected in text:
            break
    return text


def _local(url: str, base: str) -> str:
    """A link as written (for `mlflow ui` on its default port) pointed at the port this test serves on."""
    assert url.startswith(LOCAL_UI + "/#/experiments/"), url
    return base + url[len(LOCAL_UI):]


def _runs(finished: Path) -> list:
    mlflow.set_tracking_uri(Stores(finished / "mlruns").mlflow_uri)
    return mlflow.search_runs(experiment_names=[NAME], output_format="list")


def _report_links(finished: Path) -> dict[str, str]:
    text = (finished / "reports" / NAME / "README.md").read_text()
    return dict(re.findall(r"\[([^\]]+)\]\((http://[^)]+)\)", text))


MODEL_TRAINING = "Runs Models Traces"  # the model-training view's side menu; the GenAI view shows "Evaluation runs"


def test_the_reports_runs_link_lists_every_run_by_name_in_the_model_training_view(ui, finished):
    runs = _runs(finished)
    assert len(runs) < 100  # one page of MLflow's table: every name must show, no "Load more"
    url = _local(_report_links(finished)["every run by name"], ui)
    text = page_text(url, runs[0].info.run_name)
    assert MODEL_TRAINING in text and "Evaluation runs" not in text
    missing = [r.info.run_name for r in runs if r.info.run_name not in text]
    assert not missing, f"not in the runs table (collapsed under a parent?): {missing[:5]}"
    assert "Load more" not in text
    assert f"{len(runs)} matching runs" in text


def test_the_phase_links_rank_that_phase_only(ui, finished):
    links = _report_links(finished)
    search = [r.info.run_name for r in _runs(finished) if r.data.tags["phase"] == "search"]
    text = page_text(_local(links["the search trials by validation accuracy"], ui), search[0])
    assert all(name in text for name in search) and "Sort: best_val_acc" in text
    confirm = [r.info.run_name for r in _runs(finished) if r.data.tags["phase"] == "confirm"]
    assert f"{len(search)} matching runs" in text and not any(name in text for name in confirm)


def test_child_run_names_differ_within_what_the_runs_table_shows():
    from harness.run.objective import run_name

    names = [run_name(arm, trial, seed, (3, 2)) for arm in ("adam-unfrozen", "sgd-unfrozen", "discriminative")
             for trial in (5, 12, 123) for seed in (None, 3, 20, 1_000_001, 1_000_002)]
    assert len({n[:MLFLOW_NAME_COLUMN] for n in names}) == len(names)


def test_sorted_by_name_as_mlflow_sorts_text_the_seeds_and_trials_come_in_number_order():
    from harness.run.objective import name_digits, run_name
    from harness.study_file import load_study

    spec = load_study("sgd_vs_adam")  # seeds 1..10 or more, trials 0..4
    names = [run_name("sgd-frozen", trial, seed, name_digits(spec)) for trial in range(spec.n_trials)
             for seed in range(1, spec.seeds_cap + 1)]
    assert sorted(names) == names


def test_the_trial_link_optuna_dashboard_shows_opens_its_run_in_the_model_training_view(ui, finished):
    storage = Stores(finished / "mlruns").optuna_url
    trial = optuna.load_study(study_name=f"{NAME}/adam-frozen", storage=storage).trials[0]
    run = mlflow.get_run(trial.user_attrs["mlflow_run_id"])
    text = page_text(_local(trial.user_attrs["mlflow_run_url"], ui), run.info.run_name)
    assert run.info.run_name in text and run.info.run_id in text
    assert MODEL_TRAINING in text and "Evaluation runs" not in text


def test_the_report_renders_in_mlflows_artifact_viewer(ui, finished, tmp_path):
    from PIL import Image

    publisher = [r for r in _runs(finished) if r.data.tags["phase"] == "study"
                 and any(a.path == "report" for a in mlflow.MlflowClient().list_artifacts(r.info.run_id))]
    assert len(publisher) == 1
    run_id, eid = publisher[0].info.run_id, publisher[0].info.experiment_id
    viewer = f"{ui}/#/experiments/{eid}/runs/{run_id}/artifacts/report/report.html?workflowType=machine_learning"
    assert "mlflow-html-iframe" in _chromium(viewer, "--dump-dom")  # shown as a page, not as text
    shot = tmp_path / "viewer.png"
    for _ in range(3):  # taken again (as page_text loads again) when the app had not framed the page yet
        _chromium(viewer, f"--screenshot={shot}")
        frame = Image.open(shot).convert("L").crop((480, 250, 1150, 800))  # where the viewer puts the page
        dark = sum(frame.histogram()[:128]) / (frame.width * frame.height)
        if dark > 0.01:
            break
    assert dark > 0.01, f"the report's frame is blank ({dark:.4f} of it dark)"
    # the bytes the viewer frames (MLflow serves them as a download), rendered by Chromium: question and verdict
    page = tmp_path / "report.html"
    page.write_bytes(urllib.request.urlopen(f"{ui}/get-artifact?path=report/report.html&run_uuid={run_id}").read())
    text = page_text(page.as_uri(), "Verdict")
    assert "Does Adam fine-tune a pretrained CNN better than SGD" in text and "Verdict" in text
