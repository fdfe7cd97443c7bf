"""`python -m harness.study NAME`: one Optuna study per arm, one parent MLflow run, confirmation seeds, the report.

Running the same command again resumes: finished trials are kept and each arm is topped up to its budget.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import logging
import platform
import shlex
import subprocess
import sys
import tempfile
import warnings
from importlib import metadata
from pathlib import Path
from typing import Any

from harness.spec import STUDIES_DIR, Stores, StudySpec, TrialConfig, list_studies, load_study

PACKAGES = ("torch", "torchvision", "optuna", "mlflow", "numpy", "pandas", "scipy", "seaborn", "scikit-learn")


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, not {text}")
    return value


def class_list(text: str) -> tuple[int, ...] | str:
    """'0-4' or '0,2,4' -> class indices; 'all' keeps every class (stored as the string, resolved below)."""
    if text == "all":
        return "all"
    try:
        classes = []
        for part in text.split(","):
            low, _, high = part.partition("-")
            classes += range(int(low), int(high or low) + 1)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected class indices like 0-4 or 0,2,4 or all, not {text!r}") from None
    return tuple(classes)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m harness.study",
        description="Run a transfer-learning study: one Optuna search per arm (same budget, same seeded "
        "sampler), every trial an MLflow run; each arm's best configs rerun over fresh seeds, the best by mean "
        "validation accuracy tested once on held-out data; then a markdown report in reports/NAME/ with the "
        "verdict and its uncertainty. Rerunning resumes.",
        epilog="examples:\n  python -m harness.study sgd_vs_adam\n  python -m harness.study sgd_vs_adam "
        "--trials 5 --seeds 3 --epochs 6\n  python -m harness.study --list\n"
        "browse: mlflow ui --backend-store-uri sqlite:///mlruns/mlflow.db",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("study", nargs="?", help="a study in studies/ (see --list)")
    p.add_argument("--list", action="store_true", help="list the studies and exit")
    p.add_argument("--trials", type=positive_int, help="Optuna trials per arm (default: the study's)")
    p.add_argument("--seeds", type=positive_int, help="confirmation seeds per arm (default: the study's)")
    p.add_argument("--epochs", type=positive_int, help="training epochs per run")
    p.add_argument("--model", help="model to transfer (registry name or any torchvision classifier)")
    p.add_argument("--weights", help="source | imagenet | none | path to a checkpoint file")
    p.add_argument("--dataset", help="digits (ships with scikit-learn), mnist, fashion_mnist, cifar10, cifar100, "
                   "svhn, stl10, flowers102, oxford_iiit_pet (downloaded into the data root), or folder:PATH: "
                   "PATH/<class>/*.jpg, or PATH/train/<class>/ + PATH/val/<class>/ with val as the test split "
                   "(default: the study's)")
    p.add_argument("--data-root", help="folder for downloadable datasets (default: $HARNESS_DATA_ROOT, else data)")
    p.add_argument("--shots", type=positive_int, help="training images per target class")
    p.add_argument("--source-classes", type=class_list, metavar="LIST",
                   help="classes the source model is pretrained on, e.g. 0-4 or 0,2,4 (default: the study's)")
    p.add_argument("--target-classes", type=class_list, metavar="LIST",
                   help="classes of the target task, e.g. 5-9; 'all' for every class")
    p.add_argument("--root", type=Path, default=Path("mlruns"), help="folder of all run records (default: mlruns)")
    p.add_argument("--storage", help="Optuna storage URL (default sqlite:///ROOT/optuna.db; journal:FILE for many workers)")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default sqlite:///ROOT/mlflow.db)")
    p.add_argument("--reports", type=Path, default=Path("reports"), help="where reports go (default: reports)")
    return p


CLI_OVERRIDES = ("epochs", "model", "weights", "dataset", "data_root", "shots", "source_classes",
                 "target_classes")  # flags that set the TrialConfig field of the same name


def apply_overrides(spec: StudySpec, args: argparse.Namespace) -> StudySpec:
    base_changes = {field: getattr(args, field) for field in CLI_OVERRIDES if getattr(args, field) is not None}
    for field in ("source_classes", "target_classes"):
        if base_changes.get(field) == "all":
            base_changes[field] = None
    changes: dict[str, Any] = {"base": dataclasses.replace(spec.base, **base_changes)}
    if args.trials is not None:
        changes["n_trials"] = args.trials
    if args.seeds is not None:
        changes["seeds"] = args.seeds
    return dataclasses.replace(spec, **changes)


def check(spec: StudySpec) -> None:
    """Fail before anything is written: every arm's names must be known, with the valid choices named."""
    from harness.datasets import check_data
    from harness.models import STRATEGIES, WeightsUnavailable, model_spec, require_imagenet
    from harness.optim import optimizer_spec

    if spec.sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {spec.sampler!r}; choices: {', '.join(SAMPLERS)}")
    for arm in spec.arms:
        cfg = arm.config(spec.base)
        model_spec(cfg.model)
        check_data(cfg)  # the dataset exists and has the classes the arm's class split names
        optimizer_spec(cfg.optimizer)
        if cfg.strategy not in STRATEGIES:
            raise ValueError(f"arm {arm.name}: unknown strategy {cfg.strategy!r}; choices: {', '.join(STRATEGIES)}")
        if cfg.weights not in ("source", "imagenet", "none") and not Path(cfg.weights).is_file():
            raise ValueError(f"weights must be source, imagenet, none or a checkpoint file; not {cfg.weights!r}")
        if cfg.weights == "source" and cfg.source_classes is None:
            raise ValueError(f"arm {arm.name}: weights=source needs source_classes")
        if cfg.weights == "imagenet":
            try:
                require_imagenet(cfg.model)  # offline: stop here, naming the file and the folder it belongs in
            except WeightsUnavailable as error:
                raise ValueError(f"arm {arm.name}: {error}") from error
        _check_stage_counts(arm.name, cfg)
    for a, b in spec.comparisons:
        spec.arm(a), spec.arm(b)
    __import__("harness.searchcheck").searchcheck.check_search_spaces(spec)  # every arm's space, dry run


