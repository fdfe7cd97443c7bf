"""What a study's records support: its declared comparisons decided (harness.inference.decide), its failures
counted (harness.inference.failures), and the protocol checks that say whether a study could show what it
claims. Sentences for the report, from the numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from harness import ledger
from harness.analysis.records import StudyRecord
from harness.analysis_plan import Equivalent, Interaction, NonInferior, Trend
from harness.inference.decide import Decision, Estimate, decide_family, estimate_for
from harness.inference.failures import Rate, RateClaim, rate
from harness.inference.searches import differences, variance_share
from harness.inference.sequential import Sequential
from harness.inference.stats import small_validation


def _pts(x: float, sign: bool = False) -> str:
    return f"{100 * x:+.1f}" if sign else f"{100 * x:.1f}"


@dataclass
class Outcomes:
    """Per arm, per seed: the test accuracy of the runs that trained, which seeds failed, and the values of the
    study's endpoint the comparisons are decided on (every run scored, or those that trained)."""

    trained: dict[str, dict[int, float]]
    failed: dict[str, dict[int, bool]]
    values: dict[str, dict[int, float]]
    endpoint: str = "all"

    def rate(self, arm: str) -> Rate:
        flags = self.failed[arm]
        return rate(sum(flags.values()), len(flags))


def outcomes(record: StudyRecord) -> Outcomes:
    """Split each arm's counted verdict seeds into trained and failed (diverged, raised, or validation accuracy
    within the study's chance margin of chance) and score them on the study's endpoint, as the sequential rule
    reads them: from the ledger."""
    spec = record.spec
    chance = ledger.chances(spec, {name: arm.slots.confirm for name, arm in record.arms.items()})
    trained, failures, values = {}, {}, {}
    for name, arm in record.arms.items():
        found = ledger.verdict_results(arm.verdict, spec.chance_margin, chance[name])
        failures[name] = {s: s in found.failed for s in sorted(found.done)}
        trained[name], values[name] = found.trained, found.values(spec.endpoint)
    return Outcomes(trained, failures, values, spec.endpoint)


@dataclass
class Findings:
    decisions: list[Decision]
    outcomes: Outcomes
    rates: dict[str, Rate]
    rate_claims: list[RateClaim]  # a declared pair's failure rates, where a run of it failed
    sentences: list[str]
    rule: Sequential | None = None  # the sequential rule as replayed (None: one look, a fixed number of seeds)
    # per decision, the estimate over every seed its arms ran: a comparison decided at an early look keeps that
    # look's interval, but its arms may have run on for others, and an estimate frozen where the rule stopped is
    # biased away from 0 (stopping follows a large estimate); the report's one estimate of the effect is this
    overall: list[Estimate | None] = field(default_factory=list)

    @property
    def family(self) -> int:
        """The tests Holm corrects over: the declared comparisons, and a failure-rate claim per declared pair
        where some run failed."""
        return max((x.family for x in [*self.decisions, *self.rate_claims]), default=0)


def findings(record: StudyRecord) -> Findings:
    """The declared family decided on the study's endpoint, and the failure rates and their claims beside it."""
    spec = record.spec
    per_run = outcomes(record)  # per arm, or with several searches per search
    found = Outcomes(ledger.by_arm(spec, per_run.trained), ledger.by_arm(spec, per_run.failed),
                     ledger.by_arm(spec, per_run.values), spec.endpoint)  # searches merged
    # sequential: the looks the planner judged, replayed from the same Optuna records; fixed n: what is recorded
    rule = ledger.sequential_state(spec, {name: arm.slots.confirm for name, arm in record.arms.items()}, power=True)
    failures = {name: (sum(flags.values()), len(flags)) for name, flags in found.failed.items()}
    judged = rule or decide_family(spec.family, found.values, spec.margin, failures=failures)
    decisions, claims = judged.decisions, judged.rates
    rates = {name: per_run.rate(name) for name in record.arms} | {a.name: found.rate(a.name) for a in spec.arms}
    where = [rule.where(i) for i in range(len(decisions))] if rule else [""] * len(decisions)
    overall = [estimate_for(d.declared, found.values) for d in decisions]
    sentences = [sentence(d, found, spec.margin, w, o) for d, w, o in zip(decisions, where, overall, strict=True)]
    lines = failure_lines({a.name: rates[a.name] for a in spec.arms}, claims)
    return Findings(decisions, per_run, rates, claims, sentences + lines, rule, overall)


# --- sentences -----------------------------------------------------------------------------------------


