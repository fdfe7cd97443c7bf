"""Plain descriptions of a study (`StudySpec`, its `Arm`s) and of one training run (`TrialConfig`).

Nothing here imports Optuna, MLflow or torch: a study file can be read and checked cheaply.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.analysis_plan import (
    DEFAULT_MARGIN,
    ENDPOINTS,
    SPENDING,
    Declared,
    Design,
    Difference,
    check_plan,
    with_margin,
)
from harness.naming import digest, variant_name  # noqa: F401 - digest: the one hash, imported from here

STUDIES_DIR = Path(__file__).resolve().parents[1] / "studies"


@dataclass(frozen=True)
class TrialConfig:
    """Every value that affects one training run's result. Logged flat as MLflow params."""

    # what the run is part of
    study: str = ""
    arm: str = ""
    # data: the target task, and the source task its pretrained model came from
    dataset: str = "digits"
    data_root: str = field(default_factory=lambda: os.environ.get("HARNESS_DATA_ROOT", "data"))  # digits need none
    source_dataset: str | None = None  # the source task's dataset (weights=source); None: the target's dataset
    source_classes: tuple[int, ...] | None = (0, 1, 2, 3, 4)  # Yosinski et al. 2014 class split
    target_classes: tuple[int, ...] | None = (5, 6, 7, 8, 9)
    shots: int | None = 30  # training images per target class; None keeps the whole training part
    val_fraction: float = 0.2  # of the target's non-test images
    test_fraction: float = 0.4  # of the target images, where the dataset has no official test split
    split_seed: int = 0  # fixed: every arm and seed sees the same split
    partition_seed: int = 0  # reshuffles train/val and the few-shot subset; the test split keeps split_seed
    augment: bool = False  # random crop (+ flip where the dataset allows it)
    # model and where its weights come from
    model: str = "lenet5"
    weights: str = "source"  # source | imagenet | none | path/to/checkpoint.pt: see `weights_kind`
    pretrain_epochs: int = 15  # for weights=source
    pretrain_seed: int = 0  # seed of the source pretraining (weights=source); part of the checkpoint's key
    transfer_stages: int | None = None  # keep only the first n pretrained stages (Yosinski's AnB); None: all
    # fine-tuning strategy
    strategy: str = "full"  # linear_probe | freeze_k | full | gradual | lp_ft
    freeze_k: int = 0  # stages frozen from the input side, for freeze_k
    lp_epochs: int = 0  # linear-probe epochs before full fine-tuning, for lp_ft
    stage_lr_decay: float = 1.0  # discriminative lrs: stage i from the top gets lr * decay**i
    bn_frozen_eval: bool = True  # BatchNorm in frozen stages keeps its running statistics
    # colour images for a model that takes one channel (LeNet-5): "keep" widens its first convolution to three
    # channels (the pretrained filters repeated and scaled 1/3, timm's adapt_input_conv), "grey" turns them grey
    colour: str = "keep"
    # optimisation
    optimizer: str = "sgd"
    lr: float = 0.01
    weight_decay: float = 0.0
    optimizer_params: Mapping[str, Any] = field(default_factory=dict)  # momentum, betas, eps...
    lr_schedule: str = "cosine"  # cosine | constant
    epochs: int = 12
    batch_size: int = 32
    seed: int = 0  # head init, data order, augmentation

    def flat(self) -> dict[str, Any]:
        """Params as MLflow shows them: optimizer_params become opt.<name>."""
        values = dataclasses.asdict(self)
        extra = values.pop("optimizer_params")
        values.update({f"opt.{k}": v for k, v in sorted(extra.items())})
        return values


def retarget(base: TrialConfig, dataset: str) -> TrialConfig:
    """`base` with another target dataset, as `--dataset` asks: the source task stays where the study put it.

    The study's class indices name its own dataset's classes, so on another dataset the target takes all of
    that dataset's classes (set target_classes afterwards to choose some), and a source that was the study's
    dataset stays it explicitly: `--dataset folder:PATH` on a digits study pretrains on digits 0-4 and
    fine-tunes on every class of the folder.

    >>> cfg = retarget(TrialConfig(dataset="digits"), "folder:/imgs")
    >>> cfg.dataset, cfg.source_dataset, cfg.source_classes, cfg.target_classes
    ('folder:/imgs', 'digits', (0, 1, 2, 3, 4), None)
    """
    if dataset == base.dataset:
        return base
    return dataclasses.replace(base, dataset=dataset, target_classes=None,
                               source_dataset=base.source_dataset or base.dataset)


WEIGHTS_KINDS = ("source", "imagenet", "none")  # any other value is a path to a checkpoint file


