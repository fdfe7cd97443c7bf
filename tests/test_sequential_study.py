"""The sequential rule run for real: a three-arm study whose verdict seeds come in batches of 10, 15, 20.

"twin" is "good" under another name (the same configuration and seeds), so good - twin must never be declared
a difference and runs to the cap; "slow" has a learning rate far too small to learn (its head stays near its
random start: validation within 10 points of chance, a failure to train), so good - slow is decided at the
first look on accuracy over every run (the endpoint "all": slow's runs count at their test accuracy near
chance), and slow runs no second batch. Run by two workers; in a second copy one of them is killed
while it trains a seed of the second batch, then restarted: the records and decisions must be the same.
"""

from __future__ import annotations

import json
import shutil
import signal
import time
from collections import Counter

import optuna
import pytest

from harness import ledger
from harness.schema import Phase, counts
from harness.study_file import load_study
from tests.test_workers import Tiny, wait_all

SEQUENTIAL = '''
from harness.analysis_plan import Difference
from harness.spec import Arm, StudySpec, TrialConfig


def search_space(trial, arm):
    return {{}}


STUDY = StudySpec(
    question="Does a far too small learning rate lose, and does a configuration tie with itself?",
    arms=(Arm("good", "adam", "linear_probe", {{"lr": 0.01}}), Arm("twin", "adam", "linear_probe", {{"lr": 0.01}}),
          Arm("slow", "sgd", "linear_probe", {{"lr": 3e-4}})),
    search_space=search_space,
    base=TrialConfig(model="lenet5", weights="source", pretrain_epochs=5, epochs=6, shots=10),
    n_trials=1, seeds=10, seed_step=5, seed_cap=20, confirm_top=1, prune=False, vary=("seed",), chance_margin=0.1,
    plan=(Difference("good", "slow"), Difference("good", "twin")),
)
'''


class Sequential(Tiny):
    def __init__(self, tmp_path, name: str | None = None):
        super().__init__(tmp_path)
        if name:
            self.name = name
        (self.studies / f"{self.name}.py").write_text(SEQUENTIAL.format())

    def rule(self):
        spec = load_study(self.name, self.studies)
        confirm = {a.name: ledger.slots(optuna.load_study(study_name=f"{self.name}/{a.name}/confirm",
                                                          storage=self.storage()).get_trials(deepcopy=False),
                                        a.name, Phase.CONFIRM) for a in spec.arms}
        return ledger.sequential_state(spec, confirm)

    def verdict_seeds(self) -> dict[str, Counter]:
        """Per arm: how often each verdict seed was counted."""
        return {name.split("/")[1]: Counter(t.user_attrs["seed"] for t in study.get_trials() if counts(t))
                for name, study in self.studies_of().items() if name.endswith("/confirm")}

    def results(self) -> dict:
        return {(name, t.user_attrs["slot"]): (t.value, t.user_attrs.get("test"))
                for name, study in self.studies_of().items() for t in study.get_trials() if counts(t)}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Sequential:
    study = Sequential(tmp_path_factory.mktemp("sequential"))
    outs = wait_all([study.start("--workers", "2")])  # two forked workers: one process's imports
    assert all("Traceback" not in out for out in outs), outs
    study.outs = outs
    return study


@pytest.mark.slow
def test_twin_arms_never_differ_and_run_to_the_cap_while_a_plain_loser_stops_at_the_first_look(uninterrupted):
    rule = uninterrupted.rule()
    (slow, twin) = rule.decisions
    assert slow.outcome == "a > b" and rule.stopped_at[0] == 10  # good beats slow at n = 10
    assert not twin.decided and rule.stopped_at[1] is None and rule.looks_done == (10, 15, 20)
    seeds = uninterrupted.verdict_seeds()
    assert set(seeds["slow"]) == set(range(1, 11))  # decided: no second batch for its arm
    assert set(seeds["good"]) == set(seeds["twin"]) == set(range(1, 21))
    assert all(set(c.values()) == {1} for c in seeds.values())  # each seed once
    report = (uninterrupted.reports / uninterrupted.name / "README.md").read_text()
    assert "(decided at n = 10)" in report and "(undecided at the cap, n = 20)" in report
    summary = json.loads((uninterrupted.reports / uninterrupted.name / "summary.json").read_text())
    assert summary["sequential"]["seeds"] == {"good": 20, "twin": 20, "slow": 10}
    assert any("[look at n = 10]" in out for out in uninterrupted.outs)  # the terminal shows the batches


