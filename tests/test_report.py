"""Specification of harness.report: reports and an index built from a synthetic store that follows the
schema in harness.run.tracking exactly (parent run, search and confirmation child runs, Optuna studies)."""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path

import numpy as np
import optuna
import pytest
from mlflow import MlflowClient
from mlflow.entities import Metric, Param

from harness.analysis.findings import findings
from harness.analysis.records import load_record, setting_points
from harness.analysis_plan import Difference
from harness.report import main
from harness.reporting.markdown import build_index, build_report
from harness.reporting.staleness import head_commit
from harness.schema import SCHEMA_VERSION, StudyAttr
from harness.spec import Arm, StudySpec, TrialConfig
from harness.stores import Stores, confirm_study_name, experiment_id, open_storage, optuna_study_name

CLASSES = ["5", "6", "7", "8", "9"]
EPOCHS = 4
LOG_LR = optuna.distributions.FloatDistribution(1e-4, 1.0, log=True)
UNIT = optuna.distributions.FloatDistribution(0.0, 0.99)  # momentum or beta1
LOG_WD = optuna.distributions.FloatDistribution(1e-6, 1e-2, log=True)
JITTER = [0.01, -0.02, 0.0, 0.015, -0.005]
SHUFFLED = [0.0, 0.015, -0.02, -0.005, 0.01]  # the same spread in another order: paired differences vary


def _no_search(trial, arm):
    raise AssertionError("a report never searches")


def make_spec(name: str, arms: tuple[Arm, ...], n_trials: int = 6, seeds: int = 3, **kwargs) -> StudySpec:
    return StudySpec(name=name, question=f"Which arm of {name} wins?", arms=arms, search_space=_no_search,
                     base=TrialConfig(study=name, epochs=EPOCHS), n_trials=n_trials, seeds=seeds, **kwargs)


FROZEN = (Arm("sgd-frozen", "sgd", "linear_probe"), Arm("adam-frozen", "adam", "linear_probe"))
CLEAR = make_spec("clear", FROZEN, seeds=5, plan=(Difference("adam-frozen", "sgd-frozen"),))  # as --seeds 5 ran it
TIE = make_spec("tie", (Arm("sgd", "sgd"), Arm("adam", "adam"), Arm("rmsprop", "rmsprop")), n_trials=3)
SWEEP = make_spec("sweep", (*(Arm(f"{opt}-n{n}", opt, "full", {"transfer_stages": n})
                               for opt in ("sgd", "adam") for n in range(3)),
                             Arm("baseline", "sgd", "full", {"weights": "none"})),
                  n_trials=3, x_axis="transfer_stages", sampler="tpe",
                  plan=(Difference("adam-n0", "sgd-n0"), Difference("adam-n2", "sgd-n2")))


# --- a synthetic store, written through the MLflow and Optuna clients --------------------------------


def _log(client: MlflowClient, eid: str, tags: dict, params: dict, metrics: dict, history: list[float],
         status: str = "FINISHED") -> str:
    rid = client.create_run(eid, tags=tags).info.run_id
    per_epoch = [Metric("val_acc", v, 0, epoch) for epoch, v in enumerate(history)]
    client.log_batch(rid, metrics=per_epoch + [Metric(k, v, 0, 0) for k, v in metrics.items()],
                     params=[Param(k, str(v)) for k, v in params.items()])
    client.set_terminated(rid, status)
    return rid


def _parent(client: MlflowClient, eid: str, spec: StudySpec) -> str:
    tags = {"phase": "study", "study": spec.name, "command": f"python -m harness.study {spec.name} --seeds 5",
            "git_commit": "abc1234", "version.torch": "2.5.1", "version.mlflow": "3.17.2"}
    rid = client.create_run(eid, tags=tags).info.run_id
    settings = spec.settings()
    client.log_batch(rid, params=[Param(k, str(v)) for k, v in settings.items()])  # as the run ran them
    counts = {"train": [30] * 5, "val": [28] * 5, "test": [72] * 5}
    overview = {"dataset": "digits", "classes": CLASSES, "counts": counts,
                "sizes": {k: sum(v) for k, v in counts.items()},
                "fingerprints": {"train": "aaa111", "val": "bbb222", "test": "ccc333"}}
    client.log_dict(rid, overview, "data/overview.json")
    rng = np.random.default_rng(0)
    arrays = {}
    for split in counts:
        arrays[f"{split}_x"] = rng.random((20, 1, 32, 32)).astype(np.float32)
        arrays[f"{split}_y"] = np.repeat(np.arange(5), 4)
    with tempfile.TemporaryDirectory() as tmp:
        np.savez_compressed(Path(tmp) / "samples.npz", **arrays)
        client.log_artifact(rid, str(Path(tmp) / "samples.npz"), "data")
    client.set_terminated(rid)
    return rid


