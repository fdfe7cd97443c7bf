"""Where Optuna meets MLflow: a trial (or a confirmation seed) -> `TrialConfig` -> child MLflow run -> `fit`.

Every run, search or confirmation, goes through `tracked_run`, so both are logged the same way, and every way
a run can end is named by `harness.run.outcomes.outcome_for`, the one mapping from what was raised to an `Outcome`.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import mlflow
import numpy as np
import optuna
import torch
from sklearn.metrics import confusion_matrix

import harness.browse
from harness import internals
from harness.browse import Browse, browse
from harness.learn.data import Task, make_task, target_preprocessing
from harness.learn.models import build_model
from harness.learn.train import device, evaluate, fit, seed_everything
from harness.run.checkpoints import source_checkpoint
from harness.run.outage import disk_full, is_outage, retrying
from harness.run.outcomes import outcome_for
from harness.run.pruning import PruningView, write_curve
from harness.run.tracking import MetricBuffer, start_child_run
from harness.run.work import Job
from harness.schema import Attr, Phase, Tag
from harness.spec import (
    MODEL_SEED,
    SELECTION_SEED_BASE,
    Arm,
    StudySpec,
    TrialConfig,
    confirmation_config,
    digest,
    is_verdict_seed,
    split_unit,
    weights_kind,
)
from harness.stores import optuna_study_name


def config_hash(cfg: TrialConfig) -> str:
    """Identifies a configuration up to its seed: confirmation runs of one config share it."""
    flat = dataclasses.replace(cfg, seed=0, partition_seed=0, pretrain_seed=0).flat()  # what confirmation varies
    return digest(flat)


@dataclass
class RunContext:
    """What every run of one invocation shares: where checkpoints live, and the tasks already built."""

    checkpoints: Path
    tasks: dict[tuple, Task] = field(default_factory=dict)

    def task(self, cfg: TrialConfig) -> Task:
        pre = target_preprocessing(cfg)
        key = (cfg.dataset, cfg.data_root, cfg.source_classes, cfg.target_classes, cfg.shots,
               cfg.val_fraction, cfg.test_fraction, cfg.split_seed, cfg.partition_seed, pre)
        if key not in self.tasks:
            self.tasks[key] = make_task(cfg, pre, role="target", device=device())
        return self.tasks[key]


def tracked_run(cfg: TrialConfig, ctx: RunContext, run_name: str, tags: dict[str, str],
                report: Callable[[int, dict[str, float]], None] | None = None, test: bool = False,
                on_start: Callable[[str], None] | None = None, log_model: bool = False,
                on_test: Callable[[float, int], None] | None = None) -> float:
    """Train `cfg` in a nested MLflow run and return its best validation accuracy.

    `report(epoch, metrics)` may raise `optuna.TrialPruned`; the run then ends FINISHED with outcome pruned.
    With `test`, the best-validation weights are evaluated once on the test split, `on_test(test accuracy,
    classes)` is told the result, and with `log_model` they are logged as the run's MLflow model.
    """
    task = ctx.task(cfg)
    weights, ckpt_tags = starting_weights(cfg, ctx)
    search = {Tag.SEARCH: str(split_unit(cfg.arm)[1])} if split_unit(cfg.arm)[1] else {}
    tags = {**tags, **ckpt_tags, **search, Tag.ARM: cfg.arm, Tag.OPTIMIZER: cfg.optimizer, Tag.FREEZE: cfg.strategy,
            Tag.SEED: str(cfg.seed), Tag.CONFIG_HASH: config_hash(cfg), Tag.DEVICE: str(device()),
            **{f"split.{name}": value for name, value in task.fingerprints().items()}}
    run = start_child_run(run_name, tags)
    start = time.perf_counter()
    log = MetricBuffer(run.info.run_id)  # metrics and final tags reach the store in one or few writes

    def on_epoch(epoch: int, metrics: dict[str, float]) -> None:
        log.log_metrics(metrics, step=epoch)
        if report is not None:
            report(epoch, metrics)  # pruning still decides after every epoch

    raised: BaseException | None = None
    try:  # from the moment the run exists: however it ends, it ends with its outcome
        if on_start is not None:
            on_start(run.info.run_id)
        log.log_params(cfg.flat())
        log.flush()  # params at once: a run whose worker is killed still says what it was training
        model = initial_model(cfg, task, weights)
        result = fit(model, task, cfg, on_epoch)
        log.log_metrics({"best_val_acc": result.best_val_acc, "best_epoch": result.best_epoch})
        if test:
            model.load_state_dict(result.best_state)
            ev = evaluate(model, task.test)
            log.log_metrics({"test_acc": ev.acc, "test_loss": ev.loss})
            matrix = confusion_matrix(task.test.y.cpu().numpy(), ev.predictions, labels=np.arange(len(task.classes)))
            mlflow.log_dict({"classes": task.classes, "matrix": matrix.tolist()}, "confusion.json")
            if on_test is not None:
                on_test(ev.acc, len(task.classes))
            if log_model:
                log.set_tags(_logged_model(model, task, run_name))
        return result.best_val_acc
    except BaseException as error:
        raised = error
        raise
    finally:
        outcome, reason = outcome_for(raised)
        log.log_metrics({"wall_seconds": time.perf_counter() - start})
        log.set_tags({Tag.OUTCOME: outcome.value, Tag.REASON: reason[:500]})
        try:
            log.flush()
        finally:
            mlflow.end_run(outcome.mlflow_status)


def starting_weights(cfg: TrialConfig, ctx: RunContext) -> tuple[str, dict[str, str]]:
    """What a run starts from (a cached source checkpoint's file for weights=source), and tags naming it."""
    if weights_kind(cfg.weights) != "source":
        return cfg.weights, {}
    ckpt = source_checkpoint(cfg, ctx.checkpoints)
    return str(ckpt.path), {Tag.CHECKPOINT: ckpt.key, Tag.CHECKPOINT_RUN_ID: ckpt.run_id}


def initial_model(cfg: TrialConfig, task: Task, weights: str) -> torch.nn.Module:
    seed_everything(cfg.seed)  # the new head's initialisation depends on the seed
    model = build_model(cfg.model, len(task.classes), weights, cfg.bn_frozen_eval, cfg.transfer_stages,
                        in_channels=task.pre.channels)
    return model.to(device())


def link_run(trial: optuna.Trial, run_id: str) -> None:
    """The trial's MLflow run, by id and as a link optuna-dashboard shows (a database tracking store's too, as
    `mlflow ui` serves it, on --ui-port)."""
    ui = browse(mlflow.get_tracking_uri())
    ui = ui if ui.url else Browse(f"http://127.0.0.1:{harness.browse.ui_port}", ui.command)
    trial.set_user_attr(Attr.MLFLOW_RUN_ID, run_id)
    trial.set_user_attr(Attr.MLFLOW_RUN_URL, ui.run(mlflow.active_run().info.experiment_id, run_id))


def run_name(arm: str, trial: int, seed: int | None = None, digits: tuple[int, int] = (1, 1)) -> str:
    """A child run's name, short enough for MLflow's run-name column (about 25 characters shown), with the
    parts that tell runs apart first: arm, trial, then the seed (sN a verdict seed, selN the N-th selection seed).
    Trial and seed numbers are padded to `digits` (the study's most trials, most seeds), so that MLflow's sort by
    name, which is by text, puts s2 before s10.

    >>> run_name("adam-unfrozen", 5), run_name("adam-unfrozen", 5, 3), run_name("sgd-frozen", 12, 1_000_002)
    ('adam-unfrozen #5', 'adam-unfrozen #5 s3', 'sgd-frozen #12 sel2')
    >>> run_name("adam-unfrozen", 5, 3, digits=(2, 2))
    'adam-unfrozen #05 s03'
    """
    number = f"{arm} #{trial:0{digits[0]}d}"
    if seed is None:
        return number
    if seed >= SELECTION_SEED_BASE:
        return f"{number} sel{seed - SELECTION_SEED_BASE + 1}"
    return f"{number} s{seed:0{digits[1]}d}"


def name_digits(spec: StudySpec) -> tuple[int, int]:
    """The digits of a study's largest trial number and verdict seed: its run names' padding."""
    return len(str(max(spec.n_trials - 1, 0))), len(str(spec.seeds_cap))


def trial_config(spec: StudySpec, arm: Arm, trial: optuna.Trial | optuna.trial.FixedTrial) -> TrialConfig:
    """The arm's config with the study's search space applied; a FixedTrial replays a finished trial."""
    return arm.config(spec.base, **spec.search_space(trial, spec.arm(arm.family)))


def make_objective(spec: StudySpec, arm: Arm, ctx: RunContext) -> Callable[[optuna.Trial], float]:
    def objective(trial: optuna.Trial) -> float:
        cfg = trial_config(spec, arm, trial)
        trial.set_user_attr(Attr.CONFIG_HASH, config_hash(cfg))
        judge, curve = PruningView(trial.study) if spec.prune else None, {}

        def report(epoch: int, metrics: dict[str, float]) -> None:
            curve[epoch] = metrics["val_acc"]
            if judge is not None and judge.should_prune(epoch, metrics["val_acc"]):
                raise optuna.TrialPruned(f"pruned at epoch {epoch}")

        tags = {Tag.PHASE: Phase.SEARCH.value, Tag.OPTUNA_STUDY: trial.study.study_name,
                Tag.OPTUNA_TRIAL: str(trial.number)}
        try:
            return tracked_run(cfg, ctx, run_name(arm.name, trial.number, digits=name_digits(spec)), tags, report,
                               on_start=lambda run_id: link_run(trial, run_id))
        finally:  # however it ended, before Optuna is told: the curve, in one write (an outage waited out, so a
            # run MLflow has as complete is never told to Optuna as cut off)
            retrying(lambda: write_curve(trial, curve), f"recording trial {trial.number}'s curve")

    return objective


def make_confirmation(spec: StudySpec, arm: Arm, ctx: RunContext, search_study: str) -> Callable[[optuna.Trial], float]:
    """A confirmation slot: retrain a search trial's configuration with a fresh seed. A verdict seed is then
    evaluated once on the test split; a selection seed chooses among configurations by validation alone and never
    sees the test split. Its MLflow run is tagged with the search trial it confirms."""

    def confirmation(trial: optuna.Trial) -> float:
        number, seed = trial.user_attrs[Attr.SEARCH_TRIAL], trial.user_attrs[Attr.SEED]
        cfg = confirmation_trial_config(spec, arm, trial)
        tags = {Tag.PHASE: Phase.CONFIRM.value, Tag.OPTUNA_STUDY: search_study, Tag.OPTUNA_TRIAL: str(number),
                Tag.CONFIRM_STUDY: trial.study.study_name, Tag.CONFIRM_TRIAL: str(trial.number)}
        name = run_name(arm.name, number, seed, name_digits(spec))
        if not is_verdict_seed(seed):  # its classes still judge whether it trained (chance is 1 / classes)
            trial.set_user_attr(Attr.CLASSES, len(ctx.task(cfg).classes))
            return tracked_run(cfg, ctx, name, tags, on_start=lambda run_id: link_run(trial, run_id))
        # the test accuracy in Optuna too: the sequential rule decides from the queue's own records
        return tracked_run(cfg, ctx, name, tags, test=True,
                           on_start=lambda run_id: link_run(trial, run_id), log_model=seed == MODEL_SEED,
                           on_test=lambda acc, classes: trial.set_user_attr(Attr.TEST, {"acc": acc,
                                                                                          "classes": classes}))

    return confirmation


def job_config(spec: StudySpec, job: Job) -> TrialConfig:
    """The configuration a claimed slot trains."""
    if job.kind is Phase.SEARCH:
        return trial_config(spec, job.arm, job.trial)
    return confirmation_trial_config(spec, job.arm, job.trial)


def runner(spec: StudySpec, job: Job, ctx: RunContext) -> Callable[[optuna.Trial], float]:
    """The objective that runs a claimed slot: a search trial, or a confirmation seed."""
    if job.kind is Phase.SEARCH:
        return make_objective(spec, job.arm, ctx)
    return make_confirmation(spec, job.arm, ctx, optuna_study_name(spec.name, job.arm.name))


def confirmation_trial_config(spec: StudySpec, arm: Arm, trial: optuna.trial.FrozenTrial | optuna.Trial) -> TrialConfig:
    """The configuration a confirmation slot trains: its search trial's parameters at its own seed (and, as
    the study says, its own train/val partition and source pretraining)."""
    params = trial.params if isinstance(trial, optuna.trial.FrozenTrial) else None
    source = optuna.trial.FixedTrial(params) if params is not None else trial
    return confirmation_config(spec, trial_config(spec, arm, source), trial.user_attrs[Attr.SEED])


MODEL_NAME = "model"  # the logged model's name in its run


def _logged_model(model: torch.nn.Module, task: Task, run_name: str) -> dict[str, str]:
    """Log the run's model; the tags that say so, or why not. A model that cannot be written (a layer that
    does not export, say) leaves the run's result standing: the verdict never depends on saving a file."""
    try:
        log_run_model(model, task)
        return {Tag.MODEL: MODEL_NAME}
    except Exception as error:
        if is_outage(error) or disk_full(error):  # the run is cut off and runs again, model and all
            raise
        print(f"warning: {run_name}'s model could not be logged ({type(error).__name__}: {error}); its result "
              "stands", file=sys.stderr, flush=True)
        return {Tag.MODEL_ERROR: f"{type(error).__name__}: {error}"[:500]}


def log_run_model(model: torch.nn.Module, task: Task) -> None:
    """Log `model` (its best-validation weights) the MLflow way on the active run: `mlflow.pytorch.log_model`,
    with an input example and its signature, so it shows under the run's Models and loads back with
    `mlflow.pytorch.load_model`. Written by the run that trained it, while it is open, as its last use of the
    model (moved to the CPU): nothing is kept on disk or trained again to publish it, and a run cut off while it
    writes is rerun, model and all."""
    from importlib.metadata import version

    import mlflow.pytorch
    from mlflow.models import infer_signature

    model.eval()
    x = next(task.test.batches(4))[0]
    with torch.no_grad():
        signature = infer_signature(x.cpu().numpy(), model(x).cpu().numpy())
    with internals.no_requirement_check():
        # no slow inference of requirements; no reload to serve the example (a second model load): the signature
        # comes from this model's own output, and the tests load logged models back
        mlflow.pytorch.log_model(model.cpu(), name=MODEL_NAME, signature=signature,
                                 input_example=x.cpu().numpy(), pip_requirements=[f"torch=={version('torch')}"],
                                 validate_serving_input=False)