def weights_kind(weights: str) -> str:
    """What a `weights` value names: source | imagenet | none | path. The one place the kinds are told apart.

    >>> weights_kind("imagenet"), weights_kind("ckpt/lenet.pt")
    ('imagenet', 'path')
    """
    return weights if weights in WEIGHTS_KINDS else "path"


@dataclass(frozen=True)
class Arm:
    """One side of a comparison: its own Optuna study, with the same budget as every other arm."""

    name: str  # e.g. "adam-frozen"; the Optuna study is "<study>/<name>"
    optimizer: str
    strategy: str = "full"
    fixed: Mapping[str, Any] = field(default_factory=dict)  # other TrialConfig values for this arm
    search: int = 0  # j of the arm's search "<name>/search-j" (StudySpec.units); 0: the arm itself

    @property
    def family(self) -> str:
        """The arm a search belongs to: the name comparisons use."""
        return split_unit(self.name)[0]

    def config(self, base: TrialConfig, **overrides: Any) -> TrialConfig:
        return dataclasses.replace(
            base, arm=self.name, optimizer=self.optimizer, strategy=self.strategy, **{**self.fixed, **overrides}
        )


SEARCH_SEP = "/search-"


def split_unit(name: str) -> tuple[str, int]:
    """"adam/search-2" -> ("adam", 2); an arm's own name -> (name, 0)."""
    arm, sep, j = name.rpartition(SEARCH_SEP)
    return (arm, int(j)) if sep and j.isdigit() else (name, 0)


# What a confirmation seed can vary (Bouthillier et al. 2021: data splits and pretraining are among the largest
# sources of variance). "seed" always varies: the seed is the confirmation run's identity.
VARIANCE_SOURCES = {
    "seed": "head initialisation, data order and augmentation",
    "partition": "the train/val partition and few-shot subset",
    "pretrain": "the source pretraining (weights=source; a cached checkpoint per seed)",
}


BASE_SETTINGS = ("epochs", "model", "weights", "data_root", "shots", "source_classes", "target_classes")
# what a variant may change (the CLI's flags)
VARIANT_SETTINGS = ("n_trials", "seeds", "searches", "dataset", *BASE_SETTINGS)