def _child_tags(parent: str, arm: Arm, phase: str, trial: int, seed: int, state: str) -> dict:
    return {"mlflow.parentRunId": parent, "phase": phase, "arm": arm.name, "optimizer": arm.optimizer,
            "freeze": arm.strategy, "optuna_trial": str(trial), "seed": str(seed), "outcome": state,
            "state_reason": "median pruner" if state == "pruned" else "", "checkpoint": "lenet5-src-0123",
            "checkpoint_run_id": "pretrainrun42"}


def _config(spec: StudySpec, arm: Arm, params: dict, seed: int) -> TrialConfig:
    extra = "momentum" if arm.optimizer == "sgd" else "beta1"
    return arm.config(spec.base, lr=params["lr"], weight_decay=params["weight_decay"],
                      optimizer_params={extra: params[extra]}, seed=seed)


def _search(client, eid, parent, spec: StudySpec, arm: Arm, storage, rng) -> None:
    """Trials 0, 1, 2 are complete, pruned, failed; the rest complete."""
    study = optuna.create_study(study_name=optuna_study_name(spec.name, arm.name), storage=storage,
                                direction="maximize")
    study.set_user_attr("sampler", spec.sampler)
    extra = "momentum" if arm.optimizer == "sgd" else "beta1"
    states = ["COMPLETE", "PRUNED", "FAIL"] + ["COMPLETE"] * (spec.n_trials - 3)
    for number, state in enumerate(states):
        params = {"lr": 10 ** rng.uniform(-4, 0), extra: rng.uniform(0, 0.99), "weight_decay": 1e-4}
        top = 0.55 + 0.35 * np.exp(-((np.log10(params["lr"]) + 1.5) ** 2))
        history = list(top * np.linspace(0.6, 1.0, EPOCHS)[: 2 if state == "PRUNED" else EPOCHS])
        metrics = {"wall_seconds": rng.uniform(2, 9)}
        if state != "FAIL":
            metrics["best_val_acc"] = max(history)
        tags = _child_tags(parent, arm, "search", number, 0, {"FAIL": "failed"}.get(state, state.lower()))
        rid = _log(client, eid, tags, _config(spec, arm, params, 0).flat(), metrics, history,
                   "FAILED" if state == "FAIL" else "FINISHED")
        study.add_trial(optuna.trial.create_trial(
            state=optuna.trial.TrialState[state], value=max(history) if state == "COMPLETE" else None,
            params=params, distributions={"lr": LOG_LR, extra: UNIT, "weight_decay": LOG_WD},
            intermediate_values=dict(enumerate(history)),
            user_attrs={"mlflow_run_id": rid, "state_reason": ""}))


