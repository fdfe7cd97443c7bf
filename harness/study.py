"""`python -m harness.study NAME`: the command line that runs a study. It parses and checks the settings,
then hands one worker (or `--workers N` of them) the study: `harness.run.worker` does the work and
`harness.reporting.publish` writes what it found.

Running the same command again resumes: finished trials are kept and each arm is topped up to its budget.
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
import warnings
from typing import Any

import harness.browse
from harness.cli import (
    HelpFormatter,
    add_store_flags,
    at_most,
    check_environment,
    exit_now,
    positive_int,
    quiet_interrupt_cleanup,
    reports_folder,
)
from harness.run.launch import launch_workers, wait_for
from harness.run.resume import check_resume
from harness.spec import LIMITS, VARIANT_SETTINGS, StudySpec
from harness.stores import Stores
from harness.study_file import list_studies, load_study

DESCRIPTION = """\
Run a transfer-learning study: one Optuna search per arm (same budget, same seeded sampler),
every trial an MLflow run; each arm's best configurations rerun over fresh seeds, the best
by mean validation accuracy tested once on held-out data; then a markdown report in
ROOT/reports/NAME/ with the verdict and its uncertainty.

Rerunning resumes: what was cut off runs again, with the same settings. Settings other than
the study file's make a study of their own, named after what differs. Any number of workers,
on one machine or many, may share a study through its stores."""

EPILOG = """\
examples:
  python -m harness.study sgd_vs_adam
  python -m harness.study sgd_vs_adam --trials 5 --seeds 3 --epochs 6
  python -m harness.study sgd_vs_adam --workers 2
  python -m harness.study sgd_vs_adam --storage postgresql://USER@HOST:5432/optuna \\
      --tracking-uri http://HOST:5000
  python -m harness.study --list

browse: mlflow ui --backend-store-uri sqlite:///mlruns/mlflow.db"""


def class_list(text: str) -> tuple[int, ...] | str:
    """'0-4' or '0,2,4' -> class indices; 'all' keeps every class (resolved by `StudySpec.variant`)."""
    if text == "all":
        return "all"
    try:
        classes = []
        for part in text.split(","):
            low, _, high = part.partition("-")
            classes += range(int(low), int(high or low) + 1)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected class indices like 0-4 or 0,2,4 or all, not {text!r}") from None
    if not classes:
        raise argparse.ArgumentTypeError(f"{text!r} names no class (a range runs low-high, like 5-9)")
    return tuple(classes)


def parser() -> argparse.ArgumentParser:
    from harness.naming import DATASET_NAMES, MODEL_NAMES

    p = argparse.ArgumentParser(prog="python -m harness.study", description=DESCRIPTION, epilog=EPILOG,
                                formatter_class=HelpFormatter,
                                allow_abbrev=False)  # --workers is passed on to workers minus itself
    study = p.add_argument_group("study")
    study.add_argument("study", nargs="?", metavar="NAME", help="a study in studies/ (see --list)")
    study.add_argument("--list", action="store_true", help="list the studies and exit")
    study.add_argument("--describe", action="store_true", help="list what a study file can name (optimizers, "
                       "strategies, models and their stages, datasets, comparisons, TrialConfig fields) and exit")
    budget = p.add_argument_group("budget", "each defaults to the study file's")
    budget.add_argument("--trials", type=at_most(LIMITS["n_trials"]), metavar="N", help="Optuna trials per arm")
    budget.add_argument("--seeds", type=at_most(LIMITS["seeds"]), metavar="N",
                        help="verdict seeds per arm, fixed (without it a sequential study adds seed_step more up to "
                             "seed_cap while a comparison is undecided)")
    budget.add_argument("--searches", type=at_most(LIMITS["searches"]), metavar="K",
                        help="independent searches per arm, each choosing its own configuration for the verdict seeds "
                        "(1: the verdict is conditional on one search)")
    budget.add_argument("--epochs", type=at_most(LIMITS["epochs"]), metavar="N", help="training epochs per run")
    data = p.add_argument_group("data", "each defaults to the study file's")
    data.add_argument("--dataset", metavar="NAME",
                      help=f"target dataset: {', '.join(DATASET_NAMES)} (digits ships with scikit-learn; the others "
                      "download into the data root), or folder:PATH with PATH/<class>/*.jpg, or PATH/train/<class>/ "
                      "+ PATH/val/<class>/ (val is then the test split)")
    data.add_argument("--data-root", metavar="DIR", help="folder for downloadable datasets ($HARNESS_DATA_ROOT, "
                      "else data)")
    data.add_argument("--shots", type=positive_int, metavar="N", help="training images per target class")
    data.add_argument("--source-classes", type=class_list, metavar="LIST",
                      help="classes the source model is pretrained on, e.g. 0-4 or 0,2,4")
    data.add_argument("--target-classes", type=class_list, metavar="LIST",
                      help="classes of the target task, e.g. 5-9; 'all' for every class")
    model = p.add_argument_group("model", "each defaults to the study file's")
    model.add_argument("--model", metavar="NAME",
                       help=f"model to transfer: {', '.join(MODEL_NAMES)}, any torchvision classifier by name, "
                       "or timm's as timm:NAME (pip install timm)")
    model.add_argument("--weights", metavar="KIND",
                       help="source (pretrained here on the source classes) | imagenet (torchvision's) | none | "
                       "PATH to a checkpoint file")
    add_store_flags(p)
    workers = p.add_argument_group("workers")
    workers.add_argument("--workers", type=worker_count, default=DEFAULT_WORKERS, metavar="N|auto",
                         help="worker processes on this machine sharing the study: auto runs one single-threaded "
                         "worker per usable core (as memory allows), or one per GPU on a GPU box (worker i gets "
                         "GPU i mod the number of GPUs); N runs N, the cores shared among them")
    workers.add_argument("--threads", type=positive_int, help=argparse.SUPPRESS)  # set by --workers for each worker
    return p


