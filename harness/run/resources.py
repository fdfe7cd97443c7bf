"""How many workers a study runs on this machine, and how many threads each: chosen for the work.

On a CPU the harness's models are small and gain little from intra-op threads, and lose everything when a core
is shared (OpenMP threads spin and wait on each other: LeNet-5 ran 4x slower with two threads beside two busy
processes, and 1.3x slower with one). So `auto` runs one single-threaded worker per usable core, trials side by
side, as many as memory holds; on a GPU box, one worker per GPU. On a CPU every worker is single-threaded
whatever `--workers` says: a slot's numbers depend on its thread count (floating-point sums split another way),
so one worker, `auto` and N workers give the same values slot by slot, on any CPU machine.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

WORKER_MEMORY = 1.5 * 2**30  # what one worker needs at most on the default study, with headroom (reports/bench/)


@dataclass(frozen=True)
class WorkerPlan:
    workers: int
    threads: int  # intra-op threads per worker
    gpus: tuple[str, ...] = ()  # CUDA_VISIBLE_DEVICES entries, worker i takes gpus[i % len(gpus)]

    def describe(self) -> str:
        gpus = f", {len(self.gpus)} GPUs" if self.gpus else ""
        return f"{self.workers} workers ({self.threads} CPU thread{'s' * (self.threads > 1)} each{gpus})"


def usable_cores() -> int:
    """The CPUs this process may run on (its affinity, as a container or `taskset` sets it), not the machine's."""
    return len(os.sched_getaffinity(0))


def visible_gpus() -> tuple[str, ...]:
    import torch

    if not torch.cuda.is_available():
        return ()
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    return tuple(visible.split(",")) if visible else tuple(str(i) for i in range(torch.cuda.device_count()))


def memory_workers() -> int:
    """How many workers the available memory holds."""
    import psutil

    return max(1, int(psutil.virtual_memory().available // WORKER_MEMORY))


def plan_workers(requested: int | str) -> WorkerPlan:
    """`auto`: one worker per GPU, else one single-threaded worker per usable core (as memory allows).
    A number: that many workers, the usable cores shared among them."""
    cores, gpus = usable_cores(), visible_gpus()
    if requested == "auto":
        workers = len(gpus) if gpus else min(cores, memory_workers())
        threads = max(1, cores // workers) if gpus else 1
        return WorkerPlan(max(1, workers), threads, gpus)
    workers = int(requested)
    fits = memory_workers()
    if workers > fits:  # each worker holds its own model, data and libraries: a thousand would exhaust memory
        raise ValueError(f"--workers {workers}: this machine's free memory holds about {fits} workers "
                         f"({WORKER_MEMORY / 2**30:.1f} GiB each); use --workers auto or at most {fits}")
    return WorkerPlan(workers, max(1, cores // workers) if gpus else 1, gpus)
