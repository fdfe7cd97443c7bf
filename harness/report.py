"""Reports from the stores alone: MLflow runs and Optuna studies -> statistics -> reports/<study>/README.md.

`python -m harness.report NAME` rebuilds one report from `mlruns/`, `--all` every study that has runs;
`reports/README.md` indexes them. What the stores hold is documented in `harness.tracking`.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import mlflow
import numpy as np
import optuna
import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from optuna.trial import FrozenTrial, TrialState

from harness import figures
from harness.spec import STUDIES_DIR, Arm, Stores, StudySpec, list_studies, load_study
from harness.stats import Comparison, compare_all, summarize, verdict
from harness.tracking import experiment_id, open_storage, optuna_study_name

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)  # RUNNING trials are ignored
COLUMNS = [  # the parts of the schema the report reads; absent ones become empty columns
    "tags.phase", "tags.arm", "tags.seed", "tags.optuna_trial", "tags.state", "tags.checkpoint",
    "tags.checkpoint_run_id", "params.dataset", "params.epochs", "params.lr", "params.opt.momentum",
    "metrics.best_val_acc", "metrics.test_acc", "metrics.wall_seconds",
]
CHILD_PHASES = ["search", "confirm"]
UI = "http://127.0.0.1:5000/#/experiments"
QUIET_DOWNLOADS = {"MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}  # no progress bar per small artifact


@dataclass
class ArmRecord:
    """One arm as the stores hold it: its Optuna study, finished trials and counted confirmation runs."""

    arm: Arm
    study: optuna.Study | None
    trials: list[FrozenTrial]
    best: FrozenTrial | None
    confirm: pd.DataFrame  # FINISHED confirm runs of the best trial, one per seed (newest wins)

    def test_acc(self) -> dict[int, float]:
        return {int(s): float(v) for s, v in zip(self.confirm["tags.seed"], self.confirm["metrics.test_acc"])}

    def count(self, state: TrialState) -> int:
        return sum(t.state == state for t in self.trials)


@dataclass
class StudyRecord:
    """Everything a report shows, read from MLflow and Optuna."""

    spec: StudySpec
    stores: Stores
    experiment_id: str
    runs: pd.DataFrame  # every run of the experiment (mlflow.search_runs columns), newest first
    arms: dict[str, ArmRecord]
    overview: dict[str, Any]
    samples: dict[str, np.ndarray]

    @property
    def parents(self) -> pd.DataFrame:
        return self.runs[self.runs["tags.phase"] == "study"]

    def setting(self, key: str) -> str:
        """A study setting as the newest invocation ran it (parent-run param; CLI overrides included),
        else as the study file declares it."""
        values = self.parents.get(f"params.{key}", pd.Series(dtype=object)).dropna()
        return str(values.iloc[0]) if len(values) else str(getattr(self.spec, key))

    @property
    def sampler(self) -> str:
        """The sampler the arms' Optuna studies record, else the recorded setting."""
        stored = [a.study.user_attrs["sampler"] for a in self.arms.values()
                  if a.study and "sampler" in a.study.user_attrs]
        return stored[0] if stored else self.setting("sampler")

    def children(self, arm: str | None = None, phase: str | None = None) -> pd.DataFrame:
        """Trial and confirmation runs, of one arm and one phase if given."""
        runs = self.runs[self.runs["tags.phase"].isin(CHILD_PHASES if phase is None else [phase])]
        return runs if arm is None else runs[runs["tags.arm"] == arm]


# --- reading the stores ----------------------------------------------------------------------------


def _artifact(client: MlflowClient, run_ids: Iterable[str], path: str) -> Any:
    """The artifact at `path` of the first run that has it: a dict (.json), arrays (.npz), else None."""
    for run_id in run_ids:
        with tempfile.TemporaryDirectory() as tmp, mock.patch.dict(os.environ, QUIET_DOWNLOADS):
            try:
                local = Path(client.download_artifacts(run_id, path, tmp))
            except (MlflowException, OSError):  # not logged by this run: the next one may have it
                continue
            if local.suffix == ".npz":
                with np.load(local) as npz:
                    return {k: npz[k] for k in npz.files}
            return json.loads(local.read_text())
    return None


