"""The bench's trials as a study runs them by default (`--workers auto`): one single-threaded worker per usable
core, forked from the process that imported everything, each taking the next trial, so trials run side by side.
This is how the harness is meant to beat a script that runs one trial at a time, so it is what the bench's
headline ratios compare."""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable, Sequence

from harness.run.launch import close_connections, forked_child
from harness.run.resources import WorkerPlan, plan_workers

_trials: Sequence[Callable[[], None]] = ()  # set before the fork: the workers inherit them


def _start(threads: int) -> None:
    """A forked worker, as `harness.run.launch` makes them (its own id and connections), with its threads."""
    import torch

    forked_child()
    torch.set_num_threads(threads)


def _run(i: int) -> None:
    _trials[i]()


def _ready(_: int) -> None:
    time.sleep(0.05)  # long enough that every worker takes one: all forked and set up before the clock starts


def side_by_side(trials: Sequence[Callable[[], None]], plan: WorkerPlan | None = None) -> tuple[float, WorkerPlan]:
    """Run every one of `trials` once across `plan`'s workers (default: what `--workers auto` picks here), each
    worker taking the next; the wall time for all of them. The workers start before the clock does: a study
    starts them once (that is in the default study's wall time), not once per trial."""
    global _trials
    plan = plan or plan_workers("auto")
    _trials = trials
    close_connections(close=True)  # SQLite must not see a connection cross a fork
    with multiprocessing.get_context("fork").Pool(plan.workers, initializer=_start, initargs=(plan.threads,)) as pool:
        pool.map(_ready, range(plan.workers), chunksize=1)
        start = time.perf_counter()
        pool.map(_run, range(len(trials)), chunksize=1)
        return time.perf_counter() - start, plan
