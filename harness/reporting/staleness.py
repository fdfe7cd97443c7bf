"""Whether a committed report predates the code that computes its numbers: the commit its study ran from (each
parent run's `git_commit` tag, copied into summary.json) must descend from the last commit that touched that code.
`tests/test_committed_reports.py` holds every committed report to it.

Which code. The paths below decide what a study's runs compute and which runs it makes, so a change to any of
them can change a number only a rerun refreshes. Left out: the report's own reading, wording and figures
(`harness/analysis/`, `harness/reporting/`), which `python -m harness.report NAME` refreshes from the same stores;
and the worker's loop, logging, launching, outage handling and dry run (`harness/run/worker.py`, `tracking.py`,
`parent.py`, `launch.py`, `resources.py`, `outage.py`, `space.py`, `pairing.py`, `dryrun.py`, `migrate.py`,
`resume.py`, `progress.py`), which change how the work runs, not what it computes.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

RUN_CODE = (
    "harness/learn",  # what a run computes: models and weights, data and splits, optimizers, fit and evaluate
    # which runs a study makes and what each records: a trial's config and run, how its end becomes an outcome,
    # the sampler's points and the confirmation plan, pruning, the source checkpoints, the queue's planning
    "harness/run/objective.py", "harness/run/outcomes.py", "harness/run/slot.py", "harness/run/slots.py",
    "harness/run/pruning.py", "harness/run/checkpoints.py", "harness/run/queue.py", "harness/run/work.py",
    # the defaults every run inherits, how a study file is read
    "harness/spec.py", "harness/study_file.py",
)
# What counts as a result, the stopping rule and every estimate and decision: the report replays the rule over the
# records with the code that builds it (and says so where the rule now wants seeds not run yet; rerunning the
# study's command runs them), so these are held to the commit the report was built from (summary.json's
# report_commit; else the newest run's), where the training code is held to every run's
DECISION_CODE = ("harness/ledger.py", "harness/inference", "harness/analysis_plan.py")
CODE = (*RUN_CODE, *DECISION_CODE)
SUITE_CODE = ("harness/suite_spec.py",)  # a suite's workloads and targets, beside its workloads' own code
COMMIT = re.compile(r"[0-9a-f]{7,40}")


def _git(repo: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=60, check=False)


def checkout_problem(repo: Path) -> str | None:
    """Why `repo` cannot answer the check (no git, not a checkout, a shallow clone without the history), or None."""
    try:
        inside = _git(repo, "rev-parse", "--is-inside-work-tree")
    except OSError:
        return "git is not installed"
    if inside.returncode or inside.stdout.strip() != "true":
        return f"{repo} is not a git checkout"
    if _git(repo, "rev-parse", "--is-shallow-repository").stdout.strip() == "true":
        return f"{repo} is a shallow clone: the commits a report ran from may be missing"
    return None


def _study_file(name: str) -> str:
    return f"studies/{name.split('--')[0]}.py"  # a variant's runs use its study's file


def _workloads(summary: dict, reports: Path) -> list[dict]:
    """A suite's workloads' own summaries (an empty record for one that has none)."""
    found = []
    for name in summary.get("workloads", {}).values():
        path = reports / name / "summary.json"
        found.append(json.loads(path.read_text()) if path.is_file() else {"name": name})
    return found


def recorded(summary: dict, reports: Path) -> tuple[list[str], list[str]]:
    """(commits its numbers were computed from, study files they depend on): a study's own; a suite's workloads'."""
    if "workloads" in summary:
        parts = [recorded(w, reports) for w in _workloads(summary, reports)]
        commits = [c for cs, _ in parts for c in cs] if all(cs for cs, _ in parts) else []
        files = [_study_file(summary["name"]), *(f for _, fs in parts for f in fs)]
        return list(dict.fromkeys(commits)), list(dict.fromkeys(files))
    commits = summary.get("git_commits") or ([summary["git_commit"]] if summary.get("git_commit") else [])
    return list(commits), [_study_file(summary.get("study_file") or summary["name"])]


def _regenerate(summary: dict) -> str:
    if summary.get("command"):
        return f"regenerate it from a fresh --root: `{summary['command']}`"
    name = summary["name"]
    return (f"regenerate it from a fresh --root with the Reproduce line of reports/{name}/README.md "
            f"(`python -m harness.study {name.split('--')[0]} ... --reports reports`)")


def stale(summary_path: Path, repo: Path) -> str | None:
    """Why the report whose summary.json is `summary_path` (inside `repo`, under reports/<name>/) may predate the
    code that computes its numbers, naming it and how to regenerate it; None when every commit it ran from
    descends from (or is) the last commit touching the training code, and its newest from the last touching the
    decision code."""
    summary = json.loads(summary_path.read_text())
    where = summary_path.relative_to(repo) if summary_path.is_relative_to(repo) else summary_path
    studies = _workloads(summary, summary_path.parent.parent) if "workloads" in summary else [summary]
    found = [recorded(study, summary_path.parent.parent) for study in studies]
    if not all(commits for commits, _ in found):
        whose = "its workloads' reports record" if "workloads" in summary else "it records"
        if any(_last(repo, [*CODE, *files]) for _, files in found):
            return f"{where}: {whose} no git commit the study ran from; {_regenerate(summary)}"
        return None
    suite = SUITE_CODE if "workloads" in summary else ()
    for study, (commits, files) in zip(studies, found, strict=True):
        for commit in [*commits, *([study["report_commit"]] if study.get("report_commit") else [])]:
            if not COMMIT.fullmatch(commit) or _git(repo, "cat-file", "-e", f"{commit}^{{commit}}").returncode:
                return (f"{where}: its study ran from {commit!r}, which is no commit of this checkout; "
                        f"{_regenerate(summary)}")
        built = study.get("report_commit") or commits[-1]  # the decisions are the report's, made when it was built
        checks = [(commit, [*RUN_CODE, *files, *suite]) for commit in commits] + [(built, list(DECISION_CODE))]
        for commit, paths in checks:
            last = _last(repo, paths)
            if last and _git(repo, "merge-base", "--is-ancestor", last, commit).returncode:
                changed = _git(repo, "diff", "--name-only", commit, last, "--", *paths).stdout.split()
                subject = _git(repo, "log", "-1", "--format=%s", last).stdout.strip()
                return (f"{where}: its study ran from {commit[:12]}, but {last[:12]} ({subject[:80]}) changed the "
                        f"code that computes its numbers since ({', '.join(changed[:6]) or 'see git log'}"
                        f"{', ...' if len(changed) > 6 else ''}); {_regenerate(summary)}")
    return None


def _last(repo: Path, paths: list[str]) -> str:
    """The last commit touching any of `paths` ('' when none is in this checkout's history)."""
    return _git(repo, "log", "-1", "--format=%H", "--", *paths).stdout.strip()


CHECKOUT = Path(__file__).resolve().parents[2]


def head_commit(repo: Path = CHECKOUT) -> str | None:
    """The checkout's HEAD, as a report records the code that built it; None outside a git checkout."""
    try:
        found = _git(repo, "rev-parse", "HEAD")
    except OSError:
        return None
    return found.stdout.strip() if found.returncode == 0 and COMMIT.fullmatch(found.stdout.strip()) else None
