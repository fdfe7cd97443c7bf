"""`python -m harness.study NAME`: one Optuna study per arm, one parent MLflow run, confirmation seeds, the report.

Running the same command again resumes: finished trials are kept and each arm is topped up to its budget.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import platform
import re
import shlex
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

from harness.spec import (
    STUDIES_DIR,
    Stores,
    StudySpec,
    TrialConfig,
    digest,
    list_studies,
    load_study,
    retarget,
)

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
        prog="python -m harness.study", allow_abbrev=False,  # --workers is passed on to workers minus itself
        description="Run a transfer-learning study: one Optuna search per arm (same budget, same seeded "
        "sampler), every trial an MLflow run; each arm's best configs rerun over fresh seeds, the best by mean "
        "validation accuracy tested once on held-out data; then a markdown report in reports/NAME/ with the "
        "verdict and its uncertainty. Rerunning resumes (what was cut off runs again, with the same settings). "
        "Settings other than the study file's make a study of their own, named after what differs. Any number "
        "of workers, on one machine or many, may share a study through its stores.",
        epilog="examples:\n  python -m harness.study sgd_vs_adam\n  python -m harness.study sgd_vs_adam "
        "--trials 5 --seeds 3 --epochs 6\n  python -m harness.study sgd_vs_adam --workers 2\n"
        "  python -m harness.study sgd_vs_adam --storage postgresql://USER@HOST:5432/optuna "
        "--tracking-uri http://HOST:5000\n  python -m harness.study --list\n"
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
    p.add_argument("--storage", help="Optuna storage: sqlite:///FILE (default ROOT/optuna.db), journal:FILE, or "
                   "postgresql://USER@HOST:PORT/DB to share a study among machines")
    p.add_argument("--tracking-uri", help="MLflow tracking URI: sqlite:///FILE (default ROOT/mlflow.db) or "
                   "http://HOST:PORT, an `mlflow server` every machine can reach")
    p.add_argument("--reports", type=Path, default=Path("reports"), help="where reports go (default: reports)")
    p.add_argument("--studies", type=Path, default=STUDIES_DIR, help="folder of study files (default: studies/)")
    p.add_argument("--workers", type=positive_int, default=1,
                   help="worker processes on this machine sharing the study and the CPU threads (default 1; on a "
                   "GPU box, one per GPU: each worker gets GPU i mod the number of GPUs)")
    p.add_argument("--threads", type=positive_int, help=argparse.SUPPRESS)  # set by --workers for each worker
    return p


CLI_OVERRIDES = ("epochs", "model", "weights", "data_root", "shots", "source_classes",
                 "target_classes")  # flags that set the TrialConfig field of the same name


def apply_overrides(spec: StudySpec, args: argparse.Namespace) -> StudySpec:
    """The study with the command line's settings. Any that differ from the study file's make it another
    study (`<name>--<what differs>`): its own Optuna studies, MLflow experiment and report folder, so a
    variant never resumes, or overwrites, the study as its file defines it."""
    base = retarget(spec.base, args.dataset) if args.dataset is not None else spec.base
    base_changes = {field: getattr(args, field) for field in CLI_OVERRIDES if getattr(args, field) is not None}
    for field in ("source_classes", "target_classes"):
        if base_changes.get(field) == "all":
            base_changes[field] = None
    changes: dict[str, Any] = {"base": dataclasses.replace(base, **base_changes)}
    if args.trials is not None:
        changes["n_trials"] = args.trials
    if args.seeds is not None:
        changes["seeds"] = args.seeds
    variant = dataclasses.replace(spec, **changes)
    differs = {k: v for k, v in changes.items() if k != "base" and getattr(spec, k) != v}
    differs.update({k: getattr(variant.base, k) for k in ("dataset", *CLI_OVERRIDES)
                    if k != "data_root" and getattr(variant.base, k) != getattr(spec.base, k)})
    if not differs:
        return spec
    name = variant_name(spec.name, differs)
    return dataclasses.replace(variant, name=name, base=dataclasses.replace(variant.base, study=name))


UNSAFE = re.compile(r"[^\w.-]+")  # what a folder name should not hold


def variant_name(name: str, differs: dict[str, Any]) -> str:
    """sgd_vs_adam + {epochs: 6, model: resnet18} -> sgd_vs_adam--epochs-6--model-resnet18 (a folder name).

    Paths are named by their last part and a digest of the absolute path, and any value the folder name
    cannot spell as it is gets a digest too, so two different settings never share a name."""
    def text(value: Any) -> str:
        if isinstance(value, tuple):
            return _ranges(value)
        value = "all" if value is None else str(value)
        kind, _, rest = value.rpartition(":") if value.startswith("folder:") else ("", "", value)
        if "/" in rest or Path(rest).exists():  # a path: where it is, not how it was typed, tells it apart
            full = f"{kind}:{Path(rest).expanduser().resolve()}" if kind else str(Path(rest).expanduser().resolve())
            return f"{UNSAFE.sub('_', Path(rest).name)[:24]}-{digest({'v': full}, 6)}"
        clean = UNSAFE.sub("_", value)
        return clean if clean == value and len(clean) <= 24 else f"{clean[:24]}-{digest({'v': value}, 6)}"

    short = {"n_trials": "trials", "source_classes": "source", "target_classes": "target"}
    return "--".join([name, *(f"{short.get(k, k)}-{text(v)}" for k, v in sorted(differs.items()))])


def _ranges(values: tuple) -> str:
    """(0, 1, 2, 3, 4, 7) -> 0..4_7: class lists stay short."""
    parts, run = [], []
    for v in values:
        if run and isinstance(v, int) and v == run[-1] + 1:
            run.append(v)
            continue
        if run:
            parts.append(f"{run[0]}..{run[-1]}" if len(run) > 1 else str(run[0]))
        run = [v]
    if run:
        parts.append(f"{run[0]}..{run[-1]}" if len(run) > 1 else str(run[0]))
    return "_".join(parts)


def recorded_spec(name: str, stores: Stores, studies: Path = STUDIES_DIR) -> StudySpec:
    """A study by name: its file, or a variant (`<file>--<what differs>`) rebuilt from the command that ran it,
    as its parent runs record it, so `python -m harness.report` can rebuild a variant's report too."""
    try:
        return load_study(name, studies)
    except ValueError:
        if "--" not in name:
            raise
    import mlflow

    from harness.tracking import experiment_id

    eid = experiment_id(stores, name, create=False)
    runs = [] if eid is None else mlflow.search_runs([eid], "tags.phase = 'study'", output_format="list")
    if not runs:
        raise ValueError(f"unknown study {name!r}: neither a file in {studies} nor a variant recorded in "
                         f"{stores.mlflow_uri}")
    argv = shlex.split(runs[0].data.tags["command"])[3:]  # after "python -m harness.study"
    args = parser().parse_args(argv)
    return apply_overrides(load_study(args.study, studies), args)


