"""The report's method paragraph: how each arm's configuration was chosen, the sequential rule, the tests."""

from __future__ import annotations

from harness.analysis.findings import Findings
from harness.analysis.records import StudyRecord, varied_text
from harness.spec import is_verdict_seed


def _searched(record: StudyRecord) -> str:
    """Which hyperparameters each arm searched (Optuna's params), arms with the same ones grouped."""
    groups: dict[str, list[str]] = {}
    for name, arm in record.arms.items():
        params = sorted({p for t in arm.trials for p in t.params}) if arm.trials else []
        groups.setdefault(", ".join(params) or "nothing", []).append(name)
    return "; ".join(f"{', '.join(arms)}: {params}" for params, arms in groups.items())


def selection_seeds(record: StudyRecord) -> list[int]:
    seeds = {s.seed for a in record.arms.values() for s in a.slots.confirm if s.counted and s.seed is not None}
    return sorted(s for s in seeds if not is_verdict_seed(s))


def _choice(record: StudyRecord) -> str:
    """How each arm's configuration was chosen: its best search trial, or the best of its `confirm_top` best over
    selection seeds that never judge it."""
    top, selection = record.setting("confirm_top"), selection_seeds(record)
    if top == "1":
        return "Each arm's best search trial (chosen on the search's seed 0) was rerun over fresh seeds, each"
    seeds = f"{len(selection)} selection seeds" if selection else "selection seeds (none finished yet)"
    return (f"Each arm's {top} best trials were each rerun on {seeds}, validation only, and the one with the best "
            "mean validation accuracy then ran on fresh verdict seeds: the seeds that chose it never judge it (no "
            "winner's curse). Each verdict seed was")


def method_text(record: StudyRecord, found: Findings) -> str:
    chosen = _choice(record)
    adjusted = ("" if found.family < 2 else
                f" p-values are Holm-adjusted over the {found.family} tests ({len(found.decisions)} declared "
                "comparisons" + ("" if found.family == len(found.decisions) else
                                 ", and a failure-rate claim per declared pair where a run failed") + "),"
                " and each interval's level "
                "is raised to match its Holm factor, so an interval decides exactly when its adjusted p is below 0.05.")
    test_size = record.overview.get("sizes", {}).get("test")
    split = f"The test split ({test_size} images)" if test_size else "The test split"
    chance = f"{100 / record.n_classes:.1f}%" if record.n_classes else "1 / classes"
    return (f"**Method.** {chosen} scored once on the held-out test split. {_sequential(record, found)}"
            f"Confirmation seeds "
            f"{varied_text(record)}. The report tests exactly the family the study file declares (its analysis "
            "plan), each comparison by its kind: a difference two-sided; non-inferiority (a >= b - margin) "
            "one-sided at 0.025; equivalence (|a - b| <= margin) shown by two one-sided tests (TOST, a 90% interval) "
            "and refuted when the 95% interval lies wholly outside the margin; an "
            "interaction as the difference of two differences; a trend as the per-seed least-squares slope, "
            "with each step checked at Bonferroni's level over the steps. Differences are paired by seed where "
            f"the arms share seeds (paired t), else Welch's t; interval and test are one t procedure.{adjusted} "
            f"A run **failed** when it diverged or its validation accuracy stayed within "
            f"{100 * record.spec.chance_margin:.0f} points of chance ({chance}); validation decides, never test. "
            f"{_endpoint(record)} Each arm's failure rate, with an exact (Clopper-Pearson) interval, stands beside "
            "the accuracies, and where a run of a declared pair failed, Fisher's exact test of whether one arm "
            "fails more often is a claim of its own in the Holm family: it never changes what a comparison decides. "
            "MDE: the effect each comparison detects with 80% power at its own level and seeds, from the sd it "
            f"showed. {_searches(record)} **Not in the intervals**: the sampling error of "
            f"{split.lower()[0] + split[1:]}, the same for every run. Searched: {_searched(record)}.")


def _searches(record: StudyRecord) -> str:
    """What the intervals are about: one search's choice, or the optimizer with its tuning protocol."""
    k = record.spec.searches
    if k == 1:
        return ("**Conditional on one search**: each arm ran one search (one sampler scrambling), so the intervals "
                "cover seed-to-seed variation given the configuration that search chose; another search could "
                "choose another (declare `searches=k` for an answer over searches).")
    return (f"**Over {k} searches**: each arm ran {k} independent searches (sampler seeds 0 to {k - 1}, "
            f"{record.setting('n_trials')} trials each), and each search's chosen configuration ran on the verdict "
            "seeds. A comparison is estimated within each search (paired by search and seed) and its interval is a "
            f"t over the {k} per-search estimates ({k - 1} df), so it covers the arm's expected accuracy over "
            "searches and seeds: the optimizer with its tuning protocol at this budget, search-to-search "
            "variation included. The sequential rule adds seeds to every search; only more searches narrow the "
            "search-to-search part.")


def _endpoint(record: StudyRecord) -> str:
    """The declared endpoint (StudySpec.endpoint), in words."""
    if record.spec.endpoint == "trained":
        return ("The study's endpoint is the test accuracy of the runs that trained: its estimates cover an arm's "
                "accuracy *when it trains*.")
    return ("The study's endpoint is test accuracy over every verdict run: a run that failed to train counts at its "
            "test accuracy, one that left no model (diverged, raised) at chance.")


def verdict_seeds(record: StudyRecord) -> str:
    design = record.spec.design
    if len(design.looks) == 1:
        return f"{record.setting('seeds')} verdict seeds"
    return f"{design.start} verdict seeds, then {design.step} more at a time up to {design.looks[-1]} (sequential)"


def _sequential(record: StudyRecord, found: Findings) -> str:
    """The sequential rule: its looks, how it spends the error rate, and how many seeds each arm ran."""
    rule = found.rule
    if rule is None:
        return ""
    ran = ", ".join(f"{arm} {n}" for arm, n in rule.wanted.items())
    return (f"**Sequential rule**: {rule.design.describe()}. After each batch every comparison still undecided "
            "is judged at that look's nominal level (group-sequential boundaries computed for t statistics at "
            "each look's degrees of freedom; Holm over the comparisons still open); one decided stays "
            "decided with the interval of its look, and the next batch runs only for the arms of undecided "
            "comparisons. The intervals are repeated confidence intervals: valid at whichever look a comparison "
            f"stopped. Looks judged: n = {', '.join(map(str, rule.looks_done)) or 'none yet'}; verdict seeds "
            f"run per arm: {ran}. ")
