"""The report's Answer: each declared comparison as a sentence a student can act on, degenerate cases said as
what they are, from decisions made by the report's own decide_all."""

from harness.analysis_plan import Difference, NonInferior
from harness.inference.decide import decide_all
from harness.reporting.answer import plain


def _decide(comparison, a, b):
    (d,) = decide_all([comparison], {"a": dict(enumerate(a)), "b": dict(enumerate(b))}, 0.01, power=False)
    return d


def test_a_decided_difference_names_the_winner_and_its_margin_with_the_interval():
    text = plain(_decide(Difference("a", "b"), [0.90, 0.91, 0.92, 0.905, 0.915], [0.80, 0.82, 0.81, 0.805, 0.815]))
    assert text.startswith("a beats b by 10.0 points (95% CI +") and text.endswith(").")
    flipped = plain(_decide(Difference("a", "b"), [0.80, 0.82, 0.81, 0.805, 0.815], [0.90, 0.91, 0.92, 0.905, 0.915]))
    assert flipped.startswith("b beats a by 10.0 points")


def test_an_undecided_difference_says_no_clear_difference_and_non_inferiority_names_its_margin():
    assert plain(_decide(Difference("a", "b"), [0.90, 0.80, 0.85], [0.86, 0.84, 0.83])).startswith(
        "a vs b: no clear difference (")
    shown = plain(_decide(NonInferior("a", "b", margin=0.05), [0.90, 0.91, 0.92, 0.905], [0.90, 0.905, 0.915, 0.9]))
    assert shown.startswith("a is no worse than b within 5.0 points (")


def test_identical_arms_and_hopelessly_few_seeds_are_said_as_what_they_are():
    same = plain(_decide(Difference("a", "b"), [0.9, 0.8, 0.85], [0.9, 0.8, 0.85]))
    assert same == "a - b: the arms gave identical results on every seed: no difference to test."
    wide = plain(_decide(Difference("a", "b"), [0.9, 0.2], [0.5, 0.6]))
    assert wide == "a - b: too few seeds to say (the interval spans every possible accuracy)."
