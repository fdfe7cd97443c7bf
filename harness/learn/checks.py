"""What makes a `TrialConfig` valid, in one place: the registries' names, ranges, stage counts (`problems`,
cheap, run on every point of a search space by the dry run), and what must exist before a study writes anything:
the data, the weights file, torchvision's ImageNet weights (`check_config`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from harness.inference.stats import small_validation
from harness.learn.colour import dataset_in_colour
from harness.learn.datasets import check_data
from harness.learn.models import STRATEGIES, check_weights_file, model_spec, require_imagenet, stage_names
from harness.learn.optim import OPTIMIZERS, params_problem
from harness.learn.train import LR_SCHEDULES
from harness.learn.weights import WeightsUnavailable
from harness.spec import TrialConfig, weights_kind

COLOURS = ("keep", "grey")  # TrialConfig.colour: widen a 1-channel model's input for colour images, or turn them grey


def problems(cfg: TrialConfig) -> Iterator[tuple[str, str]]:
    """(field, what is wrong) for each invalid value of `cfg`."""
    choices: dict[str, Any] = {"strategy": STRATEGIES, "lr_schedule": LR_SCHEDULES, "optimizer": OPTIMIZERS,
                               "colour": COLOURS}
    for field, registry in choices.items():
        value = getattr(cfg, field)
        if value not in registry:
            yield field, f"unknown {field} {value!r}; choices: {', '.join(registry)}"
    if cfg.optimizer in OPTIMIZERS and (problem := params_problem(cfg.optimizer, cfg.optimizer_params)):
        yield "optimizer_params", problem
    positive: dict[str, Callable[[Any], bool]] = {
        "lr": lambda v: v > 0, "weight_decay": lambda v: v >= 0, "epochs": lambda v: v >= 1,
        "batch_size": lambda v: v >= 1, "stage_lr_decay": lambda v: v > 0, "val_fraction": lambda v: 0 < v < 1,
        "shots": lambda v: v is None or v >= 1, "pretrain_epochs": lambda v: v >= 1,
    }
    whole = ("epochs", "batch_size", "pretrain_epochs", "lp_epochs", "freeze_k", "shots")
    for field, ok in positive.items():
        value = getattr(cfg, field)
        if field in whole and value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            yield field, f"{field}={value!r} must be a whole number"
        elif not isinstance(value, (int, float)) and value is not None or isinstance(value, bool):
            yield field, f"{field}={value!r} must be a number"
        elif not ok(value):
            yield field, f"{field}={value!r} is out of range"
    if cfg.strategy == "lp_ft" and not 1 <= cfg.lp_epochs < cfg.epochs:
        yield "lp_epochs", (f"lp_ft needs 1 <= lp_epochs < epochs (linear probe, then fine-tuning), "
                            f"not lp_epochs={cfg.lp_epochs} with epochs={cfg.epochs}")
    depths = {k: v for k, v in (("freeze_k", cfg.freeze_k), ("transfer_stages", cfg.transfer_stages)) if v}
    if depths:
        try:
            model_spec(cfg.model)
        except ValueError as error:
            yield "model", str(error)
            return
        n_stages = len(stage_names(cfg.model))  # cached
        for field, value in depths.items():
            if not 0 <= value <= n_stages:
                yield field, f"{field}={value}, but {cfg.model} has stages 0..{n_stages}"


def colour_warning(cfg: TrialConfig) -> str | None:
    """Colour images turned grey for a model that takes one channel, because the study asked (colour="grey"):
    classes that differ by colour will look alike, so say so. By default (colour="keep") the model's first
    convolution is widened instead, and nothing is lost."""
    from harness.learn.models import preprocessing

    if cfg.colour != "grey" or preprocessing(cfg.model, cfg.weights).channels != 1:
        return None
    if not dataset_in_colour(cfg.dataset):
        return None
    return (f"the images of {cfg.dataset} are in colour, but colour='grey' turns them grey for {cfg.model}, "
            "which takes one channel: classes that differ by colour will look alike. Leave colour at 'keep' "
            "(the first convolution is widened to take colour) or use a model that takes colour")

def validation_warning(cfg: TrialConfig) -> str | None:
    """A validation split so small that accuracy moves in large steps: the search and the selection seeds rank
    trials by it, and cannot tell apart those closer than a step."""
    from harness.learn.data import split_indices
    from harness.learn.datasets import load_raw

    raw = load_raw(cfg.dataset, cfg.data_root)
    wanted, _, val, _ = split_indices(cfg, raw)
    problem = small_validation(len(val), len(wanted))
    return problem and f"{problem}. Add images, or raise val_fraction (now {cfg.val_fraction})"


def check_config(cfg: TrialConfig) -> None:
    """Fail before anything is written: the model, data and weights `cfg` names must exist and fit, with the
    valid choices named (its values are `problems`' to judge, at every point of the search space)."""
    model_spec(cfg.model)
    check_data(cfg)  # the dataset exists and has the classes the class split names
    kind = weights_kind(cfg.weights)
    if kind == "path":
        check_weights_file(cfg.weights, cfg.model)  # exists, loads without running code, fits the model
    if kind == "source" and cfg.source_classes is None and cfg.source_dataset is None:
        raise ValueError("weights=source needs source_classes")
    if kind == "imagenet":
        try:
            require_imagenet(cfg.model)  # offline: stop here, naming the file and the folder it belongs in
        except WeightsUnavailable as error:
            raise ValueError(str(error)) from error