def level_text(confidence: float) -> str:
    """95, 97.5, 99.96: enough decimals that an early look's strict level never reads 100%.

    >>> level_text(0.95), level_text(0.975), level_text(0.99962), level_text(0.9999984)
    ('95', '97.5', '99.962', '99.99984')
    """
    miss = 100 * (1 - confidence)
    decimals = 0 if miss >= 1 else math.ceil(-math.log10(miss)) + 1
    return f"{100 * confidence:.{decimals}f}".rstrip("0").rstrip(".") if decimals else f"{100 * confidence:.4g}"


def interval(d: Decision) -> str:
    held = f", Holm over {d.family}" if d.family > 1 else ""
    return f"{level_text(d.confidence)}% CI {_pts(d.low, True)} to {_pts(d.high, True)}{held}"


def _seeds(d: Decision) -> str:
    e = d.estimate
    if e.searches > 1:
        return f"{e.searches} searches per arm, {e.n}+ seeds each, paired by search and seed"
    if e.n == 1:
        return "1 seed"
    return f"{e.n} seeds{' paired' if e.paired else ' (unpaired, Welch)'}"


def _needed(d: Decision, margin: float) -> str:
    if d.seeds_needed is None:
        return ""
    target = {"non-inferiority": "show it at a true difference of 0", "equivalence": "show it at a true 0"}
    goal = target.get(d.declared.kind, f"detect {_pts(margin)} points")
    many = f"more than {d.seeds_needed - 1}" if d.seeds_needed > 10_000 else f"about {d.seeds_needed}"
    if d.estimate is not None and d.seeds_needed <= d.estimate.n:  # it had the power: the truth is likely smaller
        return f"; {many} seeds had 80% power to {goal}, and it ran {d.estimate.n}"
    return f"; to {goal} with 80% power would take {many} seeds"


def power_text(d: Decision, margin: float) -> str:
    """The minimum detectable effect at the seeds reached, and (when undecided) the seeds the margin needs."""
    c, m = d.declared, d.mde
    if not np.isfinite(m) or d.estimate.df < 1:
        return "MDE: no variance estimate (fewer than 2 seeds)"
    if not isinstance(c, Equivalent) and abs(m) > 1:  # accuracies differ by at most 100 points
        return (f"no 80% power at any possible difference (MDE {_pts(m)} points): far too few seeds"
                + ("" if d.decided else _needed(d, margin)))
    if isinstance(c, NonInferior):
        text = f"80% power to show it when a - b >= {_pts(m, True)} points"
    elif isinstance(c, Equivalent):
        text = (f"80% power to show it when |a - b| <= {_pts(m)} points" if m > 0 else
                "not 80% power to show it even at a true difference of 0")
    else:
        unit = " per step" if isinstance(c, Trend) else ""
        text = f"MDE {_pts(m)} points{unit} at 80% power"
    return text + ("" if d.decided else _needed(d, margin))


WORDS = {
    "non-inferiority": {"shown": "non-inferior", "refuted": "inferior", "undecided": "undecided"},
    "equivalence": {"shown": "equivalent", "refuted": "not equivalent", "undecided": "undecided"},
    "trend": {"shown": "shown", "refuted": "runs the other way", "undecided": "undecided"},
}


def decision_word(d: Decision) -> str:
    c = d.declared
    if d.outcome in ("a > b", "a < b"):
        if isinstance(c, Interaction):
            return "the effect depends on the setting"
        return f"{c.a} beats {c.b}" if d.outcome == "a > b" else f"{c.b} beats {c.a}"
    word = WORDS.get(c.kind, {}).get(d.outcome, d.outcome)
    if isinstance(c, Trend) and d.steps:
        states = [_step_state(c.sign, low, high) for *_, low, high in d.steps]
        against = [f"{left} -> {right}" for (left, right, *_), st in zip(d.steps, states, strict=True)
                   if st == "against the trend"]
        if against:
            return f"{word} overall, but not monotone (reverses at {', '.join(against)})"
        if d.outcome == "shown" and all(st == "with the trend" for st in states):
            return "shown, monotone (every step)"
    return word


def _step_state(sign: int, low: float, high: float) -> str:
    if (low > 0 and sign > 0) or (high < 0 and sign < 0):
        return "with the trend"
    return "against the trend" if low > 0 or high < 0 else "unresolved"


def _what(d: Decision) -> str:
    c = d.declared
    margin = f" within {_pts(c.margin)} points" if getattr(c, "margin", None) else ""
    return f"{c.kind}{margin}: {c.label}"


