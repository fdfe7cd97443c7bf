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

EX_TEMPFAIL = 75  # a worker stopped by an outage or a full disk: the same command carries on later
_TO_COMMAND: Any = None  # in a forked worker: where its last word goes, for the command to say once for all


def tell_stopped(line: str, gist: str) -> None:
    """A worker stopped (an outage, a full disk, Ctrl-C): its line, printed once for all the workers that stop
    for the same reason (`gist`), by the command that forked them (else by the worker)."""
    if _TO_COMMAND is None:
        print(line, file=sys.stderr, flush=True)
    else:
        _TO_COMMAND.put(("stopped", gist, line))


def tell_finished() -> None:
    """A worker saw the study done and its report written from these records: another worker's stop (75)
    leaves nothing to rerun."""
    if _TO_COMMAND is not None:
        _TO_COMMAND.put(("finished", "", ""))


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
    global _TO_COMMAND
    fork = not plan.gpus and "fork" in multiprocessing.get_all_start_methods()
    procs = Workers()
    try:
        if fork:
            close_connections(close=True)  # SQLite must not see a connection cross a fork, even one left unused
            _TO_COMMAND = multiprocessing.get_context("fork").SimpleQueue()
        for i in range(plan.workers):
            if fork:
                procs.append(multiprocessing.get_context("fork").Process(target=_forked_worker,
                                                                         args=(main, worker_argv)))
                procs[-1].start()
                continue
            # OpenMP's pools are sized at import: set them before the child starts
            env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
            if plan.gpus:
                env["CUDA_VISIBLE_DEVICES"] = plan.gpus[i % len(plan.gpus)]
            procs.append(subprocess.Popen([sys.executable, "-m", "harness.study", *worker_argv], env=env))
    except KeyboardInterrupt:  # the workers started so far got it too: wait_for waits for them to record it
        procs.interrupted = True
        return procs
    print(f"started {plan.describe()}", flush=True)
    return procs


class Workers(list):
    """The worker processes a command started (a forked process or a fresh interpreter each), and whether a
    Ctrl-C came while they were being started."""

    interrupted = False


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
    try:
        forked_child()
        code = main(argv)
    except KeyboardInterrupt:  # before the worker could take it (importing what it runs): nothing of its written
        tell_stopped("\ninterrupted while the workers started; rerun the same command to start", "interrupted")
        code = 130
    sys.exit(code)


def wait_for(procs: list[Any]) -> int:
    """Wait for every worker (a forked process or a fresh interpreter); the worst exit status. Forked workers'
    stop lines are printed once for all that stop for the same reason; and a stop (75) is no failure when
    another worker then finished the study and its report: nothing is left to rerun."""
    global _TO_COMMAND
    heard, said, finished = _TO_COMMAND, set(), False

    def hear() -> None:
        nonlocal finished
        while heard is not None and not heard.empty():
            kind, gist, line = heard.get()
            finished |= kind == "finished"
            if kind == "stopped" and gist not in said:
                said.add(gist)
                print(line, file=sys.stderr, flush=True)

    codes = []
    for proc in procs:
        while True:
            try:
                if isinstance(proc, subprocess.Popen):
                    codes.append(proc.wait())
                    break
                proc.join(timeout=0.2)
                hear()
                if proc.exitcode is not None:
                    codes.append(proc.exitcode)
                    break
            except KeyboardInterrupt:  # the workers got the Ctrl-C too: wait for them to record it
                continue
    hear()
    _TO_COMMAND = None  # this process may run a worker itself next (a suite's next workload)
    if getattr(procs, "interrupted", False):
        print("\ninterrupted while the workers were started; rerun the same command to resume", file=sys.stderr)
        codes.append(130)
    if finished and EX_TEMPFAIL in codes and set(codes) <= {0, EX_TEMPFAIL}:
        print("the other workers finished the study and its report after a worker stopped: nothing is left to "
              "rerun", flush=True)
        return 0
    return max(codes, key=lambda c: (c != 0, abs(c)), default=130)
