"""A study's declared analysis plan: the family of comparisons its report tests, fixed in the study file before
any run. Each comparison has a kind, and the report tests exactly the declared family, Holm-corrected over it;
no flag, filter or result removes one.

- `Difference(a, b)`: is a - b different from 0? (two-sided)
- `NonInferior(a, b, margin)`: is a at least b - margin? ("a >= b", "a is not worse than b")
- `Equivalent(a, b, margin)`: is |a - b| within the margin? (TOST)
- `Interaction((a, b), (c, d))`: does a - b differ from c - d? (the difference of the differences)
- `Trend(arms, "decreasing" | "increasing")`: does accuracy move one way along `arms`, in order?

Margins are in accuracy as a fraction (0.02 = 2 points); a comparison without one takes the study's `margin`.
`reason` says why a declared margin is the size it is: the smallest difference that would matter to someone
acting on the result, not a size picked to suit the noise (the report prints the margin in seed sds beside it,
and "no reason declared" where there is none). `claim` says who predicted the result, when the literature did.
Nothing here imports anything heavy.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

DEFAULT_MARGIN = 0.02  # 2 accuracy points: about one seed-sd of a well-trained small model on the default task
DIRECTIONS = ("decreasing", "increasing")


@dataclass(frozen=True)
class Difference:
    """a - b, two-sided: a better, b better, or undecided."""

    a: str
    b: str
    claim: str = ""
    kind = "difference"

    @property
    def arms(self) -> tuple[str, ...]:
        return (self.a, self.b)

    @property
    def label(self) -> str:
        return f"{self.a} - {self.b}"


@dataclass(frozen=True)
class _WithMargin:
    """A pair compared against a margin; None takes the study's."""

    a: str
    b: str
    margin: float | None = None
    claim: str = ""
    reason: str = ""  # why this margin: what a difference of that size would change for someone acting on it

    arms = Difference.arms
    label = Difference.label


class NonInferior(_WithMargin):
    """a >= b - margin: shown when the interval's lower end clears -margin; refuted when its upper end falls
    below -margin (a is worse than b by more than the margin)."""

    kind = "non-inferiority"


class Equivalent(_WithMargin):
    """|a - b| <= margin: shown when the TOST interval (90% at alpha 0.05) lies inside ±margin; refuted when the
    95% interval lies wholly outside (either side may be crossed)."""

    kind = "equivalence"


@dataclass(frozen=True)
class Interaction:
    """(a - b) under one setting minus (c - d) under another: does the effect depend on the setting?"""

    first: tuple[str, str]
    second: tuple[str, str]
    claim: str = ""
    kind = "interaction"

    @property
    def arms(self) -> tuple[str, ...]:
        return (*self.first, *self.second)

    @property
    def label(self) -> str:
        (a, b), (c, d) = self.first, self.second
        return f"({a} - {b}) - ({c} - {d})"


@dataclass(frozen=True)
class Trend:
    """Accuracy along `arms` in order: the per-seed least-squares slope per step, and whether every step
    moves the declared way (monotone)."""

    arms: tuple[str, ...]
    direction: str = "decreasing"
    claim: str = ""
    kind = "trend"

    @property
    def label(self) -> str:
        return f"{' -> '.join(self.arms)} ({self.direction})"

    @property
    def sign(self) -> int:
        return -1 if self.direction == "decreasing" else 1


Declared = Difference | NonInferior | Equivalent | Interaction | Trend


def with_margin(c: Declared, margin: float) -> Declared:
    """`c` with the study's margin where it declares none."""
    if isinstance(c, NonInferior | Equivalent) and c.margin is None:
        return dataclasses.replace(c, margin=margin)
    return c