def check(spec: StudySpec) -> None:
    """Fail before anything is written: every arm's names must be known, with the valid choices named."""
    from harness.datasets import check_data
    from harness.models import WeightsUnavailable, check_weights_file, model_spec, require_imagenet
    from harness.optim import optimizer_spec
    from harness.plan import SAMPLERS
    from harness.searchcheck import check_search_spaces

    if spec.sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {spec.sampler!r}; choices: {', '.join(SAMPLERS)}")
    for arm in spec.arms:
        cfg = arm.config(spec.base)
        model_spec(cfg.model)
        check_data(cfg)  # the dataset exists and has the classes the arm's class split names
        optimizer_spec(cfg.optimizer)
        if cfg.weights not in ("source", "imagenet", "none"):
            check_weights_file(cfg.weights, cfg.model)  # exists, loads without running code, fits the model
        if cfg.weights == "source" and cfg.source_classes is None and cfg.source_dataset is None:
            raise ValueError(f"arm {arm.name}: weights=source needs source_classes")
        if cfg.weights == "imagenet":
            try:
                require_imagenet(cfg.model)  # offline: stop here, naming the file and the folder it belongs in
            except WeightsUnavailable as error:
                raise ValueError(f"arm {arm.name}: {error}") from error
    for a, b in spec.comparisons:
        spec.arm(a), spec.arm(b)
    # every arm's space, dry run: strategies, schedules, optimizer params, stage counts, fixed values included
    check_search_spaces(spec)


