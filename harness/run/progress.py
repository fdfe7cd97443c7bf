"""What a worker prints: a line per slot, and a short summary in the report's terms when it is done."""

from __future__ import annotations

import json
from pathlib import Path

from harness.browse import browse
from harness.run import queue
from harness.run.parent import ParentRun
from harness.run.work import Job, Work
from harness.schema import Outcome, StudyAttr
from harness.stores import Stores


def slot_line(job: Job, outcome: Outcome, value: float | None, seconds: float) -> None:
    """One line per slot, counted from the stores per arm and phase, so the lines of many workers read as one
    count (a confirmation's total grows as the sequential rule adds seeds)."""
    text = f"val acc {100 * value:.1f}%" if outcome is Outcome.COMPLETE and value is not None else outcome.value
    print(f"[{job.arm.name} {job.kind} {job.place}/{max(job.of, job.place)}] {job.label()}: {text} "
          f"({seconds:.1f} s)", flush=True)


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
