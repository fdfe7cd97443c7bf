"""What a worker prints: a line per slot, and a short summary in the report's terms when it is done."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from harness.browse import browse
from harness.run import queue
from harness.run.parent import ParentRun
from harness.run.slots import confirm_budget
from harness.run.work import Job, Work
from harness.schema import Outcome, StudyAttr, counts
from harness.stores import Stores

COUNT_SECONDS = 5.0  # how often a worker re-counts the study's finished slots (a read of every trial of every study)
listeners: list[Callable[[int, int], None]] = []  # told (done, total) after each slot: a notebook's progress bar


@dataclass
class Count:
    """The study's finished slots across all workers, and its planned total: a slot line's `[done/total]`. The
    count is read from the stores every few seconds and the worker's own slots are added in between, so two
    workers' lines read as one count; the total is every arm's search budget and confirmation slots as the
    sequential rule stands (it grows only when the rule adds a batch, which a look line announces)."""

    work: Work
    done: int = 0
    read_at: float = -math.inf
    first: tuple[float, int] | None = None  # (when, done) at the first read: the rate the ETA extrapolates

    def total(self) -> int:
        spec = self.work.spec
        return sum(spec.n_trials + self.work.budgets.get(a.name, confirm_budget(spec)) for a in spec.units())

    def step(self) -> tuple[int, int, float | None]:
        """After one of this worker's slots: (done, total, seconds left or None while the rate is unknown)."""
        now = time.monotonic()
        if now - self.read_at >= COUNT_SECONDS:
            self.done = sum(counts(t) for study in self.work.studies()
                            for t in study.get_trials(deepcopy=False))
            self.read_at = now
            self.first = self.first or (now, self.done - 1)
        else:
            self.done += 1
        total = max(self.total(), self.done)
        when, then = self.first
        rate = (self.done - then) / (now - when) if now > when and self.done - then >= 3 else None
        return self.done, total, (total - self.done) / rate if rate else None


def eta(seconds: float | None) -> str:
    if seconds is None:
        return ""
    minutes, secs = divmod(round(seconds), 60)
    return f" ETA {minutes} min {secs:02d} s" if minutes else f" ETA {secs} s"


_counts: dict[int, Count] = {}


def slot_line(job: Job, outcome: Outcome, value: float | None, seconds: float, work: Work) -> None:
    """One line per slot: the study's slots done of its total across all workers, an ETA, then the slot (its
    place among its arm's search trials or confirmation seeds) and its result."""
    count = _counts.setdefault(id(work), Count(work))
    done, total, left = count.step()
    for listener in listeners:
        listener(done, total)
    text = f"val acc {100 * value:.1f}%" if outcome is Outcome.COMPLETE and value is not None else outcome.value
    print(f"[{done}/{total}{eta(left)}] {job.arm.name} {job.kind} {job.place}/{max(job.of, job.place)}, "
          f"{job.label()}: {text} ({seconds:.1f} s)", flush=True)


def nothing_to_do(name: str, root: Path, report: Path, state: str) -> None:
    """The one line of a rerun with nothing left to run (`state`: the report "up to date" or "rebuilt")."""
    print(f"nothing to do: every trial and confirmation seed of {name} is recorded in {root}; report {state}: "
          f"{report}")


def summary(work: Work, report: Path, parent: ParentRun, stores: Stores, jobs: int) -> None:
    """Each arm's search and its chosen trial, then the verdicts the report wrote (printed by the worker that
    wrote it: another may see an older one, from a checkout or another machine)."""
    width = max(18, *(len(name) for name in work.search))
    print(f"\n{'arm':{width}s} {'complete':>8s} {'pruned':>6s} {'failed':>6s}  chosen trial (mean val acc over seeds)")
    for name, study in work.search.items():
        states = [t.state.name for t in study.trials if queue.counts(t)]
        chosen = study.user_attrs.get(StudyAttr.SELECTED_TRIAL)
        means = study.user_attrs.get(StudyAttr.CONFIRM_VAL_ACC, {})
        text = f"#{chosen} ({100 * means[str(chosen)]:.1f}%)" if chosen is not None else "-"
        counts = f"{states.count('COMPLETE'):8d} {states.count('PRUNED'):6d} {states.count('FAIL'):6d}"
        print(f"{name:{width}s} {counts}  {text}")
    summary_file = report.with_name("summary.json")
    if summary_file.exists():
        print("\n" + "\n".join(json.loads(summary_file.read_text())["verdicts"]))
    where = f"MLflow parent run: {parent.run_id} " if parent.run_id else ""
    ui = browse(stores.mlflow_uri)
    opened = f"{ui.command}, then open {ui.runs(parent.experiment_id)}" if ui.url else ui.command
    print(f"\nthis worker ran {jobs} runs; report: {report}\n{where}(browse: {opened})")
