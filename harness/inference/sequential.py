"""Seeds until the answer is known: a group-sequential design over the confirmation seeds.

The verdict seeds come in batches (the study's `seeds`, then `seed_step` more at a time, up to `seed_cap`).
After each batch ("look") every comparison still undecided is judged; one decided stays decided, with the
interval of the look that decided it, and the next batch runs only for the arms of those still undecided.

Why this is valid under repeated looks. Each look spends part of the error rate by a Lan-DeMets spending
function (O'Brien-Fleming type: little early, nearly all of it at the cap). The decisions are t statistics on
a few seeds, so each look's boundary is computed for t statistics at that look's degrees of freedom (t_nominal:
by simulating the null once per design), and each look's t interval is taken at the nominal level the boundary
gives. Boundaries computed for the normal score process (`nominal`: the recursive integration of Armitage,
McPherson and Rowe; Jennison and Turnbull 2000, ch. 19) and applied to t statistics at the same nominal level
(the "significance level approach", ibid. 11.3) spend more than alpha at 2-4 degrees of freedom, where a t
statistic's joint tails across looks are heavier than the normal's. The intervals are repeated confidence
intervals: all looks' intervals cover the truth together at the design's level, so the interval where a
comparison stopped covers as often. Holm's correction runs over the comparisons still undecided at each look;
a comparison that leaves the family has been decided at a stricter level, so the closed-testing argument still
holds. `tests/test_simulation.py` measures family-wise error over every look and coverage at the stopping time.

The rule is a pure function of the per-seed results: the planner (under the queue's lock) and the report
replay it over the same records and reach the same looks and decisions (the simulation's seed is fixed).
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import optimize, special, stats

from harness.analysis_plan import Declared, Design, Equivalent
from harness.inference.decide import Decision, Values, decide_all, decide_family, mde, seeds_needed
from harness.inference.failures import RateClaim, rate_pairs
from harness.inference.searches import seed_of
from harness.inference.stats import ALPHA

GRID = 401  # points of the score's density per look: levels to about 4 significant digits


def spent(t: float, alpha: float, spending: str) -> float:
    """The error spent by information fraction t (Lan and DeMets 1983)."""
    if spending == "pocock":
        return alpha * math.log(1 + (math.e - 1) * t)
    return float(2 - 2 * stats.norm.cdf(stats.norm.ppf(1 - alpha / 2) / math.sqrt(t)))


def nominal(alpha: float, fractions: tuple[float, ...], spending: str = "obrien_fleming") -> tuple[float, ...]:
    """Each look's nominal two-sided level for a normal statistic: the symmetric boundaries c_k on the
    standardised score Z_k (a Brownian motion B at t_k over sqrt(t_k)) with P(first crossing at look k) =
    spent(t_k) - spent(t_{k-1}) under the null, by recursive integration of B's density over the region still
    continuing. The rule judges t statistics, and uses t_nominal."""
    if len(fractions) == 1 or alpha >= 1:
        return (alpha,) * len(fractions)
    return _on_grid(_nominal, alpha, tuple(fractions), spending)


def _on_grid(levels_at, alpha: float, *design) -> tuple[float, ...]:
    """Holm's factors make every alpha a new value: the levels are computed once per design on a grid of alphas
    and interpolated in logs, where they are smooth (normal theory: within 0.1% of the exact levels; simulated t
    levels carry their own Monte Carlo error, largest where a look's increment is crossed by few paths). Only the
    two grid alphas around `alpha` enter the interpolation, so only they are computed (cached): the same levels
    as from the whole grid, without computing the rest of it for every report."""
    at = math.log(alpha)
    if not ALPHA_GRID[0] <= at <= ALPHA_GRID[-1]:
        return levels_at(alpha, *design)
    j = min(int(np.searchsorted(ALPHA_GRID, at, side="right")) - 1, len(ALPHA_GRID) - 2)
    low, high = _grid_logs(levels_at, j, *design)
    w = (at - ALPHA_GRID[j]) / (ALPHA_GRID[j + 1] - ALPHA_GRID[j])
    return tuple(np.exp(low + w * (high - low)).tolist())


@functools.lru_cache(maxsize=4096)
def _grid_logs(levels_at, j: int, *design) -> tuple[np.ndarray, np.ndarray]:
    """The log levels at grid alphas j and j + 1: a sequential replay interpolates between them thousands of times."""
    return tuple(np.log(levels_at(float(np.exp(a)), *design)) for a in ALPHA_GRID[j : j + 2])


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


PATHS = 1 << 18  # null paths simulated per design
RESOLVED = 100  # paths that must cross at a look for the simulation to set its boundary (else spent marginally)
PATHS_SEED = 20_240_607  # fixed: the planner and the report replay the rule and must reach the same levels


def t_nominal(alpha: float, looks: tuple[int, ...], spending: str = "obrien_fleming",
              df: tuple[float, ...] | None = None) -> tuple[float, ...]:
    """Each look's nominal two-sided level for a t statistic on df_k degrees of freedom (default n_k - 1, a
    one-sample t over n_k per-seed contrasts): boundaries c_k on |T_k| with P(first crossing at look k) =
    spent(n_k / n_K) - spent(n_{k-1} / n_K) under the null, each returned as 2 P(T_{df_k} >= c_k), so a look's
    t interval at 1 - level decides exactly at its boundary. The first look's boundary is the t quantile of its
    increment; each later one is set on PATHS simulated null paths (`_null_t`), among those not yet stopped."""
    if len(looks) == 1 or alpha >= 1:
        return (alpha,) * len(looks)
    return _on_grid(_t_levels, alpha, tuple(looks), spending, _dfs(tuple(looks), None if df is None else tuple(df)))


@functools.lru_cache(maxsize=64)
def _dfs(looks: tuple[int, ...], df: tuple[float, ...] | None) -> tuple[float, ...]:
    dfs = tuple(float(n - 1) for n in looks) if df is None else tuple(float(d) for d in df)
    if len(dfs) != len(looks) or dfs[0] < 1 or any(b - a < 1 for a, b in itertools.pairwise(dfs)):
        raise ValueError(f"df must give each of the {len(looks)} looks at least 1 and each later look at least 1 "
                         f"more than the last (a seed more): got {df}")
    return dfs


@functools.lru_cache(maxsize=4096)
def _t_levels(alpha: float, looks: tuple[int, ...], spending: str, dfs: tuple[float, ...]) -> tuple[float, ...]:
    t = _null_t(looks, dfs)
    going = np.ones(PATHS, dtype=bool)
    levels, previous = [], 0.0
    for k, (n, df) in enumerate(zip(looks, dfs, strict=True)):
        now = spent(n / looks[-1], alpha, spending)
        increment, previous = max(now - previous, 1e-15), now
        crossings = round(increment * PATHS)
        if k == 0 or crossings < RESOLVED:
            # the t quantile of the increment: no path can cross more often than that, whatever came before, so
            # an increment too small for the paths to resolve keeps its level, giving up at most what earlier
            # looks spent (and at the first look nothing came before: the quantile is exact)
            level, c = increment, -float(special.stdtrit(df, increment / 2))
        else:  # the crossings-th largest |T_k| among the paths still going
            still = t[going, k]
            top = len(still) - min(crossings, len(still))
            c = float(np.partition(still, top)[top])
            level = float(2 * special.stdtr(df, -c))
        levels.append(level)
        going &= t[:, k] < c
    return tuple(levels)


@functools.lru_cache(maxsize=8)
def _null_t(looks: tuple[int, ...], dfs: tuple[float, ...]) -> np.ndarray:
    """|T_k| at every look along PATHS null paths: per-seed contrasts i.i.d. N(0, 1), T_k = sqrt(n_k) mean_k / s_k
    with s_k^2 on df_k degrees of freedom. A batch of m seeds adds its sum, one degree for its mean's distance from
    the running mean, and its own spread for the rest: exactly the one-sample t when df_k = n_k - 1, with the
    dependence between looks that shared seeds give (a look that came close inflates the next look's s)."""
    rng = np.random.default_rng(PATHS_SEED)
    total, squares, out = np.zeros(PATHS), np.zeros(PATHS), np.empty((PATHS, len(looks)))
    before, df_before = 0, 0.0
    for k, (n, df) in enumerate(zip(looks, dfs, strict=True)):
        m = n - before
        batch = rng.standard_normal(PATHS) * math.sqrt(m)  # the sum of the batch's m contrasts
        if before:
            squares += before * m / n * (batch / m - total / before) ** 2
        within = df - df_before - (1 if before else 0)
        if within > 0:
            squares += 2 * rng.standard_gamma(within / 2, PATHS)  # chi-square on `within` degrees
        total += batch
        out[:, k] = np.abs(total) / math.sqrt(n) / np.sqrt(squares / df)
        before, df_before = n, df
    return out


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
    `values` the declared endpoint's value of each seed it scores (harness.ledger.VerdictResults.values; keyed
    (search, seed) over several searches), `failed` those that failed to train (their pairs' failure rates are then
    claims of the family). A look is judged once every arm it needs has all its seeds up to the look's n; its
    comparisons still undecided are decided at the look's nominal levels for t statistics (t_nominal)."""
    looks = design.looks
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
        current = {a: {s: v for s, v in values.get(a, {}).items() if seed_of(s) <= n_arm[a]} for a in arms}
        counts = None if failed is None else {
            a: (sum(seed_of(s) <= n_arm[a] for s in failed.get(a, ())),
                len({s for s in (*values.get(a, {}), *failed.get(a, ())) if seed_of(s) <= n_arm[a]}))
            for a in arms}
        shown = {pair for pair, claim in claims.items() if claim.significant}  # a claim shown stays shown
        judged_now = decide_family([family[i] for i in open_], current, margin, alpha, power=False,
                                   levels=lambda a, k=k: t_nominal(a, looks, design.spending)[k],
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
    out = []
    for d, n in zip(final, stopped, strict=True):
        if d is None or d.estimate is None or not math.isnan(d.mde):
            out.append(d)
            continue
        look = design.looks.index(n) if n is not None else len(design.looks) - 1
        # mde() takes the family's alpha and halves it for a one-sided test; TOST's two tests are at alpha
        twice = 2 if isinstance(d.declared, Equivalent) else 1
        alpha_k = t_nominal(twice * alpha / d.multiplier, design.looks, design.spending)[look] / twice
        out.append(dataclasses.replace(d, mde=mde(d.declared, d.estimate, 1.0, alpha_k),
                                       seeds_needed=seeds_needed(d.declared, d.estimate, 1.0, margin, alpha_k)))
    return out
