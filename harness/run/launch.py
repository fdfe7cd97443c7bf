"""Starting a study's workers on this machine: forked from the command that checked everything on a CPU (no
second import of torch and the rest in each worker), fresh interpreters on a GPU box (CUDA cannot be used in a
forked child); and waiting for them. The one speed measure the harness keeps in how it runs (reports/bench/)."""

from __future__ import annotations

import gc
import multiprocessing
import os
import subprocess
import sys
from collections.abc import Callable
from typing import Any

from harness.run.resources import WorkerPlan


def launch_workers(argv: list[str], plan: WorkerPlan, main: Callable[[list[str]], int]) -> list[Any]:
    """Start `plan.workers` copies of this command as worker processes sharing the stores, each with its
    threads and, on a GPU box, GPU i mod the number of GPUs for worker i.

    On a CPU the workers are forked from this process, which has imported and checked everything already: a
    worker starts in a fraction of a second instead of paying the imports again. A GPU box
    starts fresh interpreters instead, since CUDA cannot be used in a forked child."""
    rest = [a for i, a in enumerate(argv) if a != "--workers" and (i == 0 or argv[i - 1] != "--workers")
            and not a.startswith("--workers=")]
    threads = str(plan.threads)
    worker_argv = [*rest, "--workers", "1", "--threads", threads]
    fork = not plan.gpus and "fork" in multiprocessing.get_all_start_methods()
    if fork:
        close_connections(close=True)  # SQLite must not see a connection cross a fork, even one left unused
    procs: list[Any] = []
    for i in range(plan.workers):
        if fork:
            procs.append(multiprocessing.get_context("fork").Process(target=_forked_worker, args=(main, worker_argv)))
            procs[-1].start()
            continue
        # OpenMP's pools are sized at import: set them before the child starts
        env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
        if plan.gpus:
            env["CUDA_VISIBLE_DEVICES"] = plan.gpus[i % len(plan.gpus)]
        procs.append(subprocess.Popen([sys.executable, "-m", "harness.study", *worker_argv], env=env))
    print(f"started {plan.describe()}", flush=True)
    return procs


def close_connections(close: bool) -> None:
    """Every SQLAlchemy engine's pooled connections dropped: closed (`close`, in the process that opened them),
    or forgotten (in a forked child: SQLAlchemy's recipe, the parent's own left alone). Engines no longer
    referenced but not yet collected are found too, without a collection."""
    import warnings

    import sqlalchemy

    with warnings.catch_warnings():  # looking at every object touches deprecated module attributes
        warnings.simplefilter("ignore")
        engines = [o for o in gc.get_objects() if isinstance(o, sqlalchemy.engine.Engine)]
    for engine in engines:
        engine.dispose(close=close)


def forked_child() -> None:
    """In a forked child: nothing of the parent's connections or identity carries over."""
    from harness.run.queue import worker_id

    worker_id.cache_clear()  # the worker's id holds its own pid
    close_connections(close=False)


def _forked_worker(main: Callable[[list[str]], int], argv: list[str]) -> None:
    forked_child()
    sys.exit(main(argv))


def wait_for(procs: list[Any]) -> int:
    """Wait for every worker (a forked process or a fresh interpreter); the worst exit status."""
    codes = []
    for proc in procs:
        while True:
            try:
                if isinstance(proc, subprocess.Popen):
                    codes.append(proc.wait())
                else:
                    proc.join()
                    codes.append(proc.exitcode)
                break
            except KeyboardInterrupt:  # the workers got the Ctrl-C too: wait for them to record it
                continue
    return max(codes, key=lambda c: (c != 0, abs(c)))