DEFAULT_WORKERS = "auto"


def worker_count(text: str) -> int | str:
    return "auto" if text == "auto" else positive_int(text)


def variant_changes(args: argparse.Namespace) -> dict[str, Any]:
    """The settings the command line gives, as `StudySpec.variant` takes them."""
    names = {"n_trials": "trials"}
    return {k: getattr(args, names.get(k, k)) for k in VARIANT_SETTINGS if getattr(args, names.get(k, k)) is not None}


def apply_overrides(spec: StudySpec, args: argparse.Namespace) -> StudySpec:
    return spec.variant(**variant_changes(args))


def check(spec: StudySpec) -> None:
    """Fail before anything is written: every arm's names must be known, with the valid choices named."""
    from harness.learn.checks import check_config, colour_warning, validation_warning
    from harness.run.dryrun import check_search_spaces
    from harness.run.slots import SAMPLERS

    if spec.sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {spec.sampler!r}; choices: {', '.join(SAMPLERS)}")
    for arm in spec.arms:
        try:
            check_config(arm.config(spec.base))
        except ValueError as error:
            raise ValueError(f"arm {arm.name}: {error}") from None
    # every arm's space, dry run: strategies, schedules, optimizer params, stage counts, fixed values included
    check_search_spaces(spec)
    warnings = [w(arm.config(spec.base)) for arm in spec.arms for w in (colour_warning, validation_warning)]
    warnings += [random_frozen_warning(arm.name, arm.config(spec.base)) for arm in spec.arms]
    for warning in dict.fromkeys(filter(None, warnings)):
        print(f"warning: {warning}", file=sys.stderr)


FREEZING = ("linear_probe", "freeze_k", "gradual", "lp_ft")  # strategies that hold some layers fixed for a while


def random_frozen_warning(arm: str, cfg: Any) -> str | None:
    """An arm that freezes layers of a model with no pretrained weights trains on top of random features: legal
    (a random-features baseline), rarely meant."""
    if cfg.weights != "none" or cfg.strategy not in FREEZING or (cfg.strategy == "freeze_k" and not cfg.freeze_k):
        return None
    return (f"arm {arm} freezes layers ({cfg.strategy}) of a model with weights none: those layers stay random; "
            "use --weights source or imagenet to transfer, or a full fine-tune for a from-scratch baseline")


def list_all(args: argparse.Namespace) -> int:
    names = list_studies(args.studies)
    width = max(map(len, names), default=0) + 2
    for name in names:
        try:
            print(f"{name:{width}s}{load_study(name, args.studies, suites=True).question}")
        except (ValueError, TypeError) as error:  # one broken file must not hide the others
            print(f"{name:{width}s}(cannot be loaded: {error})")
    return 0


