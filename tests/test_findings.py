"""Specification of harness.analysis.findings: chance flags, verdicts that leave flagged arms out, expected trends."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from harness.analysis.findings import chance_flags, expectation_lines, verdicts
from harness.spec import Arm, Expectation, StudySpec

JITTER = [0.01, -0.02, 0.0, 0.015, -0.005]
SHUFFLED = [0.0, 0.015, -0.02, -0.005, 0.01]


def record(means: dict[str, float], comparisons=(), expected=(), jitter=None, n_classes=5):
    """A stand-in StudyRecord: each arm's test accuracies at `means` plus jitter, seeds 1..5."""
    arms = tuple(Arm(name, "sgd") for name in means)
    spec = StudySpec(name="s", question="?", arms=arms, search_space=None, comparisons=tuple(comparisons),
                     expected=tuple(expected))
    values = {name: {s: m + d for s, d in enumerate((jitter or {}).get(name, JITTER), 1)}
              for name, m in means.items()}
    fake = {name: SimpleNamespace(test_acc=lambda v=v: v) for name, v in values.items()}
    return SimpleNamespace(spec=spec, arms=fake, n_classes=n_classes, setting=lambda key: "6")


def test_an_arm_within_noise_of_chance_is_flagged_and_left_out_of_the_verdicts():
    r = record({"vgg-sgd": 0.22, "vgg-adam": 0.80, "lenet-sgd": 0.85, "lenet-adam": 0.9},
               comparisons=[("vgg-adam", "vgg-sgd"), ("lenet-adam", "lenet-sgd")])
    flags = chance_flags(r)
    assert list(flags) == ["vgg-sgd"] and "20.0% (chance, 5 classes)" in flags["vgg-sgd"]
    found = verdicts(r, flags)
    assert found.sentences[0] == "No verdict for vgg-adam vs vgg-sgd: vgg-sgd at chance level (see the validity flags)."
    assert found.family == 1 and "Holm" not in found.sentences[1]


def test_two_identical_arms_give_no_significant_difference():
    r = record({"a": 0.8, "b": 0.8}, comparisons=[("a", "b")], jitter={"b": SHUFFLED})
    (sentence,) = verdicts(r, {}).sentences
    assert sentence.startswith("At this budget (6 trials per arm, 5 seeds), no significant difference: a - b = ")


def test_an_expected_at_least_is_checked_per_arm():
    e = Expectation("AnB+ >= baseline (Yosinski et al. 2014)", "at_least", ("up", "same", "down", "base"))
    r = record({"up": 0.9, "same": 0.8, "down": 0.7, "base": 0.8}, expected=[e], jitter={"same": SHUFFLED})
    (line,) = expectation_lines(r, {}, {})
    assert line.startswith("AnB+ >= baseline (Yosinski et al. 2014): up - base = 10.0 points")
    assert "up - base = 10.0 points (95% CI 10.0 to 10.0): agrees" in line  # same seeds' jitter: no spread
    assert "down - base = -10.0 points (95% CI -10.0 to -10.0): runs against it" in line
    assert "same - base = 0.0 points (95% CI " in line and line.count("inconclusive") == 1


@pytest.mark.parametrize(("slope", "status"), [(-0.05, "agrees"), (0.05, "runs against it"), (0.0, "inconclusive")])
def test_an_expected_decrease_agrees_runs_against_or_is_inconclusive(slope, status):
    names = [f"AnB-{n}" for n in range(4)]
    r = record({name: 0.8 + slope * i for i, name in enumerate(names)},
               expected=[Expectation("AnB falls with n", "decreasing", tuple(names))])
    (line,) = expectation_lines(r, {}, {})
    assert line.startswith(f"AnB falls with n: {status}: slope ")


def test_an_arm_at_chance_is_left_out_of_a_trend_and_named():
    names = ["AnB-1", "AnB-2", "AnB-3"]
    r = record({"AnB-1": 0.9, "AnB-2": 0.8, "AnB-3": 0.2},
               expected=[Expectation("AnB falls with n", "decreasing", tuple(names))])
    (line,) = expectation_lines(r, chance_flags(r), {})
    assert "left out (at chance or unconfirmed): AnB-3" in line


def test_arms_expected_alike_agree_only_when_the_interval_lies_within_the_margin():
    e = Expectation("momentum 0.9 alike momentum 0 at equal effective lr (Li et al. 2020)", "alike",
                    ("close", "far", "m0"), margin=0.05)
    r = record({"close": 0.80, "far": 0.90, "m0": 0.80}, expected=[e], jitter={"close": SHUFFLED})
    (line,) = expectation_lines(r, {}, {})
    assert "close - m0 = 0.0 points" in line and "agrees (the interval lies within ±5 points)" in line
    assert "far - m0 = 10.0 points" in line and line.endswith("runs against it.")
