"""Reports from the stores alone: `harness.analysis.records` reads them, `harness.analysis.findings` concludes, this
module writes reports/<study>/README.md with its figures, and the index reports/README.md.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import optuna
import pandas as pd

from harness.analysis.caveats import impossible_runs, margin_facts, margin_lines
from harness.analysis.findings import Findings, decision_word, findings, protocol_notes
from harness.analysis.records import (
    MIN_IMPORTANCE_TRIALS,
    StudyRecord,
    confirm_frame,
    history_frame,
    importance_frame,
    load_record,
    param_frame,
    setting_points,
    trial_frame,
    varied_text,
)
from harness.browse import Browse, browse
from harness.inference.decide import Decision, Estimate
from harness.inference.failures import RateClaim
from harness.reporting import figures
from harness.reporting.answer import answer_md
from harness.reporting.method import method_text, selection_seeds, verdict_seeds
from harness.reporting.staleness import head_commit
from harness.reporting.tables import arm_table, pct, plan_table
from harness.schema import Phase, Tag
from harness.spec import MODEL_SEED, StudySpec
from harness.stores import Stores


def _best_confirm(record: StudyRecord) -> pd.Series | None:
    confirm = confirm_frame(record)
    confirm = confirm[~confirm["diverged"].astype(bool)]
    return None if confirm.empty else confirm.loc[confirm["test_acc"].astype(float).idxmax()]


def _describe(run: pd.Series) -> str:
    return f"{run['arm']}, seed {run['seed']}: test accuracy {pct(run['test_acc'])}%"


def figure_data(record: StudyRecord) -> figures.FigureData:
    """The frames the figures draw, read from the stores (metric histories, the best run's confusion.json)."""
    spec, confirm, best = record.spec, confirm_frame(record), _best_confirm(record)
    importance = importance_frame(record)
    return figures.FigureData(
        arms=[a.name for a in spec.units()], sgd_arms=[a.name for a in spec.units() if a.optimizer == "sgd"],
        sampler=record.sampler, classes=[str(c) for c in record.overview.get("classes", [])],
        samples=record.samples, class_counts=record.overview.get("counts", {}),
        trials=trial_frame(record), confirm=confirm, history=history_frame(record, confirm),
        importance=importance, setting=spec.x_axis,
        setting_points=setting_points(record, spec.x_axis) if spec.x_axis else pd.DataFrame(),
        confusion=None if best is None else record.log.artifact([best["run_id"]], "confusion.json"),
        best_run="" if best is None else _describe(best),
        params=param_frame(record), min_importance_trials=MIN_IMPORTANCE_TRIALS,
        complete={name: arm.count(optuna.trial.TrialState.COMPLETE) for name, arm in record.arms.items()},
    )


# --- markdown --------------------------------------------------------------------------------------


def _versions(tags: dict[str, str]) -> str:
    found = [f"{k.removeprefix('version.')} {v}" for k, v in sorted(tags.items()) if k.startswith("version.")]
    return ", ".join(found) or "not recorded"


def _distinct(record: StudyRecord, param: str) -> str:
    """Every value a param took across the trial and confirmation runs (a study may vary the model per arm)."""
    return ", ".join(record.log.param_values(param)) or "?"


def _header(record: StudyRecord, found: Findings, answer: str = "") -> str:
    bullets = "\n".join(f"- {line}" for line in found.sentences + _not_reproduced(record))
    # first in the verdict, where no reader misses it: such a run puts every verdict below it in doubt
    warnings = [f"> {run.sentence(record.spec.chance_margin)}" for run in impossible_runs(record)]
    verdict = "\n>\n".join(warnings) + "\n\n" if warnings else ""
    first = f"{answer}\n\n" if answer else ""
    parts = [f"# {record.spec.name}\n\n> {record.spec.question}\n\n{first}## Verdict\n\n{verdict}{bullets}"]
    notes = protocol_notes(record)
    if notes:
        parts.append("**Protocol checks** (what this run could not show):\n\n" + "\n".join(f"- {n}." for n in notes))
    parts.append(plan_table(record, found))
    margins = margin_lines(found.decisions)
    if margins:
        parts.append("**Margins** (each in seed sds, and how often its test says shown when the arms are equal):\n\n"
                     + "\n".join(f"- {line}" for line in margins))
    parts.append(method_text(record, found))
    return "\n\n".join(parts)


def _not_reproduced(record: StudyRecord) -> list[str]:
    """Warn where an arm's best search trial was luck: its validation score falls away over fresh seeds."""
    lines = []
    for name, arm in record.arms.items():
        val = pd.Series(arm.val_acc(), dtype=float)
        if arm.best is None or arm.best.value is None or len(val) < 2:
            continue
        mean, sd = float(val.mean()), float(val.std(ddof=1))
        if arm.best.value - mean > max(0.05, 2 * sd):  # 5 points and two seed-sds below the search's score
            lines.append(
                f"Caution, {name}: its best trial reached {pct(arm.best.value)}% validation accuracy in the search "
                f"but {pct(mean)} ± {pct(sd)}% over the confirmation seeds. That configuration does not "
                "reproduce (the search's best was partly luck), and its test accuracy reflects it.")
    return lines


def _figure_ref(out: Path, file: str, text: str) -> str:
    # Named, not linked: a relative link 404s when the report is viewed as an MLflow artifact.
    return f"{text} (`{file}`, in the figures below)" if (out / file).is_file() else f"{text} (not available)"


def _six_steps(record: StudyRecord, out: Path) -> str:
    tags, params, ov = record.log.parent_tags(), record.log.newest_params(), record.overview
    sizes = ov.get("sizes") or {k: sum(v) for k, v in ov.get("counts", {}).items()}
    prints = ov.get("fingerprints", {})
    splits = ", ".join(f"{k} {n} images (`{prints.get(k, '?')}`)" for k, n in sizes.items()) or "not recorded"
    best = _best_confirm(record)
    evaluated = "no confirmation runs yet" if best is None else (
        f"best run {_describe(best)}, {_figure_ref(out, 'confusion.png', 'confusion matrix')}")
    dataset = ov.get("dataset", params.get("dataset", "?"))
    classes = ", ".join(map(str, ov.get("classes", []))) or "?"
    model = f"{_distinct(record, 'model')}, weights `{_distinct(record, 'weights')}`"
    pre = ov.get("preprocess") or {}
    if pre.get("widened_from"):  # a 1-channel model given colour images (TrialConfig.colour = "keep")
        model += (f", its first convolution widened from {pre['widened_from']} to {pre['channels']} channels to "
                  f"keep the images' colour (the pretrained filters repeated and scaled 1/{pre['channels']}, as "
                  "timm's adapt_input_conv does)")
    steps = [
        f"**Import libraries**: {_versions(tags)} (parent-run tags `version.*`).",
        (f"**Import the dataset**: {dataset}, classes {classes}; "
         f"{_figure_ref(out, 'class_counts.png', 'class counts')} (`data/overview.json`)."),
        f"**Split it**: {splits} (split fingerprints).",
        f"**Visualise it**: {_figure_ref(out, 'samples.png', 'sample images per split')} (`data/samples.npz`).",
        f"**Import the pretrained model**: {model}; {_checkpoints(record)}.",
        f"**Evaluate it**: confirmation test accuracy in the table above; {evaluated}.",
    ]
    return "## The six steps\n\n" + "\n".join(f"{i}. {s}" for i, s in enumerate(steps, 1))


def _checkpoints(record: StudyRecord, listed: bool = False) -> str:
    """The source checkpoints: counted where the reader reads on, every id in a collapsed list under Setup."""
    found = [f"checkpoint `{c}` (MLflow run `{r}`)" for c, r in record.log.checkpoints()]
    if not found:
        return "no checkpoint recorded"
    if not listed:
        return f"{len(found)} source checkpoint{'s' * (len(found) > 1)} (one per pretraining seed; listed under Setup)"
    return (f"<details><summary>{len(found)} source checkpoint{'s' * (len(found) > 1)}</summary>\n\n"
            + "\n".join(f"- {line}" for line in found) + "\n\n</details>")


def _figures_md(shown: list[figures.Figure]) -> str:
    blocks = [f"### {f.title}\n\n{f.caption}" + (f"\n\n![{f.title}]({f.file})" if f.file else "")
              for f in shown]
    return "## Figures\n\nArms keep the same colour in every figure.\n\n" + "\n\n".join(blocks)


def _run_line(run: pd.Series, counted: set[str]) -> str:
    trial = run[Tag.OPTUNA_TRIAL]
    what = f"trial {trial}" if run[Tag.PHASE] == Phase.SEARCH else f"seed {run[Tag.SEED]} of trial {trial}"
    mark = ", counted in the verdict" if run["run_id"] in counted else ""
    return f"- `{run['run_id']}` {run[Tag.PHASE]} {what} ({run[Tag.OUTCOME]}{mark})"


def _runs_md(record: StudyRecord, ui: Browse) -> str:
    eid = record.experiment_id

    def parent(r: Any) -> str:
        run = f"[`{r.run_id}`]({ui.run(eid, r.run_id)})" if ui.url else f"`{r.run_id}`"
        holds = f", holds the report (artifacts `{r.report}`)" if isinstance(r.report, str) else ""
        return f"  - {run}, {r.start_time:%Y-%m-%d %H:%M}{holds}"

    parents = "\n".join(parent(r) for r in record.log.parents.itertuples())
    details = []
    for name, arm in record.arms.items():
        runs, counted = record.log.children(name).sort_values("start_time"), set(arm.run_ids)
        lines = "\n".join(_run_line(run, counted) for _, run in runs.iterrows())
        details.append(f"<details><summary>{name}: {len(runs)} child runs</summary>\n\n{lines}\n\n</details>")
    opened = f"`{ui.command}`"
    if ui.url:  # the runs listed flat (harness.browse says why): all of them, or one phase ranked
        opened += (f", then open [every run by name]({ui.runs(eid)}), [the search trials by validation accuracy]"
                   f"({ui.runs(eid, Phase.SEARCH, 'best_val_acc')}) or [the confirmation seeds by test accuracy]"
                   f"({ui.runs(eid, Phase.CONFIRM, 'test_acc')})")
    return (f"- **MLflow**: experiment `{record.spec.name}` (id {eid}), tracking store `{record.stores.mlflow_uri}`; "
            f"parent runs:\n{parents}\n- **Browse**: {opened}\n\n" + "\n".join(details))


def _setup(record: StudyRecord, ui: Browse) -> str:
    tags, params = record.log.parent_tags(), record.log.newest_params()
    epochs = "epochs " + (", ".join(sorted(record.log.param_values("epochs"))) or "?")
    seeds = ", ".join(map(str, sorted({s for arm in record.arms.values() for s in arm.test_acc()})))
    found = ", ".join(f"{n} {len(a.trials)}" for n, a in record.arms.items())
    keys = ("dataset", "source_classes", "target_classes", "shots", "model", "weights")
    p = {k: params.get(k, "?") for k in keys}
    sizes = ", ".join(f"{k} {v}" for k, v in record.overview.get("sizes", {}).items()) or "?"
    pruned = record.setting("prune") == "True"
    pruning = "pruning on (median pruner, per-epoch validation accuracy)" if pruned else "no pruning"
    selection = selection_seeds(record)
    items = [
        (f"**Task**: {p['dataset']}, source classes {p['source_classes']} -> target classes "
         f"{p['target_classes']}, {p['shots']} training images per class."),
        f"**Model**: {_distinct(record, 'model')}, weights `{_distinct(record, 'weights')}`.",
        f"**Splits**: {sizes}.",
        (f"**Budget**: {record.setting('n_trials')} trials per arm (finished: {found}); "
         f"sampler {record.sampler}; {pruning}."),
        (f"**Confirmation**: the {record.setting('confirm_top')} best trials of each arm"
         + (f" on selection seeds {', '.join(map(str, selection))}, the chosen one" if selection else "")
         + f" on {verdict_seeds(record)} (found: {seeds or 'none'}); {epochs}; {varied_text(record)}."),
        f"**Chosen models**: {_models(record)}.",
        f"**Packages**: {_versions(tags)}.",
        f"**Git commit**: `{tags.get('git_commit', 'not recorded')}`.",
        f"**Reproduce**: `{tags.get('command', 'not recorded')}`",
    ]
    return ("## Setup\n\n" + "\n".join(f"- {i}" for i in items) + "\n\n" + _checkpoints(record, listed=True)
            + "\n" + _runs_md(record, ui))


def _models(record: StudyRecord) -> str:
    """Each arm's chosen model, logged by the counted run of its first verdict seed (MLflow tag `model`)."""
    found = []
    for name, arm in record.arms.items():
        mine = arm.verdict  # counted runs, one a seed: a rerun's model, never the cut-off run's as well
        logged = [(s, model) for s in mine if s.run_id and (model := record.log.model(s.run_id))]
        if logged:
            s, model = logged[0]
            found.append(f"{name} `runs:/{s.run_id}/{model}` (seed {s.seed})")
        elif mine:
            found.append(f"{name}: none (seed {MODEL_SEED}'s run logged no model: it failed to train, or the "
                         "model could not be written, as its tags say)")
    return "; ".join(found) + ("; each loads with `mlflow.pytorch.load_model`" if found else "none logged yet")


# --- building, indexing ---------------------------------------------------------------------------


def build_report(spec: StudySpec, stores: Stores, reports_dir: Path = Path("reports"),
                 ui_url: str | None = None) -> Path:
    """Write reports_dir/<name>/README.md with its PNG figures and summary.json (the verdicts, for the index
    and the study's closing summary), from the stores alone; return the README's path."""
    record = load_record(spec, stores)
    out = reports_dir / spec.name
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob("*.png"):  # a figure that cannot be drawn any more must not linger
        stale.unlink()
    found = findings(record)
    shown = figures.draw_all(figure_data(record), out)
    ui = browse(stores.mlflow_uri, ui_url)
    answer = answer_md(record, found, out)
    sections = [_header(record, found, answer), arm_table(record, found), _six_steps(record, out), _figures_md(shown),
                _setup(record, ui)]
    readme = out / "README.md"
    readme.write_text("\n\n".join(sections) + "\n")
    summary = {"name": spec.name, "question": spec.question, "endpoint": spec.endpoint, **_provenance(record),
               "report_commit": head_commit(),
               "verdicts": found.sentences,
               "decisions": [_decision(d, o) for d, o in zip(found.decisions, found.overall, strict=True)],
               "failure_rates": [_rate_claim(c) for c in found.rate_claims],
               "impossible_runs": [vars(run) for run in impossible_runs(record)]}
    if found.rule is not None:
        rule = found.rule
        summary["sequential"] = {"looks": list(rule.design.looks), "judged": list(rule.looks_done),
                                 "stopped_at": rule.stopped_at, "seeds": rule.wanted,
                                 "where": [rule.where(i) for i in range(len(found.decisions))]}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return readme


def _decision(d: Decision, overall: Estimate | None) -> dict[str, Any]:
    """One declared comparison for summary.json: `estimate` over every seed its arms ran (the one estimate of the
    effect), the decision's own estimate, seeds and interval where the rule stopped, and a margin's meaning."""
    return {"comparison": d.declared.label, "kind": d.declared.kind, "decision": d.outcome,
            "word": decision_word(d) if d.estimate else "no data",
            "estimate": None if overall is None else overall.value, "seeds": None if overall is None else overall.n,
            "estimate_at_decision": None if d.estimate is None else d.estimate.value,
            "seeds_at_decision": None if d.estimate is None else d.estimate.n,
            "low": d.low, "high": d.high, "mde": d.mde, **(margin_facts(d) or {})}


def _provenance(record: StudyRecord) -> dict[str, Any]:
    """What the study ran from: every commit its parent runs recorded (oldest first; one unless it was resumed on
    another), the newest, the command that ran it and its study file: what tests/test_committed_reports.py checks a
    committed report against."""
    commits = record.log.parent_tag_values(Tag.GIT_COMMIT)
    return {"git_commit": commits[-1] if commits else None, "git_commits": commits,
            "command": record.log.parent_tags().get(Tag.COMMAND), "study_file": record.spec.file or record.spec.name}


def _overall(d: dict[str, Any]) -> str:
    """A comparison's estimate over every seed its arms ran, as summary.json holds it (older summaries held the
    estimate where the rule stopped, under the same name, and no `seeds`: they show none)."""
    if d.get("estimate") is None or d.get("seeds") is None:
        return ""
    return f", {100 * d['estimate']:+.1f} points over {d['seeds']} seeds"


def _rate_claim(c: RateClaim) -> dict[str, Any]:
    """A failure-rate claim as summary.json holds it: each arm's failures, runs and exact 95% interval."""
    arms = [{"arm": arm, "failed": r.failed, "n": r.n, "low": r.low, "high": r.high}
            for arm, r in zip((c.a, c.b), c.rates, strict=True)]
    return {"pair": f"{c.a} - {c.b}", "arms": arms, "p": c.p_value, "p_adjusted": c.p_adjusted,
            "family": c.family, "significant": c.significant, "fails_more": c.more}


def build_index(reports_dir: Path = Path("reports")) -> Path:
    """Write reports_dir/README.md: one row per study report, with its question, verdicts and a link."""
    rows = []
    for path in sorted(reports_dir.glob("*/summary.json")):
        summary = json.loads(path.read_text())
        name = path.parent.name
        decisions = summary.get("decisions")  # one short line per declared comparison; older summaries: sentences
        where = summary.get("sequential", {}).get("where") or [""] * len(decisions or [])
        verdict_line = ("; ".join(f"{d['comparison']} ({d['kind']}): {d['word']}{f' ({w})' if w else ''}{_overall(d)}"
                                  for d, w in zip(decisions, where, strict=False))
                        if decisions and "word" in decisions[0] else " ".join(summary["verdicts"]))
        rows.append(f"| [{name}]({name}/README.md) | {summary['question']} | {verdict_line} |")
    index = reports_dir / "README.md"
    reports_dir.mkdir(parents=True, exist_ok=True)
    intro = "# Study reports\n\nRebuild any of them with `python -m harness.report NAME` (or `--all`)."
    index.write_text(f"{intro}\n\n| study | question | verdict |\n|---|---|---|\n" + "\n".join(rows) + "\n")
    return index