def check_resume(spec: StudySpec, stores: Stores) -> None:
    """Refuse to top up an arm that was searched with other settings (read-only; before anything is written)."""
    import optuna

    from harness.plan import fixed_settings
    from harness.queue import store_lock
    from harness.tracking import open_storage, optuna_study_name

    if stores.storage is None and not (stores.root / "optuna.db").exists():
        return  # a fresh root: nothing to resume
    with store_lock(stores.optuna_url, stores.root):  # another worker may be creating the schema right now
        storage = open_storage(stores)
        recorded = {}
        for arm in spec.arms:
            try:
                study = optuna.load_study(study_name=optuna_study_name(spec.name, arm.name), storage=storage)
                recorded[arm.name] = json.loads(study.user_attrs.get("config", "{}"))
            except KeyError:
                continue
    for name, old in recorded.items():
        arm = spec.arm(name)
        new = fixed_settings(spec, arm)
        diff = {k: (old[k], new.get(k)) for k in old if old[k] != new.get(k)}
        if diff:
            raise ValueError(f"{optuna_study_name(spec.name, arm.name)} was run with other settings (old, new): "
                             f"{diff}; rerun with those settings to resume, or use another --root to start afresh")


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
        "preprocess": dataclasses.asdict(task.pre), "source_dataset": cfg.source_dataset or cfg.dataset,
        "source_classes": cfg.source_classes,
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


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parser().parse_args(argv)
    if args.list:
        for name in list_studies(args.studies):
            try:
                print(f"{name:16s} {load_study(name, args.studies).question}")
            except (ValueError, TypeError) as error:  # one broken file must not hide the others
                print(f"{name:16s} (cannot be loaded: {error})")
        return 0
    if not args.study:
        parser().error(f"name a study; choices: {', '.join(list_studies(args.studies))}")
    import optuna

    from harness.tracking import check_stores

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    try:
        spec = apply_overrides(load_study(args.study, args.studies), args)
        check(spec)
        stores = Stores(root=args.root, tracking_uri=args.tracking_uri, storage=args.storage)
        check_stores(stores)
        check_resume(spec, stores)
    except (ValueError, KeyError, TypeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.workers > 1:
        return launch_workers(argv, args.workers)
    from harness.worker import Worker

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    command = shlex.join(["python", "-m", "harness.study", *argv])
    try:
        return Worker(spec, stores, args.reports, command).run()
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


def launch_workers(argv: list[str], n: int) -> int:
    """Run `n` copies of this command as worker processes sharing the stores, the CPU threads split among them
    and, on a GPU box, GPU i mod the number of GPUs for worker i. Returns the worst exit status."""
    import os

    import torch

    rest = [a for i, a in enumerate(argv) if a != "--workers" and (i == 0 or argv[i - 1] != "--workers")
            and not a.startswith("--workers=")]
    threads = max(1, len(os.sched_getaffinity(0)) // n)  # the CPUs this process may use, not the machine's
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    devices = visible.split(",") if visible else [str(i) for i in range(torch.cuda.device_count())]
    gpus = len(devices) if torch.cuda.is_available() else 0
    procs = []
    for i in range(n):
        env = dict(os.environ)
        if gpus:
            env["CUDA_VISIBLE_DEVICES"] = devices[i % gpus]
        procs.append(subprocess.Popen([sys.executable, "-m", "harness.study", *rest, "--threads", str(threads)],
                                      env=env))
    print(f"started {n} workers ({threads} CPU threads each{f', {gpus} GPUs' if gpus else ''})", flush=True)
    codes = []
    for proc in procs:
        while True:
            try:
                codes.append(proc.wait())
                break
            except KeyboardInterrupt:  # the workers got the Ctrl-C too: wait for them to record it
                continue
    return max(codes, key=lambda c: (c != 0, abs(c)))


if __name__ == "__main__":
    sys.exit(main())
