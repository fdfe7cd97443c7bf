"""The slot lines' study-wide count: one count and total across workers, an ETA once a rate is known."""

from types import SimpleNamespace

import optuna
import pytest

from harness.run import progress
from harness.run.slots import confirm_budget
from harness.run.work import Job
from harness.schema import Outcome, Phase
from harness.spec import Arm, StudySpec


def _spec(**kw) -> StudySpec:
    return StudySpec(name="s", question="?", arms=(Arm("a", "sgd"), Arm("b", "adam")), search_space=None,
                     n_trials=3, seeds=2, **kw)


class _Studies:
    """Stands in for a Work: its spec, budgets and studies, whose trials another worker may finish."""

    def __init__(self, spec, finished=0):
        self.spec, self.budgets = spec, {}
        self.study = optuna.create_study()
        self.finish(finished)

    def finish(self, n):
        for _ in range(n):
            self.study.add_trial(optuna.trial.create_trial(value=0.5, user_attrs={"outcome": "complete"}))

    def studies(self):
        return [self.study]


def _job(arm="a"):
    return Job(Phase.SEARCH, Arm(arm, "sgd"), None, SimpleNamespace(number=0), place=1, of=3)


def test_the_total_is_every_arms_search_and_confirmation_slots_and_follows_the_rule(monkeypatch):
    work = _Studies(_spec())
    count = progress.Count(work)
    assert count.total() == 2 * (3 + confirm_budget(work.spec))
    work.budgets = {"a": 12, "b": confirm_budget(work.spec)}  # the sequential rule added seeds to a
    assert count.total() == 3 + 12 + 3 + confirm_budget(work.spec)


def test_the_count_reads_other_workers_slots_from_the_stores_and_adds_its_own_between_reads(monkeypatch):
    clock = [100.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: clock[0])
    work = _Studies(_spec(), finished=4)
    count = progress.Count(work)
    assert count.step()[:2] == (4, count.total())  # the first read: what every worker has finished
    work.finish(3)  # another worker finishes three meanwhile
    clock[0] += 1
    assert count.step()[0] == 5  # between reads: its own slot only
    clock[0] += progress.COUNT_SECONDS
    done, total, left = count.step()
    assert done == 7  # read again: the other worker's too
    rate = (7 - 3) / (clock[0] - 100.0)
    assert left == pytest.approx((total - 7) / rate)


def test_no_eta_until_a_rate_is_measured():
    assert progress.eta(None) == ""
    assert progress.eta(75) == " ETA 1 min 15 s" and progress.eta(9.4) == " ETA 9 s"


def test_a_slot_line_carries_the_count_and_tells_the_listeners(capsys):
    work = _Studies(_spec(), finished=2)
    seen = []
    progress.listeners.append(lambda done, total: seen.append((done, total)))
    try:
        progress.slot_line(_job(), Outcome.COMPLETE, 0.915, 1.24, work)
    finally:
        progress.listeners.clear()
    total = 2 * (3 + confirm_budget(work.spec))
    assert seen == [(2, total)]
    assert capsys.readouterr().out == f"[2/{total}] a search 1/3, trial 0: val acc 91.5% (1.2 s)\n"
