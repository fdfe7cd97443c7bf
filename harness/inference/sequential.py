"""Seeds until the answer is known: a group-sequential design over the confirmation seeds.

The verdict seeds come in batches (the study's `seeds`, then `seed_step` more at a time, up to `seed_cap`).
After each batch ("look") every comparison still undecided is judged; one decided stays decided, with the
interval of the look that decided it, and the next batch runs only for the arms of those still undecided.

Why this is valid under repeated looks. Each look spends part of the error rate by a Lan-DeMets spending
function (O'Brien-Fleming type: little early, nearly all of it at the cap); the boundary of each look is
computed exactly for the normal score process (the recursive integration of Armitage, McPherson and Rowe;
Jennison and Turnbull 2000, ch. 19), and applied to each look's t statistic at the same nominal level (the
"significance level approach", ibid. 11.3). The intervals are repeated confidence intervals: all looks'
intervals cover the truth together at the design's level, so the interval where a comparison stopped covers
as often. Holm's correction runs over the comparisons still undecided at each look; a comparison that
leaves the family has been decided at a stricter level, so the closed-testing argument still holds.
`tests/test_simulation.py` measures family-wise error over every look and coverage at the stopping time.

The rule is a pure function of the per-seed results: the planner (under the queue's lock) and the report
replay it over the same records and reach the same looks and decisions.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import optimize, special, stats

from harness.analysis_plan import Declared, Design, Equivalent
from harness.inference.decide import Decision, Values, decide_all, decide_family, mde, seeds_needed
from harness.inference.failures import RateClaim, rate_pairs
from harness.inference.stats import ALPHA

GRID = 401  # points of the score's density per look: levels to about 4 significant digits


def spent(t: float, alpha: float, spending: str) -> float:
    """The error spent by information fraction t (Lan and DeMets 1983)."""
    if spending == "pocock":
        return alpha * math.log(1 + (math.e - 1) * t)
    return float(2 - 2 * stats.norm.cdf(stats.norm.ppf(1 - alpha / 2) / math.sqrt(t)))


def nominal(alpha: float, fractions: tuple[float, ...], spending: str = "obrien_fleming") -> tuple[float, ...]:
    """Each look's nominal two-sided level: the symmetric boundaries c_k on the standardised score Z_k (a
    Brownian motion B at t_k over sqrt(t_k)) with P(first crossing at look k) = spent(t_k) - spent(t_{k-1})
    under the null, by recursive integration of B's density over the region still continuing.

    Holm's factors make every alpha a new value: the levels are computed once per design on a grid of alphas
    and interpolated (in logs, where they are smooth: within 0.1% of the exact levels)."""
    if len(fractions) == 1 or alpha >= 1:
        return (alpha,) * len(fractions)
    at = math.log(alpha)
    if not ALPHA_GRID[0] <= at <= ALPHA_GRID[-1]:
        return _nominal(alpha, tuple(fractions), spending)
    # only the two grid alphas around `alpha` enter the interpolation, so only they are computed (cached):
    # the same levels as from the whole grid, without integrating the rest of it for every report
    j = min(int(np.searchsorted(ALPHA_GRID, at, side="right")) - 1, len(ALPHA_GRID) - 2)
    pair = ALPHA_GRID[j : j + 2]
    table = np.log([_nominal(float(np.exp(a)), tuple(fractions), spending) for a in pair]).T
    return tuple(float(np.exp(np.interp(at, pair, column))) for column in table)


ALPHA_GRID = np.log(np.geomspace(1e-5, 0.5, 64))


@functools.lru_cache(maxsize=4096)
def _nominal(alpha: float, fractions: tuple[float, ...], spending: str) -> tuple[float, ...]:
    levels, density, x, weights, previous_t, previous_spent = [], None, None, None, 0.0, 0.0
    for t in fractions:
        increment = max(spent(t, alpha, spending) - previous_spent, 1e-15)
        if density is None:  # first look: B(t) ~ N(0, t)
            c = float(stats.norm.isf(increment / 2))
            x = np.linspace(-c * math.sqrt(t), c * math.sqrt(t), GRID)
            density = np.exp(-x**2 / (2 * t)) / math.sqrt(2 * math.pi * t)
        else:
            sd = math.sqrt(t - previous_t)
            mass = weights * density
            c = float(optimize.brentq(_excess, 1e-6, 40.0, args=(t, x, mass, sd, increment), xtol=1e-10))
            y = np.linspace(-c * math.sqrt(t), c * math.sqrt(t), GRID)
            z = (y[:, None] - x[None, :]) / sd
            density = np.exp(-z**2 / 2) / (sd * math.sqrt(2 * math.pi)) @ mass
            x = y
        weights = np.full(GRID, x[1] - x[0])
        weights[[0, -1]] /= 2  # the trapezoid rule
        levels.append(float(2 * special.ndtr(-c)))
        previous_t, previous_spent = t, spent(t, alpha, spending)
    return tuple(levels)


def _excess(c: float, t: float, x: np.ndarray, mass: np.ndarray, sd: float, increment: float) -> float:
    """P(first crossing of +-c at fraction t | the continuing density `mass` at the grid `x`) - increment."""
    b = c * math.sqrt(t)
    return float(mass @ (special.ndtr((x - b) / sd) + special.ndtr((-b - x) / sd))) - increment


@dataclass(frozen=True)
class Sequential:
    """The rule replayed over the records: each comparison's decision at the look it stopped (or at the last
    look reached), where it stopped, and what the arms need next."""

    design: Design
    decisions: list[Decision]
    stopped_at: list[int | None]  # the n of the look that decided it; None: still undecided
    looks_done: tuple[int, ...]  # the looks judged so far
    wanted: dict[str, int]  # verdict seeds each arm needs now (the current batch)
    # failure-rate claims (harness.inference.failures): each pair's at the look it was shown, else at the last
    # look judged; they ride along with the comparisons and never ask for seeds
    rates: list[RateClaim] = dataclasses.field(default_factory=list)

    @property
    def complete(self) -> bool:
        """No batch is waiting: every comparison decided or the cap judged."""
        return all(n is not None for n in self.stopped_at) or self.design.looks[-1] in self.looks_done

    def where(self, i: int) -> str:
        """Where comparison i stopped, in words."""
        n, cap = self.stopped_at[i], self.design.looks[-1]
        if n is not None:
            return f"decided at n = {n}"
        last = self.looks_done[-1] if self.looks_done else 0
        if last == cap:
            return f"undecided at the cap, n = {cap}"
        return f"undecided so far at n = {last} (the next batch is pending)" if last else "no look yet"


def replay(family: Sequence[Declared], arms: Sequence[str], done: Mapping[str, set[int]],
           values: Mapping[str, Values], margin: float, design: Design, alpha: float = ALPHA,
           power: bool = True, failed: Mapping[str, set[int]] | None = None) -> Sequential:
    """Replay the looks over the records: `done` has each arm's verdict seeds that finished (failures too),
    `values` the declared endpoint's value of each seed it scores (harness.ledger.VerdictResults.values),
    `failed` those that failed to train (their pairs' failure rates are then claims of the family). A look is
    judged once every arm it needs has all its seeds up to the look's n; its comparisons still undecided are
    decided at the look's nominal levels."""
    looks, fractions = design.looks, design.fractions
    n_arm = {a: looks[0] for a in arms}
    final: list[Decision | None] = [None] * len(family)
    stopped: list[int | None] = [None] * len(family)
    judged: list[int] = []
    claims: dict[tuple[str, str], RateClaim] = {}
    for k, n in enumerate(looks):
        open_ = [i for i in range(len(family)) if stopped[i] is None]
        needed = {a for i in open_ for a in family[i].arms} if k else set(arms)
        for a in needed:
            n_arm[a] = n
        if any(not set(range(1, n_arm[a] + 1)) <= done.get(a, set()) for a in needed):
            break  # this look's batch is still running
        current = {a: {s: v for s, v in values.get(a, {}).items() if s <= n_arm[a]} for a in arms}
        counts = None if failed is None else {
            a: (sum(s <= n_arm[a] for s in failed.get(a, ())), sum(s <= n_arm[a] for s in done.get(a, ())))
            for a in arms}
        shown = {pair for pair, claim in claims.items() if claim.significant}  # a claim shown stays shown
        judged_now = decide_family([family[i] for i in open_], current, margin, alpha, power=False,
                                   levels=lambda a, k=k: nominal(a, fractions, design.spending)[k],
                                   failures=counts, pairs=[p for p in rate_pairs(family) if p not in shown])
        judged.append(n)
        for c in judged_now.rates:  # the same counts at a later look's laxer level are no new evidence
            if (c.a, c.b) not in claims or claims[(c.a, c.b)].counts != c.counts:
                claims[(c.a, c.b)] = c
        for i, d in zip(open_, judged_now.decisions, strict=True):
            final[i] = d
            if d.decided:
                stopped[i] = n
        if all(s is not None for s in stopped):
            break
    if power and final and not all(d is None for d in final):  # the power of where each comparison stands
        final = _with_power(final, stopped, margin, alpha, design)
    missing = [i for i, d in enumerate(final) if d is None]
    if missing:  # no look judged yet: the family as it stands, unjudged
        values = {a: {} for a in arms}
        for i, d in zip(missing, decide_all([family[i] for i in missing], values, margin, alpha, power=False),
                        strict=True):
            final[i] = d
    order = {pair: i for i, pair in enumerate(rate_pairs(family))}
    return Sequential(design, final, stopped, tuple(judged), dict(n_arm),
                      sorted(claims.values(), key=lambda c: order[(c.a, c.b)]))


def _with_power(final: list[Decision | None], stopped: list[int | None], margin: float, alpha: float,
                design: Design) -> list[Decision | None]:
    """MDE and seeds needed at the cap's level for comparisons not yet decided (what more seeds could show),
    at their stopping look's for decided ones."""
    fractions, out = design.fractions, []
    for d, n in zip(final, stopped, strict=True):
        if d is None or d.estimate is None or not math.isnan(d.mde):
            out.append(d)
            continue
        look = design.looks.index(n) if n is not None else len(design.looks) - 1
        # mde() takes the family's alpha and halves it for a one-sided test; TOST's two tests are at alpha
        twice = 2 if isinstance(d.declared, Equivalent) else 1
        alpha_k = nominal(twice * alpha / d.multiplier, fractions, design.spending)[look] / twice
        out.append(dataclasses.replace(d, mde=mde(d.declared, d.estimate, 1.0, alpha_k),
                                       seeds_needed=seeds_needed(d.declared, d.estimate, 1.0, margin, alpha_k)))
    return out
