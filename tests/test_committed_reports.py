"""No committed report silently predates the code that computes its numbers (harness.reporting.staleness): the
check itself on throwaway git repositories, then every committed reports/*/summary.json against this checkout."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from harness.reporting.staleness import checkout_problem, stale

ROOT = Path(__file__).resolve().parents[1]
COMMAND = "python -m harness.study s --reports reports"


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture
def repo(tmp_path, monkeypatch) -> Path:
    """An empty repository, committed to as a named tester whatever this machine's git configuration says."""
    for key, value in {"GIT_CONFIG_GLOBAL": str(tmp_path / "none"), "GIT_CONFIG_NOSYSTEM": "1",
                       "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
                       "GIT_COMMITTER_EMAIL": "t@t"}.items():
        monkeypatch.setenv(key, value)
    root = tmp_path / "repo"
    root.mkdir()
    _git(root, "init", "-q")
    return root


def commit(repo: Path, files: dict[str, str], message: str = "change") -> str:
    for name, text in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", message)
    return _git(repo, "rev-parse", "HEAD")


def report(repo: Path, name: str = "s", **fields) -> Path:
    path = repo / "reports" / name / "summary.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"name": name, "command": COMMAND, **fields}))
    return path


@pytest.fixture
def ran(repo) -> tuple[Path, str]:
    """A study run from the commit that last touched its training code and its study file."""
    first = commit(repo, {"harness/learn/train.py": "fit = 1\n", "studies/s.py": "STUDY = 1\n",
                          "studies/other.py": "STUDY = 2\n"})
    return repo, first


def test_a_report_run_from_the_last_commit_that_touched_its_code_is_current(ran):
    repo, first = ran
    commit(repo, {"docs/statistics.md": "words\n", "harness/reporting/markdown.py": "prose = 1\n"})  # no numbers
    assert stale(report(repo, git_commit=first, git_commits=[first]), repo) is None


def test_a_change_to_training_code_after_the_run_makes_it_stale_naming_report_code_and_command(ran):
    repo, first = ran
    later = commit(repo, {"harness/learn/train.py": "fit = 2\n"}, "fit: another loss")
    problem = stale(report(repo, git_commits=[first]), repo)
    assert problem.startswith(f"reports/s/summary.json: its study ran from {first[:12]}, but {later[:12]} "
                              "(fit: another loss) changed the code that computes its numbers since "
                              "(harness/learn/train.py)")
    assert problem.endswith(f"regenerate it from a fresh --root: `{COMMAND}`")
    assert stale(report(repo, git_commits=[later]), repo) is None  # rerun from the change: current again


def test_its_own_study_file_counts_and_another_studys_does_not(ran):
    repo, first = ran
    commit(repo, {"studies/other.py": "STUDY = 3\n"})
    assert stale(report(repo, git_commits=[first]), repo) is None
    commit(repo, {"studies/s.py": "STUDY = 4\n"})
    assert "(studies/s.py)" in stale(report(repo, git_commits=[first]), repo)
    variant = report(repo, "s--shots-10", git_commits=[first])  # a variant runs its study's file
    assert "(studies/s.py)" in stale(variant, repo)


def test_a_study_resumed_across_commits_is_as_old_as_its_oldest_run_for_training_and_its_newest_for_decisions(ran):
    repo, first = ran
    later = commit(repo, {"harness/learn/train.py": "fit = 2\n"})
    assert stale(report(repo, git_commits=[first, later]), repo).startswith(
        f"reports/s/summary.json: its study ran from {first[:12]}")
    rule = commit(repo, {"harness/inference/decide.py": "rule = 2\n"})  # resuming replays the rule with its code
    assert "(harness/inference/decide.py)" in stale(report(repo, git_commits=[later]), repo)
    assert stale(report(repo, git_commits=[later, rule]), repo) is None


def test_a_report_that_records_no_commit_or_an_unknown_one_is_stale(ran):
    repo, _ = ran
    assert "it records no git commit the study ran from" in stale(report(repo), repo)
    assert "'unknown', which is no commit of this checkout" in stale(report(repo, git_commits=["unknown"]), repo)
    missing = "0123456789abcdef0123456789abcdef01234567"
    assert "which is no commit of this checkout" in stale(report(repo, git_commit=missing), repo)


def test_a_run_on_a_branch_without_the_change_is_stale(ran):
    repo, _ = ran
    trunk = _git(repo, "rev-parse", "--abbrev-ref", "HEAD")
    _git(repo, "checkout", "-q", "-b", "side")
    side = commit(repo, {"notes.md": "side\n"})
    _git(repo, "checkout", "-q", trunk)
    commit(repo, {"harness/ledger.py": "counted = 2\n"})
    assert "(harness/ledger.py)" in stale(report(repo, git_commits=[side]), repo)


def test_a_suite_is_as_current_as_its_workloads_runs(ran):
    repo, first = ran
    suite = report(repo, "suite", workloads={"30 shots": "s", "10 shots": "s--shots-10"})
    assert "its workloads' reports record no git commit" in stale(suite, repo)
    report(repo, "s", git_commits=[first])
    report(repo, "s--shots-10", git_commits=[first])
    assert stale(suite, repo) is None
    commit(repo, {"harness/suite_spec.py": "targets = 2\n"})
    assert "(harness/suite_spec.py)" in stale(suite, repo)


def test_outside_a_git_checkout_the_check_says_why_it_cannot_answer(tmp_path):
    assert checkout_problem(tmp_path) == f"{tmp_path} is not a git checkout"


def _committed() -> list[Path]:
    try:
        names = _git(ROOT, "ls-files", "reports/*/summary.json").split()
    except (OSError, subprocess.CalledProcessError):  # not a checkout: the test below says so and skips
        return sorted(ROOT.glob("reports/*/summary.json"))
    return [ROOT / name for name in names]


@pytest.mark.parametrize("summary", _committed(), ids=lambda p: p.parent.name)
def test_no_committed_report_predates_the_code_that_computes_its_numbers(summary):
    problem = checkout_problem(ROOT)
    if problem:
        pytest.skip(problem)
    found = stale(summary, ROOT)
    assert found is None, found


def test_a_report_rebuilt_after_a_decision_change_is_current_and_a_training_change_still_needs_a_rerun(ran):
    repo, first = ran
    rule = commit(repo, {"harness/inference/decide.py": "rule = 3\n"})
    assert "(harness/inference/decide.py)" in stale(report(repo, git_commits=[first]), repo)
    assert stale(report(repo, git_commits=[first], report_commit=rule), repo) is None  # rebuilt by the new rule
    commit(repo, {"harness/learn/train.py": "fit = 3\n"})
    assert "(harness/learn/train.py)" in stale(report(repo, git_commits=[first], report_commit=rule), repo)