@pytest.mark.slow
def test_a_worker_killed_mid_batch_and_restarted_changes_nothing(tmp_path, uninterrupted):
    crashed = Sequential(tmp_path, uninterrupted.name)
    shutil.copytree(uninterrupted.stores.checkpoints, crashed.stores.checkpoints)  # the same source checkpoints
    first, second = crashed.start(), crashed.start()
    study_name, number = _kill_in_second_batch(crashed, first)  # the run the kill cut off
    out = wait_all([crashed.start(), second])
    assert all("Traceback" not in o for o in out), out
    seeds = crashed.verdict_seeds()
    assert all(set(c.values()) == {1} for c in seeds.values())  # each (trial, seed) exactly once
    cut = next(t for t in crashed.studies_of()[study_name].get_trials() if t.number == number)
    assert cut.user_attrs.get("outcome") == "stale", (cut.state, cut.user_attrs)  # found stale; its seed ran again:
    assert crashed.results() == uninterrupted.results()
    assert [d.outcome for d in crashed.rule().decisions] == [d.outcome for d in uninterrupted.rule().decisions]
    assert not [r for r in crashed.runs() if r.info.status == "RUNNING"]
    killed = [r for r in crashed.runs() if r.info.status == "KILLED"]  # the dead worker's: closed, saying why
    assert killed and all("stopped" in r.data.tags.get("state_reason", "") for r in killed)


def _kill_in_second_batch(study: Sequential, proc, timeout: float = 240) -> tuple[str, int]:
    """SIGKILL `proc` while it trains a verdict seed beyond the first batch; returns (its confirmation study,
    the trial number) of the run it cut off. The worker is stopped (SIGSTOP) before its trial is read again, so
    a run seen RUNNING then cannot end before the kill; one that ended in between lets the worker go on.

    A look reads only the confirmation studies' running trials, through one storage opened once the stores exist:
    a millisecond of CPU, where a fresh storage and every study's summary took 75 ms a look, most of a core beside
    the two workers it watches."""
    from harness import internals

    running = (optuna.trial.TrialState.RUNNING,)
    deadline, storage = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the worker finished before it could be killed"
        try:
            storage = storage or study.storage()
            for name in optuna.get_all_study_names(storage):
                if not (name.startswith(f"{study.name}/") and name.endswith("/confirm")):
                    continue
                for t in storage.get_all_trials(storage.get_study_id_from_name(name), deepcopy=False, states=running):
                    if t.user_attrs.get("seed", 0) > 10 and t.user_attrs.get("mlflow_run_id") and \
                            t.user_attrs.get("worker", "").split(":")[1:2] == [str(proc.pid)]:
                        proc.send_signal(signal.SIGSTOP)
                        still = False
                        try:
                            still = storage.get_trial(internals.trial_id(t)).state == optuna.trial.TrialState.RUNNING
                        finally:
                            if not still:  # the run ended first (or the read failed): the worker goes on
                                proc.send_signal(signal.SIGCONT)
                        if still:
                            proc.send_signal(signal.SIGKILL)
                            proc.wait()
                            return name, t.number
        except Exception as error:  # noqa: BLE001 - the stores are being created: look again
            print(f"stores not ready: {error}")
        time.sleep(0.05)
    raise AssertionError("no second-batch seed to kill")
