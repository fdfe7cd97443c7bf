"""Workers and threads: on a CPU every worker is single-threaded whatever --workers says, so the same study gives
the same numbers slot by slot with one worker, auto, or N (a run's sums split over threads round another way)."""

import pytest

import harness.study
from harness.run import resources


@pytest.fixture
def eight_cores(monkeypatch):
    monkeypatch.setattr(resources, "usable_cores", lambda: 8)
    monkeypatch.setattr(resources, "memory_workers", lambda: 64)
    monkeypatch.setattr(resources, "visible_gpus", lambda: ())


def test_on_a_cpu_every_worker_count_runs_single_threaded_workers(eight_cores):
    assert [resources.plan_workers(n).threads for n in (1, 2, 3, "auto")] == [1, 1, 1, 1]
    assert resources.plan_workers("auto").workers == 8 and resources.plan_workers(3).workers == 3


def test_on_a_gpu_box_the_cores_are_shared_among_the_workers(eight_cores, monkeypatch):
    monkeypatch.setattr(resources, "visible_gpus", lambda: ("0", "1"))
    assert resources.plan_workers("auto").threads == 4 and resources.plan_workers(1).threads == 8


def test_one_worker_in_process_trains_with_one_thread_on_a_many_core_cpu(eight_cores, monkeypatch, tmp_path):
    """What `--workers 1` does: no launcher, the command is the worker, and torch gets one intra-op thread."""
    import torch

    seen = []
    monkeypatch.setattr(harness.study, "run_worker", lambda *args: seen.append(torch.get_num_threads()) or 0)
    before = torch.get_num_threads()
    try:
        assert harness.study.main(["sgd_vs_adam", "--workers", "1", "--root", str(tmp_path / "mlruns"),
                                   "--reports", str(tmp_path / "reports")]) == 0
    finally:
        torch.set_num_threads(before)
    assert seen == [1]