def _best(study: optuna.Study) -> FrozenTrial | None:
    """The trial the study chose after its confirmation runs (best mean validation accuracy over seeds), else
    the search's best while confirmation has not run."""
    selected = study.user_attrs.get("selected_trial")
    if selected is not None:
        return next(t for t in study.get_trials(deepcopy=False) if t.number == selected)
    try:
        return study.best_trial
    except ValueError:  # no complete trial yet
        return None


def _load_arm(spec: StudySpec, arm: Arm, storage: Any, runs: pd.DataFrame) -> ArmRecord:
    try:
        study = optuna.load_study(study_name=optuna_study_name(spec.name, arm.name), storage=storage)
    except KeyError:  # this arm has not started
        return ArmRecord(arm, None, [], None, runs.iloc[0:0])
    best = _best(study)
    finished = runs[(runs["tags.phase"] == "confirm") & (runs["status"] == "FINISHED")]
    mine = finished[finished["tags.arm"] == arm.name]
    confirm = mine[mine["tags.optuna_trial"] == str(best.number)] if best else mine.iloc[0:0]
    confirm = confirm.dropna(subset=["metrics.test_acc", "tags.seed"]).drop_duplicates("tags.seed")
    trials = [t for t in study.get_trials(deepcopy=False) if t.state in FINISHED]
    return ArmRecord(arm, study, trials, best, confirm)


def load_record(spec: StudySpec, stores: Stores) -> StudyRecord:
    """Read one study's MLflow runs and Optuna studies; ValueError when the stores hold none."""
    eid = experiment_id(stores, spec.name, create=False)
    newest_first = ["attributes.start_time DESC"]
    runs = pd.DataFrame() if eid is None else mlflow.search_runs([eid], order_by=newest_first)
    if runs.empty:
        raise ValueError(f"no MLflow runs of study {spec.name!r} in {stores.mlflow_uri}; "
                         f"run `python -m harness.study {spec.name}` first")
    runs = runs.reindex(columns=list(runs.columns) + [c for c in COLUMNS if c not in runs.columns])
    storage = open_storage(stores)
    arms = {arm.name: _load_arm(spec, arm, storage, runs) for arm in spec.arms}
    client = MlflowClient(stores.mlflow_uri)
    parents = runs.loc[runs["tags.phase"] == "study", "run_id"]
    overview = _artifact(client, parents, "data/overview.json") or {}
    samples = _artifact(client, parents, "data/samples.npz") or {}
    return StudyRecord(spec, stores, eid, runs, arms, overview, samples)


def trial_frame(record: StudyRecord) -> pd.DataFrame:
    """One row per finished search trial: Optuna's state joined with its MLflow run's params and metrics."""
    rows = []
    for name, arm in record.arms.items():
        runs = record.children(name, "search").drop_duplicates("tags.optuna_trial")
        runs = runs.set_index("tags.optuna_trial")
        for t in arm.trials:
            run = runs.loc[str(t.number)] if str(t.number) in runs.index else pd.Series(dtype=object)
            so_far = max(t.intermediate_values.values(), default=np.nan)  # a pruned trial's best so far
            rows.append({
                "arm": name, "number": t.number, "state": t.state.name, "run_id": run.get("run_id"),
                "lr": run.get("params.lr"), "momentum": run.get("params.opt.momentum"),
                "best_val_acc": run.get("metrics.best_val_acc"),
                "wall_seconds": run.get("metrics.wall_seconds"),
                "optuna_val_acc": t.value if t.value is not None else so_far,
            })
    frame = pd.DataFrame(rows, columns=["arm", "number", "state", "run_id", "lr", "momentum", "best_val_acc",
                                        "wall_seconds", "optuna_val_acc"])
    for column in ("lr", "momentum", "best_val_acc", "wall_seconds", "optuna_val_acc"):
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    frame["best_val_acc"] = frame["best_val_acc"].fillna(frame["optuna_val_acc"])
    frame["momentum"] = frame["momentum"].fillna(0.0)  # SGD without a momentum param runs with 0 (optim.py)
    frame["effective_lr"] = frame["lr"] / (1 - frame["momentum"])
    return frame


