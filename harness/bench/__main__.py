"""`python -m harness.bench`: what the harness costs over the training it does, measured in one process.

The same trials run four ways: the harness (Optuna + batched MLflow + cached frozen features), the harness's
own `fit` alone, a bare hand-written PyTorch loop, and a plain Optuna + MLflow script written the usual way
(a nested run per trial, metrics and `trial.report` every epoch). Then linear probes on ResNet-18 at 64 px,
cached against uncached; training images per second per model; and the default study, timed end to end in a
subprocess. Everything is written under a temporary folder (never ./mlruns); nothing is downloaded.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from harness.bench.report import machine, markdown
from harness.bench.study import default_study_seconds, report_seconds, under_load, workers_speedup
from harness.bench.throughput import bare_run, images_per_second
from harness.bench.workers import side_by_side
from harness.learn.data import Task, make_task
from harness.learn.features import FeatureCache
from harness.learn.models import Preprocess, build_model, model_spec
from harness.learn.train import device, fit, seed_everything
from harness.run import tracking
from harness.spec import TrialConfig
from harness.stores import Stores, experiment_id, open_storage
from harness.study_file import load_study

if TYPE_CHECKING:
    import optuna

ROOT = Path(__file__).resolve().parents[2]  # the checkout: harness/bench/__main__.py


@dataclass(frozen=True)
class Plan:
    """How much work each comparison does."""

    trials: int = 5  # per arm of sgd_vs_adam, for harness vs bare vs plain script
    epochs: int = 12
    # the epochs of the source checkpoint every trial starts from (pretrained once, untimed); None: the study's
    pretrain_epochs: int | None = None
    lp_trials: int = 3
    lp_epochs: int = 12
    lp_model: str = "resnet18"
    lp_size: int = 64
    throughput: tuple[tuple[str, int], ...] = (("lenet5", 32), ("resnet18", 64))  # (model, input px)
    throughput_images: int = 256
    study_args: tuple[str, ...] | None = ()  # extra flags for the default study; None skips it
    gpu_throughput: bool = True  # on a GPU, measure GPU_THROUGHPUT's models instead of `throughput`
    under_load: bool = True  # also time the default study beside one busy process per core


PLANS = {
    "full": Plan(),
    "quick": Plan(trials=2, epochs=6, throughput_images=128,
                  study_args=("--trials", "2", "--seeds", "2", "--epochs", "2")),
    "smoke": Plan(trials=1, epochs=1, pretrain_epochs=1, lp_trials=2, lp_epochs=1, lp_model="lenet5", lp_size=32,
                  throughput=(("lenet5", 32),), throughput_images=16, study_args=None, gpu_throughput=False),
}
GPU_THROUGHPUT = (("lenet5", 32), ("resnet18", 64), ("resnet18", 224), ("resnet50", 224))


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# --- the loops compared -------------------------------------------------------------------------------------


def compare_loops(plan: Plan, root: Path) -> dict:
    """sgd_vs_adam's trials through the harness, then each replayed through fit alone, a bare loop and a plain
    script. The ways take turns trial by trial (in a rotating order), so a load that drifts on a shared machine
    falls on all of them alike; each way's total is the sum over its trials."""
    import mlflow
    import optuna

    from harness.run.checkpoints import source_checkpoint
    from harness.run.objective import RunContext, make_objective, trial_config

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # QMCSampler's notice
    spec = load_study("sgd_vs_adam")
    base = dataclasses.replace(spec.base, epochs=plan.epochs,
                               pretrain_epochs=plan.pretrain_epochs or spec.base.pretrain_epochs)
    spec = dataclasses.replace(spec, n_trials=plan.trials, prune=False, base=base)  # every trial runs all its epochs
    stores = Stores(root=root / "mlruns")
    eid = experiment_id(stores, "bench")
    ctx = RunContext(stores.checkpoints)
    storage = open_storage(stores)

    def create(name: str, sampler: optuna.samplers.BaseSampler | None = None) -> optuna.Study:
        return optuna.create_study(direction="maximize", study_name=name, storage=storage, sampler=sampler)

    with mlflow.start_run(experiment_id=eid, run_name="bench"):
        weights = str(source_checkpoint(spec.base, ctx.checkpoints).path)  # pretrained once, untimed
        task = ctx.task(spec.base)
        say("sampling the configurations (also warms up the stores, imports and kernels; untimed)")
        configs, replay = [], []
        for arm in spec.arms:
            study = create(f"sample/{arm.name}", optuna.samplers.QMCSampler(seed=0))
            study.optimize(make_objective(spec, arm, ctx), n_trials=plan.trials)
            replay += [(arm, t.params) for t in study.trials]
            configs += [trial_config(spec, arm, optuna.trial.FixedTrial(t.params)) for t in study.trials]
        harness_studies = {arm.name: create(f"harness/{arm.name}") for arm in spec.arms}
        unbatched_studies = {arm.name: create(f"unbatched/{arm.name}") for arm in spec.arms}
        plain = create("plain")

        def harness_trial(studies: dict, arm, params: dict) -> None:
            studies[arm.name].enqueue_trial(params)
            studies[arm.name].optimize(make_objective(spec, arm, ctx), n_trials=1)

        def unbatched_trial(arm, params: dict) -> None:
            tracking.FLUSH_SECONDS, flush = 0.0, tracking.FLUSH_SECONDS  # one write per epoch, as before batching
            try:
                harness_trial(unbatched_studies, arm, params)
            finally:
                tracking.FLUSH_SECONDS = flush

        def fit_alone(cfg: TrialConfig) -> None:
            seed_everything(cfg.seed)
            fit(build_model(cfg.model, len(task.classes), weights, cfg.bn_frozen_eval).to(device()), task, cfg)

        times = dict.fromkeys(("harness", "unbatched", "fit", "bare", "plain"), 0.0)
        say(f"{len(configs)} trials, five ways each, taking turns")
        for i, ((arm, params), cfg) in enumerate(zip(replay, configs, strict=True)):
            ways = {"harness": partial(harness_trial, harness_studies, arm, params),
                    "unbatched": partial(unbatched_trial, arm, params), "fit": partial(fit_alone, cfg),
                    "bare": partial(bare_run, cfg, task, weights),
                    "plain": partial(plain_trial, plain, cfg, task, weights, eid)}
            names = list(ways)
            for way in names[i % len(names):] + names[: i % len(names)]:
                start = time.perf_counter()
                ways[way]()
                times[way] += time.perf_counter() - start
        say(f"the same {len(configs)} trials through the harness's workers, side by side (--workers auto)")
        side = [partial(harness_trial, {arm.name: create(f"side/{arm.name}/{i}")}, arm, params)
                for i, (arm, params) in enumerate(replay)]
        side_s, workers = side_by_side(side)
    harness_s, unbatched_s, fit_s, bare_s, plain_s = times.values()
    epochs = len(configs) * plan.epochs
    return {  # the harness as a study runs it (its workers side by side) against scripts run one trial at a time
        "harness_over_bare": side_s / bare_s,
        "harness_over_plain_optuna_mlflow": side_s / plain_s,
        "harness_one_worker_over_bare": harness_s / bare_s,
        "harness_one_worker_over_plain": harness_s / plain_s,
        "harness_over_fit": harness_s / fit_s,
        "workers": workers.describe(),
        "runs": len(configs), "epochs": epochs,
        "ms_per_epoch": {way: 1e3 * s / epochs for way, s in (
            ("harness_side_by_side", side_s), ("harness", harness_s), ("harness_unbatched_logging", unbatched_s),
            ("fit", fit_s), ("bare", bare_s), ("plain_optuna_mlflow", plain_s))},
        "tracking_ms_per_epoch": {"batched": 1e3 * (harness_s - fit_s) / epochs,
                                  "unbatched": 1e3 * (unbatched_s - fit_s) / epochs},
    }


