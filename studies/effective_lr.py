"""At equal effective learning rate lr / (1 - momentum), do momentum 0 and 0.9 fine-tune alike? Li et al. 2020.

LeNet-5 pretrained on digits 0-4, every layer fine-tuned on digits 5-9 with SGD at momentum 0, 0.5, 0.9 and
0.99. Each arm searches the same range of *effective* learning rate (the Optuna parameter `effective_lr`); the
run's lr is effective_lr * (1 - momentum). Every arm gets the same Sobol sequence, so the arms are compared at
the same effective lrs. The report plots validation accuracy against effective lr per arm (the SGD figure and
the per-arm slices).

Li et al. found that at equal effective lr momentum 0 and 0.9 perform alike; the report checks each momentum
against momentum 0 within 1 point (an equivalence test, TOST; the margin's reason is declared with it).

Momentum averages about 1 / (1 - momentum) steps (100 at 0.99), so a run needs several times that many updates
before momentum's effect is settled: 150 training images in batches of 8 for 12 epochs give 228 updates, more
than twice the horizon of 0.99. (Batches of 32 for 10 epochs gave 50, and momentum 0.99 "ran against Li et al."
for want of steps.) The report checks every momentum's updates against its horizon.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from harness.analysis_plan import Equivalent
from harness.spec import Arm, StudySpec, TrialConfig

if TYPE_CHECKING:
    import optuna

MOMENTA = (0.0, 0.5, 0.9, 0.99)
EFFECTIVE_LR = (3e-3, 1.0)  # around SGD's usual 0.01-0.1 at momentum 0.9, i.e. effective 0.1-1


def _name(momentum: float) -> str:
    return f"momentum-{momentum:g}"


def search_space(trial: optuna.Trial, arm: Arm) -> dict:
    momentum = arm.fixed["optimizer_params"]["momentum"]
    effective = trial.suggest_float("effective_lr", *EFFECTIVE_LR, log=True)
    return {"lr": effective * (1 - momentum)}


STUDY = StudySpec(
    question="At equal effective learning rate lr / (1 - momentum), does SGD fine-tune alike with momentum "
             "0, 0.5, 0.9 and 0.99? (Li et al. 2020)",
    arms=tuple(Arm(_name(m), "sgd", "full", fixed={"optimizer_params": {"momentum": m}}) for m in MOMENTA),
    search_space=search_space,
    base=TrialConfig(model="lenet5", weights="source", dataset="digits", epochs=12, batch_size=8),
    searches=1,  # one search per arm (one searched dimension): the report's intervals are conditional on it
    n_trials=8,  # one searched dimension
    seeds=5,  # then 5 more at a time while an equivalence is undecided, up to 15
    seed_step=5,
    seed_cap=15,
    confirm_top=1,
    sampler="qmc",
    prune=False,  # momentum changes how fast a run starts: early epochs would mislead the pruner
    plan=tuple(Equivalent(_name(m), _name(0.0), margin=0.01, claim="at equal effective lr, momentum fine-tunes alike "
                          "momentum 0 (Li et al. 2020)",
                          reason="1 point: Li et al.'s claim licenses tuning the effective lr alone and leaving "
                          "momentum out of the search; a momentum a point better would be worth searching for")
               for m in MOMENTA[1:]),
)