def confirm_frame(record: StudyRecord) -> pd.DataFrame:
    """One row per counted confirmation run: arm, seed, run id, test accuracy."""
    frames = [arm.confirm.assign(arm=name) for name, arm in record.arms.items()]
    frame = pd.concat(frames) if frames else pd.DataFrame()
    return frame.rename(columns={"tags.seed": "seed", "metrics.test_acc": "test_acc"})[
        ["arm", "seed", "run_id", "test_acc"] + [c for c in frame.columns if c.startswith("params.")]]


# --- statistics ------------------------------------------------------------------------------------


def verdicts(record: StudyRecord) -> tuple[list[str], int]:
    """One sentence per pair (spec.comparisons, else every pair) on confirmation test accuracy, a - b; and how
    many pairs could be compared (the family Holm's correction runs over)."""
    pairs = list(record.spec.comparisons) or list(itertools.combinations(record.arms, 2))
    values = {name: arm.test_acc() for name, arm in record.arms.items()}
    ready = [(a, b) for a, b in pairs if values[a] and values[b]]
    compared = compare_all(ready, values) if ready else []
    done: dict[tuple[str, str], Comparison] = {(c.a, c.b): c for c in compared}
    lines = []
    for a, b in pairs:
        if (a, b) in done:
            lines.append(verdict(done[(a, b)]))
        else:
            missing = " and ".join(x for x in (a, b) if not values[x])
            lines.append(f"No verdict for {a} vs {b}: {missing} has no confirmation runs.")
    return lines, len(ready)


def importance_frame(record: StudyRecord) -> pd.DataFrame:
    """fANOVA importances per arm; arms with < 3 complete trials or nothing varying are left out."""
    rows = []
    for name, arm in record.arms.items():
        if arm.study is None or arm.count(TrialState.COMPLETE) < 3:
            continue
        try:
            found = optuna.importance.get_param_importances(
                arm.study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0))
        except (ValueError, RuntimeError):
            continue
        rows += [{"arm": name, "param": p, "importance": v} for p, v in found.items()]
    return pd.DataFrame(rows, columns=["arm", "param", "importance"])


def _variant_label(names: list[str]) -> str:
    """What arms that differ only in the setting share: their names' common stem (AnB-0, AnB-1 -> AnB)."""
    stem = os.path.commonprefix(names).rstrip("-_ =")
    return stem if len(names) > 1 and stem else ", ".join(names)


def setting_points(record: StudyRecord, setting: str) -> pd.DataFrame:
    """Test accuracy (mean, 95% CI) per arm at its value of `setting` (a run param), grouped into variants.

    A variant is the arms with equal optimizer, strategy and other fixed settings, so they differ only in
    `setting`; it is labelled by their names' common stem. An arm without the setting (x is NaN, e.g. a
    baseline) is its own variant, drawn as a reference line."""
    rows = []
    for name, arm in record.arms.items():
        if arm.confirm.empty:
            continue
        x = arm.confirm.get(f"params.{setting}", pd.Series([arm.arm.fixed.get(setting)])).iloc[0]
        others = [f"{k}={v}" for k, v in sorted(arm.arm.fixed.items()) if k != setting]
        s = summarize(list(arm.test_acc().values()))
        rows.append({"key": " ".join([arm.arm.optimizer, arm.arm.strategy, *others]), "arm": name,
                     "x": pd.to_numeric(x, errors="coerce"), "mean": s.mean,
                     # too few seeds for an interval: no error bar rather than an infinite one
                     "ci_low": s.ci_low if np.isfinite(s.ci_low) else s.mean,
                     "ci_high": s.ci_high if np.isfinite(s.ci_high) else s.mean})
    if not rows:
        return pd.DataFrame()
    points = pd.DataFrame(rows)
    points.loc[points["x"].isna(), "key"] = points["arm"]
    labels = points.groupby("key", sort=False)["arm"].agg(lambda names: _variant_label(list(names)))
    return points.assign(variant=points["key"].map(labels)).drop(columns="key")


# --- figures ---------------------------------------------------------------------------------------


