"""Same numbers whatever the worker count: on a CPU every worker trains with one intra-op thread, so one worker,
`--workers auto` (and N workers) give every slot the same validation and test accuracy (each in its own fresh root;
the study prunes nothing, since the median pruner compares a trial with the trials finished when it began, which
depends on the worker count by design: docs/workers.md)."""

from __future__ import annotations

import subprocess

import pytest

from harness import ledger
from harness.run.resources import plan_workers
from harness.stores import open_storage
from harness.study_file import load_study
from tests.test_workers import REPO, Tiny


def slot_values(tiny: Tiny) -> dict[tuple, tuple]:
    """Every counted slot's values, read as the report reads them (the ledger), by its identity: arm, phase,
    search slot or (search trial, seed)."""
    spec = load_study(tiny.name, tiny.studies)
    values = {}
    for arm, record in ledger.read(spec, open_storage(tiny.stores)).items():
        for slot in record.search:
            values[(arm, "search", slot.trial.user_attrs["slot"])] = (slot.val_acc,)
        for slot in record.confirm:
            if slot.counted:
                values[(arm, "confirm", slot.search_trial, slot.seed)] = (slot.val_acc, slot.test_acc)
    return values


@pytest.mark.slow
def test_one_worker_auto_and_n_workers_give_every_slot_the_same_values(tmp_path):
    counts = ["1", "auto"]  # auto: one worker per core (3 workers are in the closing note's census)
    assert plan_workers("auto").workers > 1, "on one core auto is one worker: nothing to compare"
    runs = {}
    for count in counts:
        tiny = Tiny(tmp_path / f"workers-{count}")
        done = subprocess.run(tiny.args("--workers", count), cwd=REPO, capture_output=True, text=True, timeout=600,
                              check=False)
        assert done.returncode == 0, done.stdout + done.stderr
        runs[count] = slot_values(tiny)
    one = runs["1"]
    assert len(one) == 2 * 4 + 2 * 2 and all(v[0] is not None for v in one.values())  # 2 arms: 4 trials, 2 seeds
    for count in counts[1:]:
        differ = {k: (one[k], runs[count].get(k)) for k in one.keys() | runs[count].keys()
                  if one.get(k) != runs[count].get(k)}
        assert not differ, f"--workers {count} differs from --workers 1 at {differ}"