def check_plan(plan: tuple[Declared, ...], arms: tuple[str, ...]) -> None:
    """Refuse a plan that names an arm the study lacks, a bad trend direction, a margin out of range, a reason
    that is not text or explains no declared margin, or the same comparison twice; the error names the valid
    choices."""
    seen = set()
    for c in plan:
        if not isinstance(c, Difference | NonInferior | Equivalent | Interaction | Trend):
            raise TypeError(f"the plan holds {c!r}; declare Difference, NonInferior, Equivalent, Interaction "
                             "or Trend (harness.analysis_plan)")
        unknown = [a for a in c.arms if a not in arms]
        if unknown:
            raise ValueError(f"{c.kind} {c.label} names unknown arms {', '.join(unknown)}; arms: {', '.join(arms)}")
        if isinstance(c, Trend):
            if c.direction not in DIRECTIONS:
                raise ValueError(f"trend {c.label}: direction {c.direction!r}; choose {' or '.join(DIRECTIONS)}")
            if len(c.arms) < 3:
                raise ValueError(f"trend {c.label}: needs 3 or more arms; for 2, declare a Difference")
        margin = getattr(c, "margin", None)
        if margin is not None and not 0 < margin < 1:
            raise ValueError(f"{c.kind} {c.label}: margin {margin} must lie between 0 and 1 (0.02 = 2 points)")
        _check_reason(c)
        if isinstance(c, Difference | NonInferior | Equivalent) and c.a == c.b:
            raise ValueError(f"{c.kind} {c.label} compares arm {c.a!r} with itself; name two different arms")
        if isinstance(c, Interaction) and (len(set(c.first)) < 2 or len(set(c.second)) < 2 or
                                           set(c.first) == set(c.second)):
            raise ValueError(f"interaction {c.label}: each pair needs two different arms, and the two pairs must "
                             "differ (an effect compared with itself is 0 by construction)")
        if isinstance(c, Trend) and len(set(c.arms)) < len(c.arms):
            raise ValueError(f"trend {c.label} names an arm twice; list each arm once, in order")
        key = (c.kind, c.label)
        mirrored = (c.kind, _mirror(c)) if isinstance(c, Difference | Equivalent | Interaction) else None
        if key in seen or mirrored in seen:
            twice = "is declared twice" if key in seen else f"is declared twice (once as {mirrored[1]})"
            raise ValueError(f"{c.kind} {c.label} {twice}: each comparison once, as Holm counts it once")
        seen.add(key)


def _check_reason(c: Declared) -> None:
    reason = getattr(c, "reason", "")
    if not isinstance(reason, str):
        raise TypeError(f"{c.kind} {c.label}: reason must be text (why the margin is its size), not {reason!r}")
    # a reason explains the margin declared beside it; the study's margin can change without the comparison
    if reason.strip() and c.margin is None:
        raise ValueError(f"{c.kind} {c.label}: reason= explains a margin, but none is declared; declare "
                         "margin= beside it (0.02 = 2 points)")


ENDPOINTS = ("all", "trained")  # a study's primary endpoint: every verdict run, or the runs that trained
def _mirror(c: Difference | Equivalent | Interaction) -> str:
    """The label of the same question asked the other way round (b - a for a - b)."""
    if isinstance(c, Interaction):
        return Interaction(c.second, c.first).label
    return f"{c.b} - {c.a}"


SPENDING = ("obrien_fleming", "pocock")  # harness.inference.sequential's spending functions


@dataclass(frozen=True)
class Design:
    """Verdict seeds start, start + step, ... up to cap; step 0 is one look at `start` seeds (fixed n)."""

    start: int
    step: int = 0
    cap: int | None = None
    spending: str = "obrien_fleming"

    @property
    def looks(self) -> tuple[int, ...]:
        cap = max(self.cap or self.start, self.start)
        if self.step <= 0 or cap == self.start:
            return (self.start,)
        ns = list(range(self.start, cap + 1, self.step))
        return tuple(ns if ns[-1] == cap else [*ns, cap])

    @property
    def fractions(self) -> tuple[float, ...]:
        return tuple(n / self.looks[-1] for n in self.looks)

    def describe(self) -> str:
        if len(self.looks) == 1:
            return f"a fixed {self.start} verdict seeds per arm, one look"
        return (f"{self.start} verdict seeds per arm, then {self.step} more at a time up to {self.looks[-1]} "
                f"(looks at n = {', '.join(map(str, self.looks))}); error spent by {_SPEND_NAME[self.spending]}")


_SPEND_NAME = {"obrien_fleming": "an O'Brien-Fleming-type Lan-DeMets function",
               "pocock": "a Pocock-type Lan-DeMets function"}
