"""What a reader must weigh beside the verdicts: what each declared margin means in the seeds that tested it
(harness.inference.margins), and verdict runs whose records cannot both be true (a bug or a broken split, not a
result). Sentences and plain records for the report and its summary.json.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from harness.analysis.records import StudyRecord
from harness.analysis_plan import Equivalent, NonInferior
from harness.inference.decide import Decision
from harness.inference.failures import failed
from harness.inference.margins import margin_sds, shown_if_equal


def _pts(x: float) -> str:
    return f"{100 * x:.1f}"


def _share(p: float) -> str:
    """A probability as a percentage that never rounds to a certainty it is not."""
    return "over 99%" if p > 0.995 else "under 1%" if p < 0.005 else f"{100 * p:.0f}%"


# --- margins -----------------------------------------------------------------------------------------


def margin_facts(d: Decision) -> dict | None:
    """A non-inferiority or equivalence decision's margin in seed sds and P(shown | equal arms) at its own level and
    seeds (nan without a variance estimate), with the declared reason; None for the other kinds or no data."""
    c = d.declared
    if not isinstance(c, NonInferior | Equivalent) or d.estimate is None:
        return None
    return {"margin": c.margin, "margin_sds": margin_sds(c.margin, d.estimate),
            "shown_if_equal": shown_if_equal(c, d.estimate, d.confidence), "margin_reason": c.reason.strip()}


def margin_line(d: Decision) -> str | None:
    """What the margin of one non-inferiority or equivalence decision means, and why it is that size."""
    facts = margin_facts(d)
    if facts is None:
        return None
    c, e = d.declared, d.estimate
    reason = f"Why this margin: {facts['margin_reason']}" if facts["margin_reason"] else "No reason declared"
    head = f"{c.label} ({c.kind}): margin {_pts(c.margin)} points"
    if not np.isfinite(facts["shown_if_equal"]):
        return f"{head}; no seed sd to measure it by (fewer than 2 seeds). {reason}."
    one = "paired difference" if e.paired else "difference (unpaired)"
    sds = "more seed sds than any" if not np.isfinite(facts["margin_sds"]) else f"{facts['margin_sds']:.2f} seed sds"
    shown = "non-inferiority" if isinstance(c, NonInferior) else "equivalence"
    return (f"{head}, {sds} (one seed's {one} has sd {_pts(e.unit_sd)} points); were the arms equal, this test at "
            f"its level and {e.n} seeds would show {shown} in {_share(facts['shown_if_equal'])} of studies. {reason}.")


def margin_lines(decisions: list[Decision]) -> list[str]:
    return [line for d in decisions if (line := margin_line(d)) is not None]


# --- runs that cannot be ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ImpossibleRun:
    """A verdict run that trained by its validation accuracy, yet scored within the chance margin on test."""

    arm: str
    seed: int
    run_id: str | None
    test_acc: float
    val_acc: float
    chance: float

    def sentence(self, chance_margin: float) -> str:
        return (f"**Impossible run**: {self.arm}, seed {self.seed} (MLflow run `{self.run_id or 'not recorded'}`): "
                f"test accuracy {_pts(self.test_acc)}% is within {_pts(chance_margin)} points of chance "
                f"({_pts(self.chance)}%), while its validation accuracy is {_pts(self.val_acc)}%. A model that "
                "learned the task on validation cannot be at chance on a test split of the same task: this is a bug "
                "or a broken split (test labels or classes that differ from validation's), not a result. The "
                "verdicts count it as recorded; check it before trusting them.")


def impossible_runs(record: StudyRecord) -> list[ImpossibleRun]:
    """Counted verdict runs whose test accuracy is within the study's chance margin of chance (1 / classes) while
    their validation accuracy is not (the ledger's own test of a run that failed to train, which reads validation)."""
    margin, found = record.spec.chance_margin, []
    for name, arm in record.arms.items():
        for s in arm.verdict:
            if s.test_acc is None or s.val_acc is None or not s.classes or s.failed_to_train(margin):
                continue
            chance = 1 / s.classes
            if failed(s.test_acc, False, chance, margin):
                found.append(ImpossibleRun(name, s.seed, s.run_id, s.test_acc, s.val_acc, chance))
    return found