def _check_stage_counts(arm: str, cfg: TrialConfig) -> None:
    """A fixed freeze_k or transfer_stages must fit the model's stages (a search space's are checked in fit)."""
    counts = {k: v for k, v in (("freeze_k", cfg.freeze_k), ("transfer_stages", cfg.transfer_stages)) if v}
    if counts:
        n_stages = _stage_count(cfg.model)
        for name, value in counts.items():
            if not 0 <= value <= n_stages:
                raise ValueError(f"arm {arm}: {name}={value}, but {cfg.model} has stages 0..{n_stages}")


@functools.cache
def _stage_count(model: str) -> int:
    from harness.models import build_model

    return len(build_model(model, 2).stage_names)


def _sampler_qmc(seed: int, n_done: int):
    import optuna

    # the Sobol index comes from the storage, so the same seed continues the sequence on resume
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.QMCSampler(qmc_type="sobol", scramble=True, seed=seed, warn_independent_sampling=False,
                                          independent_sampler=optuna.samplers.RandomSampler(seed=seed + n_done))


def _seeded(sampler: str):
    def build(seed: int, n_done: int):
        import optuna

        return getattr(optuna.samplers, sampler)(seed=seed + n_done)  # offset: a resume must not replay trials

    return build


SAMPLERS = {"qmc": _sampler_qmc, "random": _seeded("RandomSampler"), "tpe": _seeded("TPESampler")}
SAMPLER_SEED = 0  # the same for every arm: the comparison is fair


def counts_toward_budget(trial) -> bool:
    """Finished trials count; a diverged one too (it is a result). An interrupted or crashed one is redone."""
    import optuna

    state = optuna.trial.TrialState
    diverged = trial.state == state.FAIL and trial.user_attrs.get("state_reason", "").startswith("diverged")
    return trial.state in (state.COMPLETE, state.PRUNED) or diverged


def _fixed_settings(spec: StudySpec, arm) -> str:
    flat = arm.config(spec.base).flat()
    flat.pop("data_root")  # moving the data does not change the experiment
    return json.dumps(flat, sort_keys=True, default=str)


def check_resume(spec: StudySpec, stores: Stores) -> None:
    """Refuse to top up an arm that was searched with other settings (read-only; before anything is written)."""
    import optuna

    from harness.tracking import open_storage, optuna_study_name

    if stores.storage is None and not (stores.root / "optuna.db").exists():
        return  # a fresh root: nothing to resume
    storage = open_storage(stores)
    for arm in spec.arms:
        name = optuna_study_name(spec.name, arm.name)
        try:
            old = json.loads(optuna.load_study(study_name=name, storage=storage).user_attrs.get("config", "{}"))
        except KeyError:
            continue
        new = json.loads(_fixed_settings(spec, arm))
        diff = {k: (old[k], new.get(k)) for k in old if old[k] != new.get(k)}
        if diff:
            raise ValueError(f"{name} was run with other settings (old, new): {diff}; "
                             "rerun with those settings to resume, or use another --root to start afresh")