def main(argv: list[str] | None = None, spec: StudySpec | None = None) -> int:
    """The command line; `spec`, a study built in Python (harness.api), stands for the file argv names."""
    argv = sys.argv[1:] if argv is None else argv
    args = parser().parse_args(argv)
    harness.browse.ui_port = args.ui_port  # every link to a local store's UI, in this process and its workers
    if args.list:
        return list_all(args)
    if args.describe:  # what a study file can name; with a study, what that study runs (its model's stages)
        from harness.describe import describe, describe_study

        try:
            print(describe_study(apply_overrides(load_study(args.study, args.studies), args)) if args.study
                  else describe())
        except (ValueError, KeyError, TypeError) as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        return 0
    if not args.study:
        parser().error(f"name a study; choices: {', '.join(list_studies(args.studies))}")
    import optuna

    from harness.stores import check_stores

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    quiet_interrupt_cleanup()
    try:
        spec = spec if spec is not None else load_study(args.study, args.studies, suites=True)
        if not args.threads:  # the command, not a worker it started: said at once, before the slow imports
            print(f"checking {args.study}: its settings, the stores, and a dry run of each arm", flush=True)
        args.reports = reports_folder(args)
        stores = Stores(root=args.root, tracking_uri=args.tracking_uri, storage=args.storage)
        if not isinstance(spec, StudySpec):  # a suite: each workload a study, run as its own command would
            return run_suite(spec.variant(variant_changes(args)), stores, args)
        spec = apply_overrides(spec, args)
        state = "open"
        if not args.threads:  # a worker started by --workers: the command that started it checked all this
            check_stores(stores)
            state = check_resume(spec, stores)
            report = args.reports / spec.name / "README.md"
            if state == "current" and report.is_file():  # nothing to run, nothing to check, nothing to start
                from harness.run.progress import nothing_to_do

                nothing_to_do(spec.name, stores.root, report, "up to date")
                return 0
            from harness.run.resources import plan_workers

            plan_workers(args.workers)  # refused here, before anything is written, if memory cannot hold them
            check_environment()
            check(spec)
    except (ValueError, KeyError, TypeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # while checking (mostly importing PyTorch): nothing written yet, nothing to keep
        print("\ninterrupted while the study was being checked; nothing was written", file=sys.stderr)
        return 130
    except Exception as error:
        from harness.run.outage import is_outage

        if not is_outage(error):
            raise
        print(f"error: the storage went away while the study was being checked ({type(error).__name__}); "
              "nothing was written: rerun the same command once it is back", file=sys.stderr)
        return 75
    from harness.run.resources import plan_workers

    plan = plan_workers(args.workers if state == "open" else 1)  # a finished study's rerun: one process says so
    if plan.workers > 1:
        return wait_for(launch_workers(argv, plan, main))
    import torch

    torch.set_num_threads(args.threads or plan.threads)
    return run_worker(spec, stores, args, shlex.join(["python", "-m", "harness.study", *user_argv(argv)]))


def run_suite(suite: Any, stores: Stores, args: argparse.Namespace) -> int:
    """Run every workload of a suite (harness.suite_spec) as `python -m harness.study` would run it alone, one after
    another, each with its own workers and resume; one already done answers at once. Then the suite's report."""
    from harness.stores import check_stores
    from harness.suite_spec import workload_argv, workload_specs

    specs = workload_specs(suite, args.studies)
    check_stores(stores)
    check_environment()
    for spec in specs:  # every workload checked before the first runs: a dataset missing fails now, not in an hour
        if check_resume(spec, stores, say=False) != "current":  # (each says what it resumes when it runs)
            check(spec)  # one done and reported runs nothing: no data to check
    defaults = parser().parse_args([])  # flags left at their defaults stay off each workload's recorded command
    given = {"--root": args.root, "--reports": None if args.reports == args.root / "reports" else args.reports,
             "--studies": args.studies, "--workers": args.workers, "--storage": args.storage,
             "--tracking-uri": args.tracking_uri}
    same = {"--root": defaults.root, "--studies": defaults.studies, "--workers": defaults.workers}
    common = [str(x) for flag, value in given.items() if value is not None and value != same.get(flag)
              for x in (flag, value)]
    for i, (workload, spec) in enumerate(zip(suite.workloads, specs, strict=True), 1):
        print(f"== {suite.name}: workload {i}/{len(specs)}, {workload.label} (study {spec.name})", flush=True)
        code = main([*workload_argv(suite, workload), *common])
        if code:
            print(f"{suite.name}: workload {workload.label} ended with exit code {code}; rerun the same command to "
                  "resume (workloads that finished are kept)", file=sys.stderr)
            return code
    from harness.reporting.suite_report import is_current, publish_suite

    unfinished = [s.name for s in specs if check_resume(s, stores, say=False) != "current"]
    if unfinished:  # other workers (other machines, a job array) are finishing these: the last of them reports
        print(f"{suite.name}: {', '.join(unfinished)} still being finished by another worker; the worker that "
              "finishes the last one writes the suite's report", flush=True)
        return 0
    readme = args.reports / suite.name / "README.md"
    if is_current(suite, specs, stores, args.reports):
        print(f"nothing to do: every workload of {suite.name} is recorded in {stores.root}; its report is up to date")
    else:
        readme = publish_suite(suite, specs, stores, args.reports)
    print(f"\n{suite.name}: {suite.question}")
    for line in json.loads((readme.parent / "summary.json").read_text())["verdicts"]:
        print(f"- {line.replace('**', '')}")
    print(f"report: {readme}")
    return 0


def user_argv(argv: list[str]) -> list[str]:
    """The command as the user gave it: without the flags `--workers` adds for each worker it starts.

    >>> user_argv(["sgd_vs_adam", "--epochs", "3", "--workers", "1", "--threads", "1"])
    ['sgd_vs_adam', '--epochs', '3']
    """
    if "--threads" not in argv:
        return argv
    i = argv.index("--threads")
    return [a for j, a in enumerate(argv) if j not in (i, i + 1, i - 2, i - 1)]


def run_worker(spec: StudySpec, stores: Stores, args: argparse.Namespace, command: str) -> int:
    from harness.reporting.publish import Publisher
    from harness.run.worker import Worker

    logging.getLogger("mlflow").setLevel(logging.WARNING)  # again: MLflow sets its own level when it is imported
    # torch's exporter says this of every CPU model MLflow logs: about weights on other devices, never ours
    warnings.filterwarnings("ignore", message="No complete tensor found in the group", category=UserWarning)
    worker = Worker(spec, stores, command, Publisher(args.reports), args.reports / spec.name / "README.md")
    try:
        return worker.run()
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    exit_now(main())