def _confirm(client, eid, parent, spec, arm, storage, test_acc: list[float], decoys: bool,
             val_acc: list[float] | None = None) -> list[str]:
    best = optuna.load_study(study_name=optuna_study_name(spec.name, arm.name), storage=storage).best_trial
    confirm = optuna.create_study(study_name=confirm_study_name(spec.name, arm.name), storage=storage,
                                  direction="maximize")

    def slot(trial: int, seed: int, rid: str, state: str = "COMPLETE", value=None, test=None, outcome=""):
        attrs = {"slot": f"{trial}/{seed}", "search_trial": trial, "seed": seed, "mlflow_run_id": rid}
        attrs |= {"test": {"acc": test, "classes": len(CLASSES)}} if test is not None else {}
        attrs |= {"outcome": outcome} if outcome else {}
        confirm.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState[state], value=value,
                                                    user_attrs=attrs))

    ids = []
    for seed, acc in enumerate(test_acc, start=1):
        history = list(acc * np.linspace(0.7, 1.0, EPOCHS) + 0.01 * seed)
        metrics = {"test_acc": acc, "best_val_acc": max(history), "wall_seconds": 5.0}
        rid = _log(client, eid, _child_tags(parent, arm, "confirm", best.number, seed, "complete"),
                   _config(spec, arm, best.params, seed).flat(), metrics, history)
        right = round(72 * acc)
        matrix = [[right if i == j else (72 - right) // 4 for j in range(5)] for i in range(5)]
        client.log_dict(rid, {"classes": CLASSES, "matrix": matrix}, "confusion.json")
        slot(best.number, seed, rid, value=max(history) if val_acc is None else val_acc[seed - 1], test=acc)
        ids.append(rid)
    if decoys:  # runs that must not count: a cut-off attempt of a verdict seed, a finished run of another trial
        cut = _child_tags(parent, arm, "confirm", best.number, 1, "interrupted")
        slot(best.number, 1, _log(client, eid, cut, {}, {}, [], "KILLED"), "FAIL", outcome="interrupted")
        other = _child_tags(parent, arm, "confirm", best.number + 100, 1, "complete")
        slot(best.number + 100, 1, _log(client, eid, other, {}, {"test_acc": 0.01}, []), value=0.5, test=0.01)
    return ids


def write_study(stores: Stores, spec: StudySpec, test_acc: dict[str, list[float]],
                decoys: bool = False, val_acc: dict[str, list[float]] | None = None) -> dict[str, list[str]]:
    """A study's records as harness.study leaves them, plus `decoys` (confirm runs that must not count), and
    validation accuracies `val_acc` where given (else the best of a curve that follows the test accuracy);
    returns the counted confirm run ids per arm."""
    eid = experiment_id(stores, spec.name)
    client, storage = MlflowClient(stores.mlflow_uri), open_storage(stores)
    parent = _parent(client, eid, spec)
    home = optuna.create_study(study_name=spec.name, storage=storage, load_if_exists=True)
    home.set_user_attr(StudyAttr.SCHEMA, SCHEMA_VERSION)
    rng = np.random.default_rng(len(spec.name))
    confirmed = {}
    for arm in spec.arms:
        _search(client, eid, parent, spec, arm, storage, rng)
        if arm.name in test_acc:
            accs = test_acc[arm.name]
            confirmed[arm.name] = _confirm(client, eid, parent, spec, arm, storage, accs, decoys,
                                           (val_acc or {}).get(arm.name))
    return confirmed


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict:
    """One store holding three studies; the reports of two (the third is only judged: figures take time)."""
    root = tmp_path_factory.mktemp("store")
    stores, reports = Stores(root=root / "mlruns"), root / "reports"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    clear = {"sgd-frozen": [0.6 + j for j in JITTER], "adam-frozen": [0.9 + j for j in SHUFFLED]}
    confirmed = write_study(stores, CLEAR, clear, decoys=True)
    write_study(stores, TIE, {"sgd": [0.8 + j for j in JITTER], "adam": [0.8 + j for j in SHUFFLED]})
    depth = {a.name: 0.9 - 0.1 * a.fixed.get("transfer_stages", 1) + 0.03 * (a.optimizer == "adam")
             for a in SWEEP.arms}
    sweep = {name: [acc + j for j in JITTER[:3]] for name, acc in depth.items()}
    # baseline's seed 2 at chance on test (5 classes) after 80% on validation: a broken split, not a result
    sweep["baseline"][1], val = 0.21, {"baseline": [0.8, 0.8, 0.8]}
    swept = write_study(stores, SWEEP, sweep, val_acc=val)
    readmes = {spec.name: build_report(spec, stores, reports) for spec in (CLEAR, SWEEP)}
    return {"root": root, "stores": stores, "reports": reports, "readme": readmes, "confirmed": confirmed,
            "impossible": swept["baseline"][1],
            "text": {name: path.read_text() for name, path in readmes.items()},
            "tie": findings(load_record(TIE, stores))}


def _section(text: str, title: str) -> str:
    return text.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def _row(table: str, arm: str) -> str:
    return next(line for line in table.splitlines() if line.startswith(f"| {arm} |"))


# --- verdicts --------------------------------------------------------------------------------------


def test_report_starts_with_title_question_and_sections_in_order(built):
    text = built["text"]["clear"]
    assert text.startswith("# clear\n\n> Which arm of clear wins?")
    titles = ["## Verdict", "## Results per arm", "## The six steps", "## Figures", "## Setup"]
    positions = [text.index(t) for t in titles]
    assert positions == sorted(positions)


def test_a_clearly_better_arm_is_named_the_winner_with_the_budget_and_its_ci(built):
    verdict = _section(built["text"]["clear"], "Verdict")
    assert ("- difference: adam-frozen - sgd-frozen: **adam-frozen beats sgd-frozen**; estimate +30.0 points "
            "(95% CI +") in verdict and "5 seeds paired); MDE " in verdict


def test_equal_arms_give_no_significant_difference(built):
    sentences = built["tie"].sentences
    assert sentences[0].startswith("difference: sgd - adam: **undecided**; estimate ")
    assert "; to detect 2.0 points with 80% power would take about " in sentences[0]


def test_without_a_plan_every_pair_is_compared_and_an_arm_without_confirmation_stays_in_the_family(built):
    sentences, compared = built["tie"].sentences, built["tie"].family
    assert len(sentences) == 3  # sgd-adam, sgd-rmsprop, adam-rmsprop
    assert sentences[1] == "difference: sgd - rmsprop: no decision, rmsprop has no confirmation runs."
    assert compared == 3 and "Holm over 3" in sentences[0]  # nothing leaves the family, not even without data


def test_more_than_one_comparison_reports_holm_adjusted_p_values(built):
    assert "Holm over 2" in _section(built["text"]["sweep"], "Verdict")


# --- table, six steps, setup -----------------------------------------------------------------------


def test_table_counts_only_finished_confirm_runs_of_the_best_trial(built):
    row = _row(_section(built["text"]["clear"], "Results per arm"), "adam-frozen")
    assert "| 90.0 ± 1.4 (n=5) |" in row


def test_table_shows_trial_states_and_best_hyperparameters(built):
    row = _row(_section(built["text"]["clear"], "Results per arm"), "sgd-frozen")
    # the decoy was cut off: not scored; then the trial states
    assert "| 0/5 (0.0 to 52.2) (+1 crashed, not counted) | 4 / 1 / 1 |" in row
    assert "lr=" in row and "momentum=" in row and "weight_decay=0.0001" in row


def test_table_wall_time_sums_the_arms_search_and_confirm_runs(built):
    runs = load_record(CLEAR, built["stores"]).log.children("sgd-frozen")
    row = _row(_section(built["text"]["clear"], "Results per arm"), "sgd-frozen")
    assert f"| {runs['wall_seconds'].sum():.0f} s |" in row


def test_six_steps_point_at_their_evidence(built):
    steps = _section(built["text"]["clear"], "The six steps").strip().splitlines()
    assert [line[:3] for line in steps] == ["1. ", "2. ", "3. ", "4. ", "5. ", "6. "]
    expected = ["torch 2.5.1", "digits, classes 5, 6, 7, 8, 9", "train 150 images (`aaa111`)",
                "(`samples.png`, in the figures below)",
                "1 source checkpoint (one per pretraining seed; listed under Setup)",
                "(`confusion.png`, in the figures below)"]
    for line, evidence in zip(steps, expected, strict=True):
        assert evidence in line
    setup = _section(built["text"]["clear"], "Setup")  # the ids, collapsed, where the setup is read
    assert "<details><summary>1 source checkpoint</summary>" in setup
    assert "- checkpoint `lenet5-src-0123` (MLflow run `pretrainrun42`)" in setup


def test_setup_lists_task_command_commit_versions_and_how_to_browse(built):
    setup = _section(built["text"]["clear"], "Setup")
    for fact in ("digits, source classes (0, 1, 2, 3, 4) -> target classes (5, 6, 7, 8, 9)", "lenet5",
                 "`python -m harness.study clear --seeds 5`", "`abc1234`", "mlflow 3.17.2", "sampler qmc",
                 "6 trials per arm", "found: 1, 2, 3, 4, 5", "epochs 4",
                 "mlflow ui --backend-store-uri sqlite:///", "http://127.0.0.1:5000/#/experiments/",
                 "runs?workflowType=machine_learning&orderByKey="):
        assert fact in setup


def test_setup_shows_the_settings_of_the_study_as_it_ran(built):
    setup = _section(built["text"]["clear"], "Setup")
    assert "on 5 verdict seeds" in setup  # the recorded study (--seeds 5), not make_spec's default of 3


def test_setup_lists_parent_and_counted_child_run_ids(built):
    setup = _section(built["text"]["clear"], "Setup")
    record = load_record(CLEAR, built["stores"])
    for run_id in list(record.log.parents["run_id"]) + [r for ids in built["confirmed"].values() for r in ids]:
        assert run_id in setup
    assert setup.count("<details>") == 3  # the checkpoints, then each parent run's children
    assert setup.count("counted in the verdict") == 10  # 5 seeds x 2 arms; the decoys are listed, not counted


# --- figures ---------------------------------------------------------------------------------------


def test_every_figure_link_is_a_relative_png_that_exists(built):
    readme = built["readme"]["clear"]
    links = re.findall(r"\]\(([^)]+\.png)\)", readme.read_text())
    assert len(set(links)) >= 11
    for link in links:
        assert not link.startswith(("/", "http")) and (readme.parent / link).is_file()


def test_the_expected_figures_are_drawn(built):
    expected = {"samples", "class_counts", "expected_max", "val_acc_vs_lr", "val_acc_vs_effective_lr",
                "acc_vs_wall_time", "slices", "pairs", "learning_curves", "test_acc", "confusion"}
    assert {p.stem for p in built["readme"]["clear"].parent.glob("*.png")} == expected


def test_a_non_iid_sampler_gets_a_note_instead_of_an_expected_max_curve(built):
    assert not (built["readme"]["sweep"].parent / "expected_max.png").exists()
    assert "tpe sampler's trials are not i.i.d." in built["text"]["sweep"]


def test_a_study_with_an_x_axis_plots_test_accuracy_against_it(built):
    assert (built["readme"]["sweep"].parent / "test_acc_vs_transfer_stages.png").is_file()
    assert "![Test accuracy vs transfer_stages](test_acc_vs_transfer_stages.png)" in built["text"]["sweep"]


def test_x_axis_variants_group_arms_differing_only_in_the_setting_and_keep_a_baseline_apart(built):
    points = setting_points(load_record(SWEEP, built["stores"]), "transfer_stages")
    variants = points.groupby("variant")["x"].apply(list).to_dict()
    assert variants.keys() == {"sgd-n", "adam-n", "baseline"}
    assert sorted(variants["sgd-n"]) == [0, 1, 2]
    assert np.isnan(variants["baseline"][0])  # no transfer_stages: drawn as a reference line


# --- summaries, index, errors, CLI -----------------------------------------------------------------


def test_summary_json_holds_the_question_and_verdicts(built):
    summary = json.loads((built["readme"]["clear"].parent / "summary.json").read_text())
    assert summary["question"] == CLEAR.question
    assert "adam-frozen beats sgd-frozen" in summary["verdicts"][0]


def test_summary_json_records_the_commit_and_command_the_study_ran_from(built):
    summary = json.loads((built["readme"]["clear"].parent / "summary.json").read_text())
    assert summary["git_commit"] == "abc1234" and summary["git_commits"] == ["abc1234"]  # the parent run's tags
    assert summary["report_commit"] == head_commit()  # the code that built it: its decisions are that code's
    assert summary["command"] == "python -m harness.study clear --seeds 5" and summary["study_file"] == "clear"


def test_summary_json_holds_one_estimate_over_every_seed_and_the_decisions_own(built):
    (d,) = json.loads((built["readme"]["clear"].parent / "summary.json").read_text())["decisions"]
    assert d["estimate"] == pytest.approx(0.3) and d["seeds"] == 5  # a fixed design: both are over every seed
    assert d["estimate_at_decision"] == d["estimate"] and d["seeds_at_decision"] == 5 and d["low"] < 0.3 < d["high"]


def test_a_decision_stopped_early_keeps_its_own_estimate_beside_the_one_over_every_seed():
    from harness.analysis_plan import NonInferior
    from harness.reporting.markdown import _decision
    from tests.test_findings import record

    early, late = [0.02 + j for j in JITTER], [-0.01 + j for j in SHUFFLED]
    sgd = [0.8 + j for j in SHUFFLED + JITTER]
    r = record({"adam": [s + d for s, d in zip(sgd, early + late, strict=True)], "sgd": sgd},
               plan=[NonInferior("adam", "sgd", 0.05), Difference("adam", "sgd")], seeds=5, seed_step=5, seed_cap=10)
    found = findings(r)
    d = _decision(found.decisions[0], found.overall[0])
    assert d["estimate"] == pytest.approx(np.mean(early + late)) and d["seeds"] == 10
    assert d["estimate_at_decision"] == pytest.approx(np.mean(early)) and d["seeds_at_decision"] == 5
    assert (d["low"], d["high"]) == (found.decisions[0].low, found.decisions[0].high)  # the interval where it stopped
    assert d["margin"] == 0.05 and d["margin_reason"] == "" and 0 < d["shown_if_equal"] <= 1


def test_a_run_at_chance_on_test_but_not_validation_is_a_warning_first_in_the_verdict(built):
    verdict = _section(built["text"]["sweep"], "Verdict")
    assert verdict.lstrip().startswith(f"> **Impossible run**: baseline, seed 2 (MLflow run `{built['impossible']}`)")
    assert "**Impossible run**" not in built["text"]["clear"]
    summary = json.loads((built["readme"]["sweep"].parent / "summary.json").read_text())
    assert [(r["arm"], r["seed"], r["run_id"]) for r in summary["impossible_runs"]] == [
        ("baseline", 2, built["impossible"])]


def test_index_lists_each_study_with_its_verdict_and_a_relative_link(built):
    index = build_index(built["reports"]).read_text()
    assert "[sweep](sweep/README.md)" in index
    assert "adam-frozen beats sgd-frozen, +30.0 points over 5 seeds" in _row(index, "[clear](clear/README.md)")


def test_a_study_without_runs_fails_with_a_message_and_writes_nothing(built, tmp_path):
    with pytest.raises(ValueError, match="no MLflow runs of study 'ghost'"):
        build_report(make_spec("ghost", CLEAR.arms), built["stores"], tmp_path / "reports")
    assert not (tmp_path / "reports").exists()


def test_cli_rejects_an_unknown_study_and_lists_the_choices(tmp_path, capsys):
    studies = tmp_path / "studies"
    studies.mkdir()
    (studies / "alpha.py").write_text("")
    code = main(["nope", "--root", str(tmp_path / "mlruns"), "--studies", str(studies)])
    err = capsys.readouterr().err
    assert code != 0
    assert "unknown study 'nope'" in err and "alpha" in err
    assert not (tmp_path / "mlruns").exists()  # bad input writes nothing


def test_cli_needs_a_name_or_all(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([])
    assert exit_info.value.code != 0
    assert "--all" in capsys.readouterr().err


STUDY_FILE = """from harness.analysis_plan import Difference
from harness.spec import Arm, StudySpec
STUDY = StudySpec(name="clear", question="Which arm of clear wins?", search_space=None,
                  arms=(Arm("sgd-frozen", "sgd", "linear_probe"), Arm("adam-frozen", "adam", "linear_probe")),
                  plan=(Difference("adam-frozen", "sgd-frozen"),))
"""


def test_cli_all_rebuilds_every_study_with_runs_and_the_index(built, tmp_path):
    studies = tmp_path / "studies"
    studies.mkdir()
    (studies / "clear.py").write_text(STUDY_FILE)
    (studies / "unrun.py").write_text(STUDY_FILE.replace('name="clear"', 'name="unrun"'))
    code = main(["--all", "--root", str(built["stores"].root), "--studies", str(studies),
                 "--reports", str(tmp_path / "reports")])
    assert code == 0
    assert sorted(p.name for p in (tmp_path / "reports").iterdir()) == ["README.md", "clear"]
    assert "[clear](clear/README.md)" in (tmp_path / "reports" / "README.md").read_text()


def test_a_best_trial_that_does_not_reproduce_over_seeds_is_flagged():
    from types import SimpleNamespace

    from harness.reporting.markdown import _not_reproduced

    def arm(best, confirm_vals):
        return SimpleNamespace(best=SimpleNamespace(value=best), val_acc=lambda: confirm_vals)

    record = SimpleNamespace(arms={"lucky": arm(0.92, [0.20, 0.21, 0.46]), "steady": arm(0.92, [0.90, 0.91, 0.89])})
    (line,) = _not_reproduced(record)
    assert line.startswith("Caution, lucky") and "does not reproduce" in line


def test_a_study_that_varies_the_model_names_every_model():
    from types import SimpleNamespace

    import pandas as pd

    from harness.analysis.mlflow_log import RunLog
    from harness.reporting.markdown import _distinct

    runs = pd.DataFrame({"run_id": list("abcde"), "tags.phase": ["search", "confirm", "search", "confirm", "study"],
                         "params.model": ["resnet50", "lenet5", "resnet50", None, "vgg16"]})
    log = RunLog(None, "1", runs)
    assert _distinct(SimpleNamespace(log=log), "model") == "resnet50, lenet5"  # child runs only


def test_the_test_accuracy_strip_plot_is_the_same_file_on_every_rebuild_and_leaves_numpy_s_generator_alone(tmp_path):
    """seaborn jitters strip-plot dots with numpy's global generator: seeded for the figure, then put back."""
    import pandas as pd

    from harness.reporting.figures_base import arm_palette
    from harness.reporting.figures_confirm import test_accuracy as draw_test_accuracy

    rng = np.random.default_rng(1)
    confirm = pd.DataFrame({"arm": ["a"] * 8 + ["b"] * 8, "test_acc": rng.uniform(0.6, 0.9, 16)})
    np.random.seed(123)
    expected_next = np.random.random()
    np.random.seed(123)
    files = [draw_test_accuracy(confirm, arm_palette(["a", "b"]), tmp_path / f"{i}.png").read_bytes() for i in range(2)]
    assert files[0] == files[1]
    assert np.random.random() == expected_next  # the caller's stream goes on as if nothing had drawn


# --- stores of another schema ------------------------------------------------------------------------


def test_stores_without_a_schema_version_are_refused_with_the_migration_then_migrate_and_rebuild(tmp_path):
    stores = Stores(root=tmp_path / "mlruns")
    write_study(stores, CLEAR, {"sgd-frozen": [0.6 + j for j in JITTER], "adam-frozen": [0.9 + j for j in SHUFFLED]})
    optuna.load_study(study_name=CLEAR.name, storage=open_storage(stores)).set_user_attr(StudyAttr.SCHEMA, None)
    with pytest.raises(ValueError, match=r"older harness .* `python -m harness.report clear --migrate`"):
        load_record(CLEAR, stores)
    from harness.run.migrate import migrate

    assert migrate(CLEAR, stores) == f"clear: migrated to schema {SCHEMA_VERSION}"
    assert migrate(CLEAR, stores) == f"clear: already at schema {SCHEMA_VERSION}"
    assert findings(load_record(CLEAR, stores)).decisions[0].outcome == "a > b"


def test_stores_of_a_newer_schema_are_refused_with_the_upgrade(tmp_path):
    stores = Stores(root=tmp_path / "mlruns")
    write_study(stores, TIE, {"sgd": [0.8], "adam": [0.8]})
    optuna.load_study(study_name=TIE.name, storage=open_storage(stores)).set_user_attr(StudyAttr.SCHEMA,
                                                                                      SCHEMA_VERSION + 1)
    with pytest.raises(ValueError, match="newer harness than this one .* upgrade harness"):
        load_record(TIE, stores)


def test_a_study_that_ran_before_confirmation_trials_held_their_test_accuracy_cannot_be_migrated(tmp_path):
    from harness.run.migrate import migrate

    stores = Stores(root=tmp_path / "mlruns")
    write_study(stores, TIE, {"sgd": [0.8, 0.81]})
    storage = open_storage(stores)
    confirm = optuna.load_study(study_name=f"{TIE.name}/sgd/confirm", storage=storage)
    confirm.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.COMPLETE, value=0.8,
                                                user_attrs={"seed": 3, "search_trial": 0, "slot": "0/3"}))
    optuna.load_study(study_name=TIE.name, storage=storage).set_user_attr(StudyAttr.SCHEMA, None)
    with pytest.raises(ValueError, match="before confirmation trials recorded their test accuracy .* fresh --root"):
        migrate(TIE, stores)