def open_arm_study(spec: StudySpec, arm, storage):
    """Create or load the arm's Optuna study with the study's seeded sampler and pruner."""
    import optuna

    from harness.tracking import optuna_study_name

    name = optuna_study_name(spec.name, arm.name)
    try:
        n_done = len(optuna.load_study(study_name=name, storage=storage).trials)
    except KeyError:
        n_done = 0
    pruner = optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=3) if spec.prune else optuna.pruners.NopPruner()
    study = optuna.create_study(study_name=name, storage=storage, direction="maximize", load_if_exists=True,
                                sampler=SAMPLERS[spec.sampler](SAMPLER_SEED, n_done), pruner=pruner)
    study.set_user_attr("config", _fixed_settings(spec, arm))
    study.set_user_attr("sampler", spec.sampler)
    return study


def search(spec: StudySpec, arm, storage, ctx) -> Any:
    from harness.objective import make_objective
    from harness.train import Diverged

    study = open_arm_study(spec, arm, storage)
    remaining = spec.n_trials - sum(counts_toward_budget(t) for t in study.trials)
    if remaining > 0:
        print(f"{arm.name}: {remaining} of {spec.n_trials} trials to run", flush=True)

        def stop_at_budget(study, trial) -> None:  # other workers may fill the budget too
            if sum(counts_toward_budget(t) for t in study.trials) >= spec.n_trials:
                study.stop()

        study.optimize(make_objective(spec, arm, ctx), n_trials=remaining, catch=(Diverged,),
                       callbacks=[stop_at_budget], show_progress_bar=True)
    return study


def confirm_all(spec: StudySpec, studies: dict, experiment_id: str, ctx) -> None:
    """Rerun each arm's `confirm_top` best trials over fresh seeds; keep the one with the best mean validation
    accuracy (Optuna study attr `selected_trial`), whose test accuracy the report judges.

    One lucky seed can crown a fragile configuration; averaging validation over seeds does not. Test accuracy
    plays no part in the choice. A (trial, seed) already confirmed is skipped, so this resumes too.
    """
    from tqdm import tqdm

    from harness.objective import confirm
    from harness.train import Diverged

    jobs, candidates = [], {}
    for arm in spec.arms:
        study = studies[arm.name]
        complete = [t for t in study.trials if t.state.name == "COMPLETE"]
        if not complete:
            print(f"{arm.name}: no complete trial, nothing to confirm", flush=True)
            continue
        candidates[arm.name] = sorted(complete, key=lambda t: -t.value)[: spec.confirm_top]
        for trial in candidates[arm.name]:
            done = confirmed_val_acc(experiment_id, study.study_name, trial.number)
            jobs += [(arm, trial, seed, study.study_name) for seed in confirmation_seeds(spec) if seed not in done]
    for arm, trial, seed, study_name in tqdm(jobs, desc="confirmation runs", unit="run"):
        try:
            confirm(spec, arm, trial, seed, ctx, study_name)
        except Diverged:  # recorded as a failed run; the seed counts as no model at all (see confirmed_val_acc)
            pass
    for name, trials in candidates.items():
        study = studies[name]
        mean_val = {t.number: _mean(confirmed_val_acc(experiment_id, study.study_name, t.number)) for t in trials}
        study.set_user_attr("selected_trial", max(mean_val, key=mean_val.get))
        study.set_user_attr("confirm_val_acc", {str(k): v for k, v in mean_val.items()})


def _mean(values: dict) -> float:
    return sum(values.values()) / len(values) if values else float("-inf")


def confirmed_val_acc(experiment_id: str, study_name: str, trial_number: int) -> dict[int, float]:
    """Confirmation runs of one trial that reached an end: seed -> best validation accuracy, 0.0 for a seed
    whose training diverged (a result, not to be rerun: it left no model)."""
    import mlflow

    runs = mlflow.search_runs(
        [experiment_id], output_format="list",
        filter_string=f"tags.phase = 'confirm' and tags.optuna_study = '{study_name}' "
        f"and tags.optuna_trial = '{trial_number}'",
    )
    values = {}
    for run in runs:
        if run.info.status == "FINISHED":
            values[int(run.data.tags["seed"])] = run.data.metrics["best_val_acc"]
        elif run.data.tags.get("state_reason", "").startswith("diverged"):
            values.setdefault(int(run.data.tags["seed"]), 0.0)
    return values


def confirmation_seeds(spec: StudySpec) -> range:
    return range(1, spec.seeds + 1)  # the search ran at seed 0: fresh seeds avoid reusing its luck


def run_tags(args_line: str) -> dict[str, str]:
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=STUDIES_DIR.parent, capture_output=True,
                                text=True, timeout=10, check=False).stdout.strip() or "unknown"
    except OSError:
        commit = "unknown"
    tags = {"phase": "study", "command": args_line, "git_commit": commit, "version.python": platform.python_version()}
    for package in PACKAGES:
        try:
            tags[f"version.{package}"] = metadata.version(package)
        except metadata.PackageNotFoundError:
            tags[f"version.{package}"] = "not installed"
    return tags


