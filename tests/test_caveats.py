"""Specification of harness.analysis.caveats: what each declared margin means in the seeds that tested it, and
verdict runs at chance on test but not on validation flagged by arm, seed and run id."""

from __future__ import annotations

import numpy as np
import pytest

from harness.analysis.caveats import impossible_runs, margin_facts, margin_lines
from harness.analysis.findings import findings
from harness.analysis_plan import Difference, Equivalent, NonInferior
from harness.inference.margins import shown_if_equal
from tests.test_findings import JITTER, SHUFFLED, record

REASON = "a point is the smallest gap a practitioner would switch optimizers for"


def _pair(plan, **settings):
    return record({"adam": [0.9 + j for j in SHUFFLED], "sgd": [0.9 + j for j in JITTER]}, plan=plan, **settings)


def test_a_margin_line_gives_the_margin_in_seed_sds_the_chance_of_shown_for_equal_arms_and_the_reason():
    found = findings(_pair([NonInferior("adam", "sgd", 0.02, reason=REASON), Difference("adam", "sgd")]))
    (line,) = margin_lines(found.decisions)  # the difference has no margin
    sd = np.std(np.subtract(SHUFFLED, JITTER), ddof=1)
    assert line.startswith(f"adam - sgd (non-inferiority): margin 2.0 points, {0.02 / sd:.2f} seed sds (one seed's "
                           f"paired difference has sd {100 * sd:.1f} points)")
    d = found.decisions[0]
    p = shown_if_equal(d.declared, d.estimate, d.confidence)
    assert f"would show non-inferiority in {100 * p:.0f}% of studies" in line
    assert line.endswith(f"Why this margin: {REASON}.")


def test_a_margin_without_a_reason_says_so():
    found = findings(_pair([Equivalent("adam", "sgd", 0.02)]))
    (line,) = margin_lines(found.decisions)
    assert "would show equivalence in" in line and line.endswith("No reason declared.")
    assert margin_facts(found.decisions[0])["margin_reason"] == ""


def test_a_margin_tested_on_one_seed_has_no_sd_to_be_measured_by():
    found = findings(record({"adam": [0.9], "sgd": [0.88]}, plan=[NonInferior("adam", "sgd", 0.02, reason=REASON)]))
    (line,) = margin_lines(found.decisions)
    assert "no seed sd to measure it by" in line and REASON in line


def test_a_run_at_chance_on_test_but_not_on_validation_is_flagged_by_arm_seed_and_run_id():
    r = record({"adam": [0.9, 0.21, 0.88], "sgd": [0.85, 0.86, 0.22]},
               val={"adam": [0.9, 0.91, 0.88], "sgd": [0.85, 0.86, 0.21]}, plan=[Difference("adam", "sgd")])
    (run,) = impossible_runs(r)  # sgd's seed 3 failed on validation too: a failure to train, not a broken split
    assert (run.arm, run.seed, run.run_id) == ("adam", 2, "run-adam-2")
    assert run.test_acc == pytest.approx(0.21) and run.chance == pytest.approx(0.2)
    text = run.sentence(r.spec.chance_margin)
    assert text.startswith("**Impossible run**: adam, seed 2 (MLflow run `run-adam-2`): test accuracy 21.0% is "
                           "within 5.0 points of chance (20.0%), while its validation accuracy is 91.0%")
    assert "bug or a broken split" in text


def test_the_chance_margin_is_the_studys_own():
    test, val = {"adam": [0.9, 0.28], "sgd": [0.85, 0.86]}, {"adam": [0.9, 0.91], "sgd": [0.85, 0.86]}
    assert impossible_runs(record(test, val=val)) == []  # 8 points above chance: outside the default 5
    (run,) = impossible_runs(record(test, val=val, chance_margin=0.1))
    assert (run.arm, run.seed) == ("adam", 2)


def test_a_diverged_run_is_a_failure_not_an_impossible_run():
    r = record({"adam": [0.0, 0.9], "sgd": [0.85, 0.86]}, diverged={"adam": [True, False]})
    assert impossible_runs(r) == []