def plain_trial(study: optuna.Study, cfg: TrialConfig, task: Task, weights: str, eid: str) -> None:
    """One trial of Optuna + MLflow the way users write it: a nested run, log_metrics and report every epoch."""
    import mlflow
    import optuna

    def objective(trial: optuna.Trial) -> float:
        trial.suggest_float("lr", cfg.lr, cfg.lr)  # a script's search space is sampled and stored like this
        with mlflow.start_run(nested=True, run_name=f"trial {trial.number}", experiment_id=eid):
            mlflow.log_params(cfg.flat())

            def on_epoch(epoch: int, metrics: dict) -> None:
                mlflow.log_metrics(metrics, step=epoch)
                trial.report(metrics["val_acc"], epoch)
                if trial.should_prune():
                    raise optuna.TrialPruned()

            best = bare_run(cfg, task, weights, on_epoch)
            mlflow.log_metric("best_val_acc", best)
            return best

    study.optimize(objective, n_trials=1)


# --- frozen features, throughput, the default study ----------------------------------------------------------


def linear_probe_speedup(plan: Plan) -> dict:
    """Linear-probe trials (other lr and seed each) with and without the feature cache, on the same task."""
    spec = model_spec(plan.lp_model)
    cfg = TrialConfig(model=plan.lp_model, weights="none", strategy="linear_probe", epochs=plan.lp_epochs,
                      optimizer="sgd", optimizer_params={"momentum": 0.9}, lr_schedule="cosine")
    pre = Preprocess(plan.lp_size, spec.in_channels, (0.5,) * spec.in_channels, (0.5,) * spec.in_channels)
    task = make_task(cfg, pre, device=device())
    seconds, accuracy = {}, {}
    for name, cache in (("uncached", None), ("cached", FeatureCache())):
        seconds[name], accuracy[name] = [], []
        for trial in range(plan.lp_trials):
            trial_cfg = dataclasses.replace(cfg, seed=trial, lr=0.01 * 3**trial)
            seed_everything(0)  # one backbone for every trial: a study's checkpoint
            model = build_model(cfg.model, len(task.classes), "none").to(device())
            start = time.perf_counter()
            accuracy[name].append(fit(model, task, trial_cfg, features=cache).best_val_acc)
            seconds[name].append(time.perf_counter() - start)
        say(f"linear probe {name}: {[round(s, 2) for s in seconds[name]]} s per trial")
    uncached = statistics.mean(seconds["uncached"])
    return {
        "cached_linear_probe_speedup": uncached / statistics.mean(seconds["cached"]),  # first trial's features included
        "cached_linear_probe_speedup_warm": uncached / statistics.mean(seconds["cached"][1:]),
        "linear_probe_seconds_per_trial": {k: statistics.mean(v) for k, v in seconds.items()},
        "linear_probe_max_accuracy_difference": max(abs(a - b) for a, b in zip(*accuracy.values(), strict=True)),
        "linear_probe_setup": f"{plan.lp_model} at {plan.lp_size} px, {plan.lp_trials} trials x {plan.lp_epochs} "
                              f"epochs, {len(task.train)} train / {len(task.val)} val images",
    }