def _history(record: StudyRecord, confirm: pd.DataFrame) -> pd.DataFrame:
    client = MlflowClient(record.stores.mlflow_uri)
    rows = [{"arm": arm, "seed": seed, "epoch": m.step, "val_acc": m.value}
            for arm, seed, run_id in confirm[["arm", "seed", "run_id"]].itertuples(index=False)
            for m in client.get_metric_history(run_id, "val_acc")]
    return pd.DataFrame(rows, columns=["arm", "seed", "epoch", "val_acc"])


def _best_confirm(record: StudyRecord) -> pd.Series | None:
    confirm = confirm_frame(record)
    return None if confirm.empty else confirm.loc[confirm["test_acc"].idxmax()]


def _describe(run: pd.Series) -> str:
    return f"{run['arm']}, seed {run['seed']}: test accuracy {_pct(run['test_acc'])}%"


def figure_data(record: StudyRecord) -> figures.FigureData:
    """The frames the figures draw, read from the stores (metric histories, the best run's confusion.json)."""
    spec, confirm, best = record.spec, confirm_frame(record), _best_confirm(record)
    client = MlflowClient(record.stores.mlflow_uri)
    return figures.FigureData(
        arms=[a.name for a in spec.arms], sgd_arms=[a.name for a in spec.arms if a.optimizer == "sgd"],
        sampler=record.sampler, classes=[str(c) for c in record.overview.get("classes", [])],
        samples=record.samples, class_counts=record.overview.get("counts", {}),
        trials=trial_frame(record), confirm=confirm, history=_history(record, confirm),
        importance=importance_frame(record), setting=spec.x_axis,
        setting_points=setting_points(record, spec.x_axis) if spec.x_axis else pd.DataFrame(),
        confusion=None if best is None else _artifact(client, [best["run_id"]], "confusion.json"),
        best_run="" if best is None else _describe(best),
    )


