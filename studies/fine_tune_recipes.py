"""Which way of fine-tuning wins when each gets the same tuning budget? LeNet-5 pretrained on digits 0-4,
fine-tuned on digits 5-9.

Six recipes, each its own arm with the same budget, each searching its own learning rate (SGD with Nesterov
momentum 0.9, Kornblith et al. 2019's fine-tuning optimizer, lr over optim's SGD range) plus the knob the
recipe has:
- linear_probe: only the new head trains (fixed features);
- freeze_k: the first k stages frozen, k searched in 1..3 of LeNet-5's 4 stages (1..n-1 of another model's n);
- full: every layer fine-tunes;
- gradual: ULMFiT's gradual unfreezing, one more stage from the top each epoch (Howard & Ruder 2018);
- lp_ft: a linear probe for lp_epochs (searched, 1..3), then full fine-tuning (Kumar et al. 2022);
  it needs --epochs 4 or more, and the dry run says so otherwise;
- discriminative: full fine-tuning with stage i from the top at lr * stage_lr_decay**i, the decay searched
  (Howard & Ruder 2018).
Kornblith et al. found fine-tuning at least as good as fixed features; Kumar et al. found LP-FT at least as good
as full fine-tuning (most clearly out of distribution). The report checks both.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from harness.analysis_plan import Difference, NonInferior
from harness.learn.spaces import lr_space
from harness.spec import Arm, StudySpec, TrialConfig

if TYPE_CHECKING:
    import optuna

STAGES = 4  # lenet5's: conv1, conv2, fc1, fc2 (another model's are counted by `for_model`)


def search_space(trial: optuna.Trial, arm: Arm, stages: int = STAGES) -> dict:
    overrides = lr_space(trial, arm.optimizer)
    if arm.strategy == "freeze_k":
        overrides["freeze_k"] = trial.suggest_int("freeze_k", 1, stages - 1)
    if arm.strategy == "lp_ft":
        overrides["lp_epochs"] = trial.suggest_int("lp_epochs", 1, 3)
    if arm.name == "discriminative":
        overrides["stage_lr_decay"] = trial.suggest_float("stage_lr_decay", 0.1, 1.0, log=True)
    return overrides


def for_model(model: str) -> dict:
    """Another model: freeze_k searched over 1..n - 1 of its n stages (counted from its structure)."""
    from harness.learn.models import stage_names  # PyTorch: imported only for a variant with another model

    return {"search_space": functools.partial(search_space, stages=len(stage_names(model)))}


RECIPES = ("linear_probe", "freeze_k", "full", "gradual", "lp_ft")

STUDY = StudySpec(
    question="Which way of fine-tuning a pretrained CNN wins at the same tuning budget: linear probe, frozen "
             "stages, full, gradual unfreezing, LP-FT or discriminative learning rates?",
    arms=(*(Arm(recipe, "sgd", recipe) for recipe in RECIPES), Arm("discriminative", "sgd", "full")),
    search_space=search_space,
    for_model=for_model,  # a variant with another model: freeze_k over its own stages
    base=TrialConfig(model="lenet5", weights="source", dataset="digits", epochs=10,
                     optimizer_params={"momentum": 0.9, "nesterov": True}),
    searches=1,  # one search per arm: the report's intervals are conditional on each arm's chosen configuration
    n_trials=8,  # per arm: one or two searched dimensions
    seeds=5,  # then 5 more at a time for the arms of undecided comparisons, up to 15
    seed_step=5,
    seed_cap=15,
    confirm_top=1,  # six arms: rerunning the top 3 would triple the confirmation time
    sampler="qmc",
    prune=False,  # the median pruner would compare recipes that learn at different speeds epoch by epoch
    plan=(
        *(Difference(recipe, "full") for recipe in ("linear_probe", "freeze_k", "gradual", "lp_ft", "discriminative")),
        NonInferior("full", "linear_probe", margin=0.01,
                    claim="fine-tuning >= a linear probe on fixed features (Kornblith et al. 2019)",
                    reason=("1 point: a probe is the cheaper recipe (its features are computed once), so "
                            "fine-tuning that loses a point to it is the worse choice; a quarter of the 3.9 points "
                            "Kornblith et al. found fine-tuning ahead (97.5 vs 93.6, ResNet-50 on CIFAR-10)")),
        NonInferior("lp_ft", "full", margin=0.01, claim="LP-FT >= full fine-tuning (Kumar et al. 2022)",
                    reason=("1 point: LP-FT adds a probe stage and a hyperparameter (its epochs) to full "
                            "fine-tuning; a practitioner would not take on that extra stage at a loss of a point")),
    ),
)
