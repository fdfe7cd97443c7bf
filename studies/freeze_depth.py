"""How transferable are the features of each layer? Yosinski et al. 2014 on the digits task.

LeNet-5 is pretrained on digits 0-4 (A) and transferred to digits 5-9 (B). For n = 0..4 transferred stages
(conv1, conv2, fc1, fc2; the head is always new):
- "AnB-n": the first n stages copied from the source net and frozen; the stages above re-initialised and trained;
- "AnB+-n": the first n stages copied, the rest re-initialised, and every layer fine-tuned;
- "baseline": the same net trained on B from random weights (n = 0 is the same thing reached through the
  transfer path, a check that the two paths agree).
Yosinski et al. found AnB falls as n grows (the top layers are specific to A) and AnB+ at or above the
baseline at every n. The report plots test accuracy against n (`x_axis`), with intervals, for each variant.

Any other model answers for its own stages: `--model resnet18 --weights imagenet --dataset folder:PATH` makes
one AnB and one AnB+ arm per depth 0..5 (stem, layer1-4), and the plan with them (`for_model`).

The optimizer is fixed and only its learning rate is searched: the question is about the transfer depth, not
the optimizer, and a one-dimensional search needs few trials. SGD with momentum 0.9, as Yosinski et al. used;
with momentum fixed, the lr sweeps the effective lr lr / (1 - momentum) that Li et al. 2020 found to be what
matters. Every arm gets the same Sobol sequence of lrs, so arms are compared at the same lrs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from harness.analysis_plan import Difference, Equivalent, NonInferior, Trend
from harness.spec import Arm, StudySpec, TrialConfig

if TYPE_CHECKING:
    import optuna

STAGES = 4  # lenet5's: conv1, conv2, fc1, fc2 (another model's are counted by `for_model`)
TRANSFER_REASON = ("1 point: transfer costs a source model's pretraining, which a practitioner would not pay for a "
                   "network a point worse than one trained from scratch")
CHECK_REASON = ("1 point, the AnB+ comparisons' margin: if two paths to the same network could differ by that much, "
                "a transfer effect of that size could be the path's doing")


def search_space(trial: optuna.Trial, arm: Arm) -> dict:
    """The learning rate over 2.5 decades around SGD's usual 0.01-0.1 for a small net at momentum 0.9."""
    overrides = {"lr": trial.suggest_float("lr", 1e-3, 0.3, log=True)}
    if arm.strategy == "freeze_k":
        # AnB freezes exactly the transferred stages. Set here rather than in Arm.fixed, so that the AnB arms
        # differ only in transfer_stages and the report draws them as one variant along n.
        overrides["freeze_k"] = arm.fixed["transfer_stages"]
    return overrides


def _falls_with_depth(frozen: tuple[str, ...]) -> tuple:
    """AnB along n: a trend over three depths or more; a model of two stages has one step to compare."""
    claim = "AnB falls as n grows: the top layers are specific to A (Yosinski et al. 2014)"
    if len(frozen) >= 3:
        return (Trend(frozen, "decreasing", claim=claim),)
    return (Difference(frozen[0], frozen[1], claim=claim),) if len(frozen) == 2 else ()


def depth_arms(stages: int) -> dict:
    """The arms and plan for a model of `stages` stages: the baseline, then AnB and AnB+ at each depth 0..stages."""
    return {
        "arms": (
            Arm("baseline", "sgd", "full", fixed={"weights": "none"}),
            *(Arm(f"AnB-{n}", "sgd", "freeze_k", fixed={"transfer_stages": n}) for n in range(stages + 1)),
            *(Arm(f"AnB+-{n}", "sgd", "full", fixed={"transfer_stages": n}) for n in range(stages + 1)),
        ),
        "plan": (
            *_falls_with_depth(tuple(f"AnB-{n}" for n in range(1, stages + 1))),
            *(NonInferior(f"AnB+-{n}", "baseline", margin=0.01, reason=TRANSFER_REASON,
                          claim="AnB+ >= baseline at every n: transfer plus fine-tuning generalises at least as well "
                          "(Yosinski et al. 2014)") for n in range(1, stages + 1)),
            # the built-in checks: with nothing transferred, both paths train the same network from random weights
            *(Equivalent(f"{arm}-0", "baseline", margin=0.01, reason=CHECK_REASON,
                         claim="built-in check: n = 0 is the baseline reached another way") for arm in ("AnB", "AnB+")),
        ),
    }


def for_model(model: str) -> dict:
    """Another model's arms and plan, from its stages (counted from its structure: no weights are needed)."""
    from harness.learn.models import stage_names  # PyTorch: imported only for a variant with another model

    return depth_arms(len(stage_names(model)))


STUDY = StudySpec(
    question="Do transferred layers help or hurt with depth, frozen (AnB) or fine-tuned (AnB+)? (Yosinski et al. 2014)",
    **depth_arms(STAGES),
    for_model=for_model,  # a variant with another model: its own stages' arms and plan
    search_space=search_space,
    base=TrialConfig(model="lenet5", weights="source", dataset="digits",
                     optimizer_params={"momentum": 0.9}, epochs=12),
    searches=1,  # one lr search per depth: the report's intervals are conditional on each depth's chosen lr
    n_trials=6,  # per arm: a one-dimensional lr search
    seeds=10,  # Yosinski's effects are a few points: intervals from 10 seeds can show them
    seed_step=5,  # then 5 more at a time for the arms of undecided comparisons, up to 20
    seed_cap=20,
    sampler="qmc",
    prune=False,  # the median pruner waits for 5 trials: with 6 it would judge one trial on little evidence
    x_axis="transfer_stages",
)