def later_seeds(d: Decision, overall: Estimate | None) -> bool:
    """Whether the comparison's arms ran seeds beyond those its decision used (it stopped at an earlier look)."""
    return d.estimate is not None and overall is not None and overall.n > d.estimate.n


def at_decision(d: Decision) -> str:
    """Where the decision's own estimate was taken, for a label beside the estimate over every seed."""
    return f"{'at stopping' if d.decided else 'at the last look'}, n = {d.estimate.n}"


def sentence(d: Decision, found: Outcomes, margin: float, where: str = "", overall: Estimate | None = None) -> str:
    """One line per declared comparison: what it claims, the estimate, interval, decision (among the runs that
    trained where the study's endpoint is theirs), where the sequential rule stopped it, and power; beside a
    decision taken at an earlier look than its arms' last seed, the estimate over every seed they ran."""
    c = d.declared
    claim = f"{c.claim} — " if c.claim else ""
    if d.estimate is None:
        unrun = [a for a in c.arms if not found.failed[a]]
        empty = [a for a in c.arms if found.failed[a] and not found.values[a]]
        why = (f"{' and '.join(unrun)} {'has' if len(unrun) == 1 else 'have'} no confirmation runs" if unrun else
               f"{', '.join(empty)} trained on no seed: {'it' if len(empty) == 1 else 'each'} failed to train on "
               "every one (see the failure rates)" if empty else "too few seeds")
        return f"{claim}{_what(d)}: no decision, {why}."
    unit = " per step" if isinstance(c, Trend) else ""
    among = " among runs that trained" if found.endpoint == "trained" else ""
    stop = f" ({where})" if where else ""
    later = later_seeds(d, overall)
    label = f" {at_decision(d)}:" if later else ""
    also = f"; over all {overall.n} seeds: {_pts(overall.value, True)} points{unit}" if later else ""
    text = (f"{claim}{_what(d)}: **{decision_word(d)}**{among}{stop}; estimate{label} "
            f"{_pts(d.estimate.value, True)} points{unit} ({interval(d)}; {_seeds(d)}){also}; {power_text(d, margin)}.")
    if d.steps:
        text += " Steps: " + "; ".join(_step(d, s) for s in d.steps) + "."
    return text + skew_text(d) + _search_share(d, found)


def _search_share(d: Decision, found: Outcomes) -> str:
    """Over searches: how much of the per-seed difference's variance is search-to-search."""
    c = d.declared
    if d.estimate is None or d.estimate.searches < 2 or not hasattr(c, "b"):
        return ""
    share = variance_share(differences(found.values[c.a], found.values[c.b]))
    if share is None:
        return ""
    return (f" Search-to-search: {100 * share.fraction:.0f}% of the per-seed difference's variance (sd "
            f"{_pts(share.between ** 0.5)} points between searches, {_pts(share.within ** 0.5)} within).")


def skew_text(d: Decision) -> str:
    """A warning where the per-seed contrasts are skewed: the t interval's level leans on their symmetry."""
    if not d.skewed:
        return ""
    what = "slopes" if isinstance(d.declared, Trend) else "differences"
    return f" Per-seed {what} skewed (skewness {d.estimate.skew:.1f}): the level may not hold."


def _step(d: Decision, step: tuple[str, str, float, float, float]) -> str:
    left, right, change, low, high = step
    state = _step_state(d.declared.sign, low, high)
    return f"{left} -> {right} {_pts(change, True)} ({_pts(low, True)} to {_pts(high, True)}, {state})"


def failure_lines(rates: dict[str, Rate], claims: list[RateClaim]) -> list[str]:
    """Failure rates, said as results: per arm that failed at all, and each declared pair's claim that one arm
    fails to train more often (the comparisons are decided on the endpoint whatever it says)."""
    lines = [f"{arm} failed to train on " + (f"every seed ({r.failed} of {r.n}, " if r.failed == r.n else
                                              f"{r.failed} of {r.n} seeds ({_pts(r.rate)}%, ")
             + f"exact 95% CI {_pts(r.low)} to {_pts(r.high)}%)." for arm, r in rates.items() if r.failed]
    for c in claims:
        (fa, na), (fb, nb) = c.counts
        ra, rb = c.rates
        held = f"Fisher's exact p = {c.p_value:.2g}" + (f", Holm over {c.family}" if c.family > 1 else "")
        counts = (f"{c.a} {fa} of {na} (exact 95% CI {_pts(ra.low)} to {_pts(ra.high)}%), {c.b} {fb} of {nb} "
                  f"({_pts(rb.low)} to {_pts(rb.high)}%)")
        if c.more:
            other = c.b if c.more == c.a else c.a
            lines.append(f"**{c.more} fails to train more often than {other}**: {counts}; {held}.")
        else:
            lines.append(f"Failure to train: {c.a} and {c.b} do not differ significantly: {counts}; {held}.")
    return lines