def log_data_overview(cfg: TrialConfig, ctx) -> None:
    """The 'import, split, visualise the dataset' steps, as parent-run artifacts the report reads."""
    import mlflow
    import numpy as np

    from harness.data import class_counts, sample_images

    task = ctx.task(cfg)
    overview = {
        "dataset": task.dataset, "classes": task.classes, "counts": class_counts(task),
        "sizes": {name: len(s) for name, s in task.splits().items()}, "fingerprints": task.fingerprints(),
        "preprocess": dataclasses.asdict(task.pre), "source_classes": cfg.source_classes,
        "target_classes": cfg.target_classes, "shots": cfg.shots,
    }
    mlflow.log_dict(overview, "data/overview.json")
    mlflow.log_params({f"split.{k}": v for k, v in task.fingerprints().items()})
    arrays = {}
    for name, (images, labels) in sample_images(task).items():
        arrays[f"{name}_x"], arrays[f"{name}_y"] = images, labels
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "samples.npz"
        np.savez_compressed(path, **arrays)
        mlflow.log_artifact(str(path), artifact_path="data")


def run_study(spec: StudySpec, stores: Stores, reports: Path, command: str) -> Path | None:
    import mlflow
    import optuna

    from harness.objective import RunContext
    from harness.pretrain import source_checkpoint
    from harness.report import build_index, build_report
    from harness.tracking import experiment_id, open_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    storage = open_storage(stores)
    eid = experiment_id(stores, spec.name)
    ctx = RunContext(checkpoints=stores.checkpoints)
    params = {"n_trials": spec.n_trials, "seeds": spec.seeds, "confirm_top": spec.confirm_top,
              "sampler": spec.sampler, "prune": spec.prune,
              "arms": ",".join(a.name for a in spec.arms), "epochs": spec.base.epochs}
    with mlflow.start_run(experiment_id=eid, run_name=f"{spec.name} study", tags=run_tags(command)) as parent:
        try:
            mlflow.log_params(params)
            log_data_overview(spec.arms[0].config(spec.base), ctx)
            for arm in spec.arms:
                cfg = arm.config(spec.base)
                if cfg.weights == "source":
                    source_checkpoint(cfg, stores.checkpoints)
            studies = {arm.name: search(spec, arm, storage, ctx) for arm in spec.arms}
            confirm_all(spec, studies, eid, ctx)
            report = build_report(spec, stores, reports)
            build_index(reports)
            mlflow.log_artifacts(str(report.parent), artifact_path="report")
        except KeyboardInterrupt:
            mlflow.end_run("KILLED")
            print(f"\ninterrupted: finished trials are kept in {stores.root}; rerun the same command to resume",
                  file=sys.stderr)
            return None
    print_summary(studies, report, parent.info.run_id, stores.mlflow_uri)
    return report


def print_summary(studies: dict, report: Path, parent_run_id: str, tracking_uri: str) -> None:
    """A few lines for the terminal: each arm's search, then the report's verdicts."""
    print(f"\n{'arm':16s} {'complete':>8s} {'pruned':>6s} {'failed':>6s} {'best val acc':>12s}")
    for name, study in studies.items():
        states = [t.state.name for t in study.trials]
        best = max((t.value for t in study.trials if t.state.name == "COMPLETE"), default=float("nan"))
        print(f"{name:16s} {states.count('COMPLETE'):8d} {states.count('PRUNED'):6d} {states.count('FAIL'):6d} "
              f"{best:12.3f}")
    summary = report.with_name("summary.json")
    if summary.exists():
        print("\n" + "\n".join(json.loads(summary.read_text())["verdicts"]))
    print(f"\nreport: {report}\nMLflow parent run: {parent_run_id} (browse: mlflow ui --backend-store-uri {tracking_uri})")


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.list:
        for name in list_studies():
            print(f"{name:16s} {load_study(name).question}")
        return 0
    if not args.study:
        parser().error(f"name a study; choices: {', '.join(list_studies())}")
    try:
        spec = apply_overrides(load_study(args.study), args)
        check(spec)
        stores = Stores(root=args.root, tracking_uri=args.tracking_uri, storage=args.storage)
        check_resume(spec, stores)
    except (ValueError, KeyError, TypeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    command = shlex.join(["python", "-m", "harness.study", *(sys.argv[1:] if argv is None else argv)])
    try:
        report = run_study(spec, stores, args.reports, command)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 130 if report is None else 0


if __name__ == "__main__":
    sys.exit(main())
