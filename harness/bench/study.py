"""The default study timed as a user runs it, for `python -m harness.bench`: from a fresh store, quiet and beside
a competing load (one busy process per usable core, started and stopped here), with 1 or 2 workers, and the
report rebuilt from its stores."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the checkout: harness/bench/study.py


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def workers_speedup(root: Path) -> dict:
    """The default study's wall time with --workers 2 over --workers 1, each from a fresh store."""
    one = default_study_seconds(("--workers", "1"), root / "one-worker")
    two = default_study_seconds(("--workers", "2"), root / "two-workers")
    return {"workers_1_seconds": one, "workers_2_seconds": two, "workers_2_over_1": two / one}


def _timed(command: list[str]) -> float:
    say(" ".join(command[1:]))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    start = time.perf_counter()
    subprocess.run(command, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def default_study_seconds(args: tuple[str, ...], root: Path) -> float:
    """`python -m harness.study sgd_vs_adam` from a fresh store, wall time as a user sees it."""
    return _timed([sys.executable, "-m", "harness.study", "sgd_vs_adam", "--root", str(root / "study-runs"),
                   "--reports", str(root / "study-reports"), *args])


def report_seconds(root: Path) -> float:
    """`python -m harness.report sgd_vs_adam` on the default study's stores: a rebuild as a user runs it."""
    return _timed([sys.executable, "-m", "harness.report", "sgd_vs_adam", "--root", str(root / "study-runs"),
                   "--reports", str(root / "rebuilt-reports")])


@contextlib.contextmanager
def competing_load() -> Iterator[int]:
    """One busy process per usable core, as on a shared machine; stopped however the block ends."""
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in os.sched_getaffinity(0)]
    try:
        yield len(busy)
    finally:
        for proc in busy:
            proc.kill()
            proc.wait()


def under_load(args: tuple[str, ...], root: Path, quiet: float) -> dict:
    with competing_load() as n:
        loaded = default_study_seconds(args, root / "under-load")
    return {"default_study_under_load_seconds": loaded, "default_study_under_load_over_quiet": loaded / quiet,
            "competing_processes": n}