# --- protocol checks --------------------------------------------------------------------------------


HORIZON_FACTOR = 2  # momentum's average spans 1 / (1 - momentum) steps; a run should see twice that


def momentum_notes(record: StudyRecord) -> list[str]:
    """An arm whose runs took fewer updates than twice its momentum's horizon cannot show momentum's effect."""
    train = record.overview.get("sizes", {}).get("train")
    notes = []
    for name, arm in record.arms.items():
        runs = record.log.params(arm.run_ids)
        momentum = pd.to_numeric(runs.get("opt.momentum", pd.Series(dtype=float)), errors="coerce").dropna()
        if not train or momentum.empty or momentum.iloc[0] <= 0:
            continue
        epochs = pd.to_numeric(runs["epochs"], errors="coerce").iloc[0]
        batch = pd.to_numeric(runs.get("batch_size", pd.Series([32])), errors="coerce").iloc[0]
        # rounded: 1 / (1 - 0.9) is 10.000000000000002 in floating point
        updates, horizon = math.ceil(train / batch) * epochs, round(1 / (1 - momentum.iloc[0]), 6)
        if updates < HORIZON_FACTOR * horizon:
            notes.append(f"{name}: {updates:.0f} updates ({train} images in batches of {batch:.0f}, {epochs:.0f} "
                         f"epochs) against momentum {momentum.iloc[0]:g}'s horizon of {horizon:.0f} steps: too few "
                         "for momentum to settle, so its comparisons say more about the protocol than about momentum")
    return notes


EDGE = 0.05  # a chosen value within 5% of the searched range (log-scaled where the search was) of an edge


def edge_notes(record: StudyRecord) -> list[str]:
    """A chosen hyperparameter at the edge of its searched range: the best may lie outside the range."""
    notes = []
    for name, arm in record.arms.items():
        if arm.best is None:
            continue
        for param, value in arm.best.params.items():
            d = arm.best.distributions[param]
            if not hasattr(d, "low") or d.high <= d.low:
                continue
            scale = np.log if getattr(d, "log", False) else float
            where = (scale(value) - scale(d.low)) / (scale(d.high) - scale(d.low))
            if where <= EDGE or where >= 1 - EDGE:
                edge = "low" if where <= EDGE else "high"
                notes.append(f"{name}: its chosen {param} = {value:.3g} lies at the {edge} edge of the searched "
                             f"range ({d.low:.3g} to {d.high:.3g}); the best value may lie beyond it")
    return notes


def source_notes(record: StudyRecord) -> list[str]:
    """A source model that did not learn its own source task is a failed precondition of the transfer."""
    notes = []
    for key, run_id in record.log.checkpoints():
        try:
            best, classes = record.log.source_result(run_id)
        except Exception:  # noqa: BLE001, S112 - a checkpoint from a store this report cannot read
            continue
        n = len([c for c in classes.strip("()[] ").split(",") if c.strip()]) if classes not in ("", "None") else 0
        if best is None or not n:
            continue
        chance = 1 / n
        if best <= chance + (1 - chance) / 2:  # not even halfway from chance to perfect on its own task
            notes.append(f"source model `{key}` reached only {_pts(best)}% validation accuracy on its own source "
                         f"task ({n} classes, chance {_pts(chance)}%): a failed precondition, so its arms test "
                         "little transfer")
    return notes


def split_notes(record: StudyRecord) -> list[str]:
    """Splits too small for what the study asks of them: a validation split that cannot rank trials (the search
    and the selection seeds rank by it), a test split scoring in steps coarser than the study's margin."""
    sizes, k, notes = record.overview.get("sizes", {}), record.n_classes, []
    val, test = sizes.get("val"), sizes.get("test")
    if val and k and (problem := small_validation(val, k)):
        notes.append(f"{problem} (add images, or raise val_fraction)")
    if test and 100 / test > 100 * record.spec.margin:
        notes.append(f"the test split holds {test} images, so one run's test accuracy moves in steps of "
                     f"{100 / test:.1f} points, coarser than the {100 * record.spec.margin:.1f}-point margin: only "
                     "the mean over many seeds can resolve differences that small")
    return notes


def protocol_notes(record: StudyRecord) -> list[str]:
    return split_notes(record) + source_notes(record) + momentum_notes(record) + edge_notes(record)