def run(plan: Plan, workdir: Path) -> dict:
    results: dict = {}
    results.update(compare_loops(plan, workdir))
    results.update(linear_probe_speedup(plan))
    models = GPU_THROUGHPUT if device().type == "cuda" and plan.gpu_throughput else plan.throughput
    n = plan.throughput_images * (8 if device().type == "cuda" else 1)
    results["images_per_second"] = [images_per_second(name, size, n) for name, size in models]
    results["default_study_seconds"] = (None if plan.study_args is None
                                        else default_study_seconds(plan.study_args, workdir))
    results["default_study_command"] = (None if plan.study_args is None
                                        else " ".join(["python -m harness.study sgd_vs_adam", *plan.study_args]))
    results["report_seconds"] = results["default_study_under_load_over_quiet"] = None  # skipped, unless:
    if plan.study_args is not None:
        results["report_seconds"] = report_seconds(workdir)
        if plan.under_load:
            results.update(under_load(plan.study_args, workdir, results["default_study_seconds"]))
    return results


def gpu_check(workdir: Path) -> dict:
    """On a GPU machine: the harness's images per second over a bare bf16 channels_last loop's (target >= 0.8)
    for ResNet-18 and ResNet-50 at 224 px, and the default study's wall time. Elsewhere it says there is none."""
    if not torch.cuda.is_available():
        return {"gpu": None, "note": "no CUDA device on this machine: run `python -m harness.bench --gpu` on one"}
    rows = [images_per_second(name, 224, 512) for name in ("resnet18", "resnet50")]
    return {"gpu": torch.cuda.get_device_name(0), "images_per_second": rows,
            "harness_over_bare_bf16": {r["model"]: r["harness_over_bare"] for r in rows}, "target": ">= 0.8",
            "default_study_seconds": default_study_seconds((), workdir)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m harness.bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--json", action="store_true", help="print the figures as one JSON object on stdout")
    p.add_argument("--plan", choices=list(PLANS), default="full",
                   help="full (minutes), quick (a shorter default study and fewer trials), smoke (seconds, for tests)")
    p.add_argument("--quick", action="store_const", const="quick", dest="plan", help="same as --plan quick")
    p.add_argument("--no-study", action="store_true", help="skip timing the default study")
    p.add_argument("--workers", action="store_true",
                   help="also time the full default study with --workers 2 against --workers 1 (minutes)")
    p.add_argument("--out", type=Path, default=ROOT / "reports" / "bench" / "README.md",
                   help="where the markdown goes (default: reports/bench/README.md)")
    p.add_argument("--note", default="", help="a sentence for the report, e.g. that the machine was shared")
    p.add_argument("--gpu", action="store_true", help="the GPU check alone: images per second against a bare bf16 "
                   "channels_last loop for ResNet-18/50 at 224 px, and the default study's wall time; one JSON line")
    args = p.parse_args(argv)
    if args.gpu:
        with tempfile.TemporaryDirectory(prefix="harness-bench-") as tmp:
            print(json.dumps(gpu_check(Path(tmp))))
        return 0
    plan = PLANS[args.plan]
    if args.no_study:
        plan = dataclasses.replace(plan, study_args=None)
    with tempfile.TemporaryDirectory(prefix="harness-bench-") as tmp:
        results = run(plan, Path(tmp))
        if args.workers:
            results.update(workers_speedup(Path(tmp)))
    command = ("python -m harness.bench" + ("" if args.plan == "full" else f" --plan {args.plan}")
               + (" --workers" if args.workers else ""))
    results.update(plan=args.plan, note=args.note, machine=machine(), command=command,
                   date=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(markdown(results))
    if args.json:
        print(json.dumps(results, indent=1))
    else:
        print(markdown(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