@dataclass(frozen=True, kw_only=True)
class StudySpec:
    """A question, its arms, and how each arm is searched and confirmed. `name` is the study file's name
    (`load_study` sets it), and every run's `TrialConfig.study` is the name."""

    name: str = ""
    question: str
    arms: tuple[Arm, ...]
    search_space: Callable[..., dict[str, Any]]  # (optuna.Trial, Arm) -> TrialConfig overrides
    base: TrialConfig = TrialConfig()
    n_trials: int = 20  # per arm
    seeds: int = 5  # confirmation reruns of each arm's best configurations
    # the configuration an arm confirms: with confirm_top > 1, its best trials each rerun on `select_seeds`
    # selection seeds (validation only) and the best mean chosen; then the chosen one runs on the verdict seeds
    # 1..seeds, fresh, so the seeds that choose are never the seeds that judge (no winner's curse)
    confirm_top: int = 3
    select_seeds: int = 2
    # sequential confirmation (harness.inference.sequential): `seeds` verdict seeds first, then `seed_step` more
    # at a time for the arms of comparisons still undecided, up to `seed_cap`; step 0 is a fixed `seeds`
    seed_step: int = 0
    seed_cap: int | None = None
    spending: str = "obrien_fleming"  # how the error rate is spent over the looks: obrien_fleming | pocock
    sampler: str = "qmc"  # qmc | random (i.i.d. trials, fair comparison) | tpe (find the best config)
    searches: int = 1  # independent searches per arm, each choosing its own configuration (docs/statistics.md)
    endpoint: str = "all"  # every verdict run, failures scored (a diverged run at chance), or those that "trained"
    prune: bool = True
    # the declared analysis plan (harness.analysis_plan): the family of comparisons the report tests, and the margin
    # (a fraction: 0.02 = 2 points) of those that declare none. Without a plan every pair is a Difference.
    plan: tuple[Declared, ...] = ()
    margin: float = DEFAULT_MARGIN
    x_axis: str | None = None  # an Arm.fixed key to plot accuracy against (e.g. freeze_k)
    vary: tuple[str, ...] = ("seed", "partition", "pretrain")  # VARIANCE_SOURCES each confirmation seed varies
    chance_margin: float = 0.05  # a run whose validation accuracy is within this of 1/classes failed to train
    # what follows the model (its arms, plan, search space: one arm per stage to freeze, say): model name ->
    # StudySpec fields, called when a variant names another model (harness.learn.models.stage_names counts them)
    for_model: Callable[[str], Mapping[str, Any]] | None = field(default=None, repr=False, compare=False)
    # how it was made: the study file's text and the settings beyond it (recorded with every run)
    source: str = field(default="", repr=False, compare=False)
    file: str = field(default="", compare=False)  # the study file's name; differs from `name` for a variant
    changes: Mapping[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        _check_fields(self)
        if self.base.study != self.name:  # one home for the name: the runs' configs follow the study
            object.__setattr__(self, "base", dataclasses.replace(self.base, study=self.name))
        # the plan as declared (margins not yet filled in), so a reason without a margin of its own is seen
        check_plan(self.plan or self.family, tuple(a.name for a in self.arms))
        if self.spending not in SPENDING:
            raise ValueError(f"unknown spending {self.spending!r}; choose one of {', '.join(SPENDING)}")
        if self.endpoint not in ENDPOINTS:
            raise ValueError(f"unknown endpoint {self.endpoint!r}; choose one of {', '.join(ENDPOINTS)}")

    @property
    def design(self) -> Design:
        """The verdict seeds' looks: `seeds`, + `seed_step` each, up to `seed_cap` (never below `seeds`)."""
        return Design(self.seeds, self.seed_step, self.seed_cap, self.spending)

    @property
    def seeds_cap(self) -> int:
        """The most verdict seeds an arm can run."""
        return self.design.looks[-1]

    def settings(self) -> dict[str, Any]:
        """The study's budget and protocol, as its parent runs log them and its arms' Optuna studies hold them."""
        return {"n_trials": self.n_trials, "seeds": self.seeds, "seed_step": self.seed_step, "seed_cap": self.seeds_cap,
                "spending": self.spending, "confirm_top": self.confirm_top, "select_seeds": self.select_seeds,
                "sampler": self.sampler, "prune": self.prune, "searches": self.searches, "endpoint": self.endpoint}

    @property
    def family(self) -> tuple[Declared, ...]:
        """The declared family, margins filled in: `plan`, else every pair as a difference."""
        plan = self.plan
        if not plan:
            names = [a.name for a in self.arms]
            plan = tuple(Difference(a, b) for i, a in enumerate(names) for b in names[i + 1:])
        return tuple(with_margin(c, self.margin) for c in plan)

    def units(self) -> tuple[Arm, ...]:
        """What runs: each arm, or with `searches` > 1 each arm's searches "<arm>/search-1", ... (each its own
        Optuna studies, sampler scrambling and chosen configuration)."""
        if self.searches == 1:
            return self.arms
        return tuple(dataclasses.replace(a, name=f"{a.name}{SEARCH_SEP}{j}", search=j)
                     for a in self.arms for j in range(1, self.searches + 1))

    def arm(self, name: str) -> Arm:
        for arm in self.arms:
            if arm.name == name:
                return arm
        raise KeyError(f"unknown arm {name!r}; arms: {', '.join(a.name for a in self.arms)}")

    def variant(self, **changes: Any) -> StudySpec:
        """The study with other settings (`VARIANT_SETTINGS`; class lists may be "all"). Any that differ from
        the file's make another study, `<name>--<what differs>`: its own Optuna studies, MLflow experiment and
        report folder, so a variant never resumes, or overwrites, the study as its file defines it.

        >>> spec = StudySpec(name="s", question="?", arms=(Arm("a", "sgd"),), search_space=None)
        >>> spec.variant(epochs=6, seeds=3).name, spec.variant(epochs=12).name
        ('s--epochs-6--seeds-3', 's')
        """
        unknown = sorted(set(changes) - set(VARIANT_SETTINGS))
        if unknown:
            raise ValueError(f"a variant may change {', '.join(VARIANT_SETTINGS)}; not {', '.join(unknown)}")
        changes = {k: v for k, v in changes.items() if v is not None}
        base = retarget(self.base, changes["dataset"]) if "dataset" in changes else self.base
        base_changes = {k: _setting(changes[k]) for k in BASE_SETTINGS if k in changes}
        top = {k: changes[k] for k in ("n_trials", "seeds", "searches") if k in changes}
        # a number of seeds asked for is that number: a fixed design, not the file's first batch, and no cap
        fixed = {"seed_step": 0, "seed_cap": None} if "seeds" in top and top["seeds"] != self.seeds else {}
        made = dataclasses.replace(self, base=dataclasses.replace(base, **base_changes), **top, **fixed)
        if self.for_model is not None and made.base.model != self.base.model:
            made = dataclasses.replace(made, **_fields_for_model(self, made.base.model))
        differs = {k: v for k, v in top.items() if getattr(self, k) != v}
        differs.update({k: getattr(made.base, k) for k in ("dataset", *BASE_SETTINGS)
                        if k != "data_root" and getattr(made.base, k) != getattr(self.base, k)})
        recorded = {**self.changes, **changes}
        if not differs:
            return dataclasses.replace(self, changes=recorded)
        return dataclasses.replace(made, name=variant_name(self.name, differs), file=self.file or self.name,
                                   changes=recorded)


# what a study's `for_model` may not set: who the study is, and what a variant sets
NOT_FOR_MODEL = frozenset({"name", "base", "source", "file", "changes", "for_model", *VARIANT_SETTINGS})


def _fields_for_model(spec: StudySpec, model: str) -> dict[str, Any]:
    """`spec.for_model`'s fields for `model`, those it may set."""
    fields = dict(spec.for_model(model))
    wrong = sorted((set(fields) - {f.name for f in dataclasses.fields(StudySpec)}) | (set(fields) & NOT_FOR_MODEL))
    if wrong:
        raise ValueError(f"for_model returns {', '.join(wrong)}; it may set the StudySpec fields that follow the "
                         f"model (arms, plan, search_space...), not {', '.join(sorted(NOT_FOR_MODEL))}")
    return fields


COUNTS = {"n_trials": 1, "seeds": 1, "confirm_top": 1, "select_seeds": 1, "seed_step": 0, "searches": 1}  # field: least
LIMITS = {"n_trials": 10_000, "searches": 100,
          "seeds": 1_000, "seed_cap": 1_000, "confirm_top": 1_000, "select_seeds": 1_000,
          "seed_step": 1_000, "epochs": 10_000}  # beyond these a study hangs or runs out of memory, not finishes


def _check_fields(spec: StudySpec) -> None:
    """A study file's own values, checked as the command line checks its flags: before anything is written,
    with what would be valid."""
    if not isinstance(spec.arms, tuple | list) or not spec.arms:
        raise ValueError("arms must be a non-empty tuple of Arm(...)")
    if not all(isinstance(a, Arm) for a in spec.arms):
        raise TypeError(f"arms must be Arm(...) values, not {', '.join(sorted({type(a).__name__ for a in spec.arms}))}")
    names = [a.name for a in spec.arms]
    slashed = [n for n in names if "/" in n]
    if slashed:
        raise ValueError(f"arm names may not hold '/' (it separates an arm's searches): {', '.join(slashed)}")
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"arm names must differ; declared more than once: {', '.join(twice)}")
    for name, least in COUNTS.items():
        value = getattr(spec, name)
        if not isinstance(value, int) or isinstance(value, bool) or not least <= value <= LIMITS[name]:
            raise ValueError(f"{name} must be a whole number from {least} to {LIMITS[name]:,}; got {value!r}")
    cap = spec.seed_cap
    if cap is not None and (not isinstance(cap, int) or isinstance(cap, bool) or not 1 <= cap <= LIMITS["seed_cap"]):
        raise ValueError(f"seed_cap must be a whole number from 1 to {LIMITS['seed_cap']:,} (or None); got {cap!r}")
    if cap is not None and cap < spec.seeds:  # else a sequential study would silently run a fixed `seeds`
        raise ValueError(f"seed_cap must be at least seeds ({spec.seeds}) or None; got {cap}")
    if not isinstance(spec.base, TrialConfig):
        raise TypeError("base must be a TrialConfig(...)")