# --- markdown --------------------------------------------------------------------------------------


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def _value(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def _parent_tags(record: StudyRecord) -> dict[str, str]:
    """Tags of the newest parent run that has each one."""
    columns = [c for c in record.parents.columns if c.startswith("tags.")]
    firsts = {c.removeprefix("tags."): record.parents[c].dropna() for c in columns}
    return {k: str(v.iloc[0]) for k, v in firsts.items() if len(v)}


def _versions(tags: dict[str, str]) -> str:
    found = [f"{k.removeprefix('version.')} {v}" for k, v in sorted(tags.items()) if k.startswith("version.")]
    return ", ".join(found) or "not recorded"


def _child_params(record: StudyRecord) -> dict[str, str]:
    """Params of the newest trial or confirmation run (those every arm shares, such as the dataset)."""
    children = record.children().dropna(subset=["params.dataset"])
    if children.empty:
        return {}
    newest = children.iloc[0]
    return {c.removeprefix("params."): str(newest[c]) for c in children.columns
            if c.startswith("params.") and pd.notna(newest[c])}


def _distinct(record: StudyRecord, param: str) -> str:
    """Every value a param took across the trial and confirmation runs (a study may vary the model per arm)."""
    column = record.children().get(f"params.{param}", pd.Series(dtype=object)).dropna()
    return ", ".join(dict.fromkeys(map(str, column))) or "?"


def _header(record: StudyRecord, sentences: list[str], compared: int) -> str:
    holm = " and Holm-adjusted p-values" if compared > 1 else ""
    top = record.setting("confirm_top")
    chosen = ("Each arm's best trial rerun over fresh seeds and" if top == "1" else
              f"Each arm's {top} best trials rerun over fresh seeds; the one with the best mean validation accuracy "
              "(chosen on validation alone; every candidate's test score is logged, none steers the choice)")
    method = (f"{chosen} scored once per seed on the held-out test split; "
              f"differences a - b paired by seed where shared, with 95% bootstrap CIs{holm}.")
    bullets = "\n".join(f"- {s}" for s in sentences + _not_reproduced(record))
    return f"# {record.spec.name}\n\n> {record.spec.question}\n\n## Verdict\n\n{bullets}\n\n{method}"


def _not_reproduced(record: StudyRecord) -> list[str]:
    """Warn where an arm's best search trial was luck: its validation score falls away over fresh seeds."""
    lines = []
    for name, arm in record.arms.items():
        val = pd.to_numeric(arm.confirm.get("metrics.best_val_acc", pd.Series(dtype=float)), errors="coerce").dropna()
        if arm.best is None or len(val) < 2:
            continue
        mean, sd = float(val.mean()), float(val.std(ddof=1))
        if arm.best.value - mean > max(0.05, 2 * sd):  # 5 points and two seed-sds below the search's score
            lines.append(
                f"Caution, {name}: its best trial reached {_pct(arm.best.value)}% validation accuracy in the search "
                f"but {_pct(mean)} ± {_pct(sd)}% over the confirmation seeds. That configuration does not "
                "reproduce (the search's best was partly luck), and its test accuracy reflects it.")
    return lines


def _arm_row(record: StudyRecord, name: str, arm: ArmRecord) -> str:
    wall = pd.to_numeric(record.children(name)["metrics.wall_seconds"], errors="coerce").sum()
    best = f"{_pct(arm.best.value)} (trial {arm.best.number})" if arm.best else "-"
    val = pd.to_numeric(arm.confirm.get("metrics.best_val_acc", pd.Series(dtype=float)), errors="coerce").dropna()
    seeds_val = f"{_pct(val.mean())}" if len(val) else "-"
    test = ci = "no confirmation runs"
    if arm.test_acc():
        s = summarize(list(arm.test_acc().values()))
        ci = f"{_pct(s.ci_low)} to {_pct(s.ci_high)}" if np.isfinite(s.ci_low) else "too few seeds"
        test = f"{_pct(s.mean)} ± {_pct(s.sd)} (n={s.n})"
    counts = " / ".join(str(arm.count(s)) for s in FINISHED)
    params = ", ".join(f"{k}={_value(v)}" for k, v in arm.best.params.items()) if arm.best else "-"
    return f"| {name} | {best} | {seeds_val} | {test} | {ci} | {counts} | {_duration(wall)} | {params} |"


def _table(record: StudyRecord) -> str:
    head = ("| arm | chosen trial: search val acc (%) | its val acc over seeds (%) | test acc (%), mean ± sd "
            "| test acc 95% CI | trials complete / pruned / failed | wall time | hyperparameters |\n"
            + "|---" * 8 + "|")
    rows = "\n".join(_arm_row(record, name, arm) for name, arm in record.arms.items())
    return f"## Results per arm\n\n{head}\n{rows}"


def _link(out: Path, file: str, text: str) -> str:
    return f"[{text}]({file})" if (out / file).is_file() else f"{text} (not available)"


def _six_steps(record: StudyRecord, out: Path) -> str:
    tags, params, ov = _parent_tags(record), _child_params(record), record.overview
    sizes = ov.get("sizes") or {k: sum(v) for k, v in ov.get("counts", {}).items()}
    prints = ov.get("fingerprints", {})
    splits = ", ".join(f"{k} {n} images (`{prints.get(k, '?')}`)" for k, n in sizes.items()) or "not recorded"
    best = _best_confirm(record)
    evaluated = "no confirmation runs yet" if best is None else (
        f"best run {_describe(best)}, {_link(out, 'confusion.png', 'confusion matrix')}")
    dataset = ov.get("dataset", params.get("dataset", "?"))
    classes = ", ".join(map(str, ov.get("classes", []))) or "?"
    model = f"{_distinct(record, 'model')}, weights `{_distinct(record, 'weights')}`"
    steps = [
        f"**Import libraries**: {_versions(tags)} (parent-run tags `version.*`).",
        (f"**Import the dataset**: {dataset}, classes {classes}; "
         f"{_link(out, 'class_counts.png', 'class counts')} (`data/overview.json`)."),
        f"**Split it**: {splits} (split fingerprints).",
        f"**Visualise it**: {_link(out, 'samples.png', 'sample images per split')} (`data/samples.npz`).",
        f"**Import the pretrained model**: {model}; {_checkpoints(record)}.",
        f"**Evaluate it**: confirmation test accuracy in the table above; {evaluated}.",
    ]
    return "## The six steps\n\n" + "\n".join(f"{i}. {s}" for i, s in enumerate(steps, 1))


def _checkpoints(record: StudyRecord) -> str:
    pairs = record.children()[["tags.checkpoint", "tags.checkpoint_run_id"]].dropna().drop_duplicates()
    found = [f"checkpoint `{c}` (MLflow run `{r}`)" for c, r in pairs.itertuples(index=False)]
    return "; ".join(found) or "no checkpoint recorded"


def _figures_md(shown: list[figures.Figure]) -> str:
    blocks = [f"### {f.title}\n\n{f.caption}" + (f"\n\n![{f.title}]({f.file})" if f.file else "")
              for f in shown]
    return "## Figures\n\nArms keep the same colour in every figure.\n\n" + "\n\n".join(blocks)


def _run_line(run: pd.Series, counted: set[str]) -> str:
    trial = run["tags.optuna_trial"]
    what = f"trial {trial}" if run["tags.phase"] == "search" else f"seed {run['tags.seed']} of trial {trial}"
    mark = ", counted in the verdict" if run["run_id"] in counted else ""
    return f"- `{run['run_id']}` {run['tags.phase']} {what} ({run['tags.state']}{mark})"


def _runs_md(record: StudyRecord) -> str:
    eid = record.experiment_id
    parents = "\n".join(f"  - [`{r.run_id}`]({UI}/{eid}/runs/{r.run_id}), {r.start_time:%Y-%m-%d %H:%M}"
                        for r in record.parents.itertuples())
    details = []
    for name, arm in record.arms.items():
        runs, counted = record.children(name).sort_values("start_time"), set(arm.confirm["run_id"])
        lines = "\n".join(_run_line(run, counted) for _, run in runs.iterrows())
        details.append(f"<details><summary>{name}: {len(runs)} child runs</summary>\n\n{lines}\n\n</details>")
    browse = f"`mlflow ui --backend-store-uri {record.stores.mlflow_uri}`, then open {UI}/{eid}"
    return (f"- **MLflow**: experiment `{record.spec.name}` (id {eid}); parent runs:\n{parents}\n"
            f"- **Browse**: {browse}\n\n" + "\n".join(details))


def _setup(record: StudyRecord) -> str:
    tags, params = _parent_tags(record), _child_params(record)
    epochs = "epochs " + (", ".join(sorted(record.children()["params.epochs"].dropna().unique())) or "?")
    seeds = ", ".join(map(str, sorted({s for arm in record.arms.values() for s in arm.test_acc()})))
    found = ", ".join(f"{n} {len(a.trials)}" for n, a in record.arms.items())
    keys = ("dataset", "source_classes", "target_classes", "shots", "model", "weights")
    p = {k: params.get(k, "?") for k in keys}
    sizes = ", ".join(f"{k} {v}" for k, v in record.overview.get("sizes", {}).items()) or "?"
    pruned = record.setting("prune") == "True"
    pruning = "pruning on (median pruner, per-epoch validation accuracy)" if pruned else "no pruning"
    items = [
        (f"**Task**: {p['dataset']}, source classes {p['source_classes']} -> target classes "
         f"{p['target_classes']}, {p['shots']} training images per class."),
        f"**Model**: {_distinct(record, 'model')}, weights `{_distinct(record, 'weights')}`; {_checkpoints(record)}.",
        f"**Splits**: {sizes}.",
        (f"**Budget**: {record.setting('n_trials')} trials per arm (finished: {found}); "
         f"sampler {record.sampler}; {pruning}."),
        (f"**Confirmation**: the {record.setting('confirm_top')} best trials of each arm, {record.setting('seeds')} "
         f"seeds each (found: {seeds or 'none'}); {epochs}."),
        f"**Packages**: {_versions(tags)}.",
        f"**Git commit**: `{tags.get('git_commit', 'not recorded')}`.",
        f"**Reproduce**: `{tags.get('command', 'not recorded')}`",
    ]
    return "## Setup\n\n" + "\n".join(f"- {i}" for i in items) + "\n" + _runs_md(record)


# --- building, indexing, CLI -----------------------------------------------------------------------


def build_report(spec: StudySpec, stores: Stores, reports_dir: Path = Path("reports")) -> Path:
    """Write reports_dir/<name>/README.md with its PNG figures and summary.json (the verdicts, for the index
    and the study's closing summary), from the stores alone; return the README's path."""
    record = load_record(spec, stores)
    out = reports_dir / spec.name
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob("*.png"):  # a figure that cannot be drawn any more must not linger
        stale.unlink()
    sentences, compared = verdicts(record)
    shown = figures.draw_all(figure_data(record), out)
    sections = [_header(record, sentences, compared), _table(record), _six_steps(record, out),
                _figures_md(shown), _setup(record)]
    readme = out / "README.md"
    readme.write_text("\n\n".join(sections) + "\n")
    summary = {"name": spec.name, "question": spec.question, "verdicts": sentences}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return readme


def build_index(reports_dir: Path = Path("reports")) -> Path:
    """Write reports_dir/README.md: one row per study report, with its question, verdicts and a link."""
    rows = []
    for path in sorted(reports_dir.glob("*/summary.json")):
        summary = json.loads(path.read_text())
        name = path.parent.name
        verdict_line = " ".join(summary["verdicts"])
        rows.append(f"| [{name}]({name}/README.md) | {summary['question']} | {verdict_line} |")
    index = reports_dir / "README.md"
    reports_dir.mkdir(parents=True, exist_ok=True)
    intro = "# Study reports\n\nRebuild any of them with `python -m harness.report NAME` (or `--all`)."
    index.write_text(f"{intro}\n\n| study | question | verdict |\n|---|---|---|\n" + "\n".join(rows) + "\n")
    return index


def _has_runs(stores: Stores, name: str) -> bool:
    if stores.tracking_uri is None and not (stores.root / "mlflow.db").is_file():
        return False  # do not create an empty store just to look
    eid = experiment_id(stores, name, create=False)
    return eid is not None and not mlflow.search_runs([eid], max_results=1).empty


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m harness.report",
        description="Rebuild a study's markdown report (reports/NAME/README.md and its figures) from the "
                    "MLflow and Optuna stores alone, then the index reports/README.md.",
        epilog="examples:\n  python -m harness.report sgd_vs_adam\n  python -m harness.report --all\n"
               "  python -m harness.report sgd_vs_adam --root /data/mlruns --reports /tmp/reports",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("name", nargs="?", help="the study to report on: a file studies/NAME.py")
    parser.add_argument("--all", action="store_true", help="rebuild every study that has MLflow runs")
    parser.add_argument("--root", type=Path, default=Path("mlruns"),
                        help="folder of the stores (default: mlruns): mlflow.db, optuna.db, artifacts/")
    parser.add_argument("--tracking-uri", help="MLflow tracking URI (default: sqlite:///ROOT/mlflow.db)")
    parser.add_argument("--storage",
                        help="Optuna storage URL or journal:FILE (default: sqlite:///ROOT/optuna.db)")
    parser.add_argument("--reports", type=Path, default=Path("reports"),
                        help="reports folder (default: reports)")
    parser.add_argument("--studies", type=Path, default=STUDIES_DIR,
                        help="folder of study files (default: the repository's studies/)")
    args = parser.parse_args(argv)
    if (args.name is None) == (not args.all):
        parser.error("give a study NAME or --all (not both)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stores = Stores(args.root, args.tracking_uri, args.storage)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    names = [n for n in list_studies(args.studies) if _has_runs(stores, n)] if args.all else [args.name]
    failed = 0
    for name in names:
        try:
            print(f"wrote {build_report(load_study(name, args.studies), stores, args.reports)}")
        except ValueError as error:
            print(f"error: {error}", file=sys.stderr)
            failed += 1
    if args.all and not names:
        print(f"no study in {args.studies} has runs in {stores.mlflow_uri}", file=sys.stderr)
    if len(names) > failed:
        print(f"wrote {build_index(args.reports)}")
    return 1 if failed or not names else 0


if __name__ == "__main__":
    sys.exit(main())
