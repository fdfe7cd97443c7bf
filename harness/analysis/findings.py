"""What a study's records support: validity flags (arms at chance), verdicts on the study's comparisons, and
whether the result agrees with the trends the study expects. Sentences for the report, from the numbers.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from harness.analysis.records import StudyRecord
from harness.analysis.stats import (
    ALPHA,
    Comparison,
    above_chance,
    compare,
    compare_all,
    interval_text,
    trend,
    verdict,
)
from harness.spec import Expectation


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def chance_flags(record: StudyRecord) -> dict[str, str]:
    """arm -> why it is flagged: its confirmation test accuracy is not significantly above chance (1 / classes)
    plus the study's chance_margin. Flagged arms are left out of verdicts and expectations."""
    n_classes = record.n_classes
    if not n_classes:
        return {}
    chance, margin = 1 / n_classes, record.spec.chance_margin
    flags = {}
    for name, arm in record.arms.items():
        values = list(arm.test_acc().values())
        if values and not above_chance(values, chance, margin):
            flags[name] = (f"{name} may not have learned the task at this budget: its test accuracy, "
                           f"{_pct(np.mean(values))}% over {len(values)} seeds, is not significantly above "
                           f"{_pct(chance)}% (chance, {n_classes} classes) + {_pct(margin)} points; it is left "
                           "out of the verdicts and expected trends")
    return flags


def budget(record: StudyRecord, c: Comparison) -> str:
    return f"{record.setting('n_trials')} trials per arm, {min(c.n_a, c.n_b)} seeds"


@dataclass
class Verdicts:
    sentences: list[str]
    comparisons: dict[tuple[str, str], Comparison]  # the family Holm's correction ran over

    @property
    def family(self) -> int:
        return len(self.comparisons)


def verdicts(record: StudyRecord, flags: dict[str, str] | None = None) -> Verdicts:
    """One sentence per pair (spec.comparisons, else every pair) on confirmation test accuracy, a - b.

    Pairs with an arm at chance or without confirmation runs get no verdict and are not in the family."""
    flags = chance_flags(record) if flags is None else flags
    pairs = list(record.spec.comparisons) or list(itertools.combinations(record.arms, 2))
    values = {name: arm.test_acc() for name, arm in record.arms.items()}
    ready = [(a, b) for a, b in pairs if values[a] and values[b] and a not in flags and b not in flags]
    done = {(c.a, c.b): c for c in compare_all(ready, values)} if ready else {}
    lines = []
    for a, b in pairs:
        if (a, b) in done:
            lines.append(verdict(done[(a, b)], budget(record, done[(a, b)])))
        elif a in flags or b in flags:
            lines.append(f"No verdict for {a} vs {b}: " + " and ".join(x for x in (a, b) if x in flags)
                         + " at chance level (see the validity flags).")
        else:
            missing = " and ".join(x for x in (a, b) if not values[x])
            lines.append(f"No verdict for {a} vs {b}: {missing} has no confirmation runs.")
    return Verdicts(lines, done)


def _direction(low: float, high: float, expected_sign: int) -> str:
    """From an interval whose exclusion of zero is its test's significance (harness.analysis.stats guarantees it)."""
    if low > 0 or high < 0:
        return "agrees" if (1 if low > 0 else -1) == expected_sign else "runs against it"
    return "inconclusive"


def _alike(c: Comparison, margin: float) -> str:
    """Equivalence: the whole interval within +-margin agrees; a significant difference runs against it."""
    if -margin <= c.ci_low and c.ci_high <= margin:
        return f"agrees (the interval lies within ±{100 * margin:g} points)"
    return "runs against it" if c.significant else f"inconclusive (the interval reaches beyond ±{100 * margin:g} points)"


def _at_least(record: StudyRecord, e: Expectation, flags: dict[str, str],
              family: dict[tuple[str, str], Comparison]) -> list[str]:
    reference, parts = e.arms[-1], []
    for a in e.arms[:-1]:
        if a in flags or reference in flags:
            at_chance = " and ".join(x for x in (a, reference) if x in flags)
            parts.append(f"{a} vs {reference}: inconclusive ({at_chance} at chance)")
            continue
        va, vb = record.arms[a].test_acc(), record.arms[reference].test_acc()
        if not va or not vb:
            parts.append(f"{a}: no confirmation runs")
            continue
        c = family.get((a, reference)) or compare(a, va, reference, vb)  # the verdict's own test where it has one
        interval = interval_text(c, 100 * c.ci_low, 100 * c.ci_high)
        status = _direction(c.ci_low, c.ci_high, 1) if e.kind == "at_least" else _alike(c, e.margin)
        parts.append(f"{a} - {reference} = {100 * c.diff:.1f} points ({interval}): {status}")
    return parts


def _along(record: StudyRecord, e: Expectation, flags: dict[str, str]) -> list[str]:
    arms = [a for a in e.arms if a not in flags and record.arms[a].test_acc()]
    x = [i for i, a in enumerate(e.arms) if a in arms for _ in record.arms[a].test_acc()]
    y = [v for a in arms for v in record.arms[a].test_acc().values()]
    t = trend(x, y)
    left_out = [a for a in e.arms if a not in arms]
    note = f"; left out (at chance or unconfirmed): {', '.join(left_out)}" if left_out else ""
    if not np.isfinite(t.slope):
        return [f"inconclusive: too few confirmed arms or seeds{note}"]
    sign = -1 if e.kind == "decreasing" else 1
    status = _direction(t.low, t.high, sign) if t.p_value < ALPHA else "inconclusive"
    return [(f"{status}: slope {100 * t.slope:+.1f} points per step along {', '.join(arms)} "
            f"(95% CI {100 * t.low:+.1f} to {100 * t.high:+.1f}; {t.n} runs){note}")]


def expectation_lines(record: StudyRecord, flags: dict[str, str],
                      family: dict[tuple[str, str], Comparison]) -> list[str]:
    """One line per expected trend: where this study's result agrees, runs against it, or is inconclusive."""
    lines = []
    for e in record.spec.expected:
        pairwise = e.kind in ("at_least", "alike")
        parts = _at_least(record, e, flags, family) if pairwise else _along(record, e, flags)
        lines.append(f"{e.claim}: " + "; ".join(parts) + ".")
    return lines