def _setting(value: Any) -> Any:
    """A variant's value as a TrialConfig holds it: "all" classes is None; JSON's lists are tuples."""
    return None if value == "all" else tuple(value) if isinstance(value, list) else value


SELECTION_SEED_BASE = 1_000_001  # selection seeds are 1_000_001.., verdict seeds 1..seeds: never the same
MODEL_SEED = 1  # the verdict seed whose run logs the chosen model: declared beforehand, not picked by a score


def selection_seeds(spec: StudySpec) -> list[int]:
    """The seeds that choose an arm's configuration among its `confirm_top` best trials; none with one."""
    return [SELECTION_SEED_BASE + i for i in range(spec.select_seeds)] if spec.confirm_top > 1 else []


def is_verdict_seed(seed: int) -> bool:
    return 0 < int(seed) < SELECTION_SEED_BASE


def confirmation_config(spec: StudySpec, cfg: TrialConfig, seed: int) -> TrialConfig:
    """The config of confirmation seed `seed` of `cfg`: the seed always, and the train/val partition and the
    source pretraining where `spec.vary` says so (pretraining only matters for weights=source)."""
    changes: dict[str, Any] = {"seed": seed}
    if "partition" in spec.vary:
        changes["partition_seed"] = seed
    if "pretrain" in spec.vary and weights_kind(cfg.weights) == "source":
        changes["pretrain_seed"] = seed
    return dataclasses.replace(cfg, **changes)
