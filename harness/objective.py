"""Where Optuna meets MLflow: a trial (or a confirmation seed) -> `TrialConfig` -> child MLflow run -> `fit`.

Every run, search or confirmation, goes through `tracked_run`, so both are logged the same way.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import mlflow
import numpy as np
import optuna
from sklearn.metrics import confusion_matrix

from harness.data import Task, make_task
from harness.models import build_model, preprocessing
from harness.pretrain import source_checkpoint
from harness.spec import Arm, StudySpec, TrialConfig, digest
from harness.tracking import MetricBuffer, start_child_run
from harness.train import Diverged, device, evaluate, fit, seed_everything


def config_hash(cfg: TrialConfig) -> str:
    """Identifies a configuration up to its seed: confirmation runs of one config share it."""
    flat = dataclasses.replace(cfg, seed=0).flat()
    return digest(flat)


@dataclass
class RunContext:
    """What every run of one invocation shares: where checkpoints live, and the tasks already built."""

    checkpoints: Path
    tasks: dict[tuple, Task] = field(default_factory=dict)

    def task(self, cfg: TrialConfig) -> Task:
        weights = "imagenet" if cfg.weights == "imagenet" else "none"
        pre = preprocessing(cfg.model, weights)
        key = (cfg.dataset, cfg.data_root, cfg.source_classes, cfg.target_classes, cfg.shots,
               cfg.val_fraction, cfg.test_fraction, cfg.split_seed, pre)
        if key not in self.tasks:
            self.tasks[key] = make_task(cfg, pre, role="target", device=device())
        return self.tasks[key]


def tracked_run(cfg: TrialConfig, ctx: RunContext, run_name: str, tags: dict[str, str],
                report: Callable[[int, dict[str, float]], None] | None = None, test: bool = False,
                on_start: Callable[[str], None] | None = None) -> float:
    """Train `cfg` in a nested MLflow run and return its best validation accuracy.

    `report(epoch, metrics)` may raise `optuna.TrialPruned`; the run then ends FINISHED with state=pruned.
    With `test`, the best-validation weights are evaluated once on the test split.
    """
    task = ctx.task(cfg)
    weights, ckpt_tags = cfg.weights, {}
    if cfg.weights == "source":
        ckpt = source_checkpoint(cfg, ctx.checkpoints)
        weights, ckpt_tags = str(ckpt.path), {"checkpoint": ckpt.key, "checkpoint_run_id": ckpt.run_id}
    tags = {**tags, **ckpt_tags, "arm": cfg.arm, "optimizer": cfg.optimizer, "freeze": cfg.strategy,
            "seed": str(cfg.seed), "config_hash": config_hash(cfg), "device": str(device()),
            **{f"split.{name}": value for name, value in task.fingerprints().items()}}
    run = start_child_run(run_name, tags)
    if on_start is not None:
        on_start(run.info.run_id)
    start = time.perf_counter()
    status, state, reason = "FINISHED", "complete", ""
    log = MetricBuffer(run.info.run_id)  # params, metrics and final tags reach the store in one or few writes
    log.log_params(cfg.flat())

    def on_epoch(epoch: int, metrics: dict[str, float]) -> None:
        log.log_metrics(metrics, step=epoch)
        if report is not None:
            report(epoch, metrics)  # pruning still decides after every epoch

    try:
        seed_everything(cfg.seed)  # the new head's initialisation depends on the seed
        model = build_model(cfg.model, len(task.classes), weights, cfg.bn_frozen_eval, cfg.transfer_stages)
        model = model.to(device())
        result = fit(model, task, cfg, on_epoch)
        log.log_metrics({"best_val_acc": result.best_val_acc, "best_epoch": result.best_epoch})
        if test:
            model.load_state_dict(result.best_state)
            ev = evaluate(model, task.test)
            log.log_metrics({"test_acc": ev.acc, "test_loss": ev.loss})
            matrix = confusion_matrix(task.test.y.cpu().numpy(), ev.predictions, labels=np.arange(len(task.classes)))
            mlflow.log_dict({"classes": task.classes, "matrix": matrix.tolist()}, "confusion.json")
        return result.best_val_acc
    except optuna.TrialPruned:
        state, reason = "pruned", "median pruner"
        raise
    except Diverged as error:
        status, state, reason = "FAILED", "failed", f"diverged: {error}"
        raise
    except KeyboardInterrupt:
        status, state, reason = "KILLED", "killed", "interrupted (Ctrl-C)"
        raise
    except Exception as error:
        status, state, reason = "FAILED", "failed", f"{type(error).__name__}: {error}"
        raise
    finally:
        log.log_metrics({"wall_seconds": time.perf_counter() - start})
        log.set_tags({"state": state, "state_reason": reason[:500]})
        try:
            log.flush()
        finally:
            mlflow.end_run(status)


def trial_config(spec: StudySpec, arm: Arm, trial: optuna.Trial | optuna.trial.FixedTrial) -> TrialConfig:
    """The arm's config with the study's search space applied; a FixedTrial replays a finished trial."""
    return arm.config(spec.base, **spec.search_space(trial, arm))


def make_objective(spec: StudySpec, arm: Arm, ctx: RunContext) -> Callable[[optuna.Trial], float]:
    def objective(trial: optuna.Trial) -> float:
        cfg = trial_config(spec, arm, trial)
        trial.set_user_attr("config_hash", config_hash(cfg))

        def report(epoch: int, metrics: dict[str, float]) -> None:
            trial.report(metrics["val_acc"], epoch)
            if spec.prune and trial.should_prune():
                raise optuna.TrialPruned(f"pruned at epoch {epoch}")

        tags = {"phase": "search", "optuna_study": trial.study.study_name, "optuna_trial": str(trial.number)}
        try:
            return tracked_run(cfg, ctx, f"{arm.name} trial {trial.number}", tags, report,
                               on_start=lambda run_id: trial.set_user_attr("mlflow_run_id", run_id))
        except Diverged as error:
            trial.set_user_attr("state_reason", f"diverged: {error}")
            raise
        except optuna.TrialPruned:
            trial.set_user_attr("state_reason", "median pruner")
            raise

    return objective


def confirm(spec: StudySpec, arm: Arm, best: optuna.trial.FrozenTrial, seed: int, ctx: RunContext,
            study_name: str) -> float:
    """Retrain the arm's best configuration with `seed` and evaluate it once on the test split."""
    cfg = dataclasses.replace(trial_config(spec, arm, optuna.trial.FixedTrial(best.params)), seed=seed)
    tags = {"phase": "confirm", "optuna_study": study_name, "optuna_trial": str(best.number)}
    return tracked_run(cfg, ctx, f"{arm.name} confirm seed {seed}", tags, test=True)
