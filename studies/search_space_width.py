"""Does the SGD vs Adam ranking depend on how much of each is tuned? Choi et al. 2019 on the digits task.

LeNet-5 pretrained on digits 0-4, every layer fine-tuned on digits 5-9. Two search spaces per optimizer:
- narrow: the learning rate alone (each optimizer's range from harness.learn.spaces), SGD at momentum 0.9 and Adam
  at its default betas and epsilon, as many comparisons do;
- wide: every hyperparameter (harness.learn.spaces' default space: lr, weight decay, momentum and Nesterov for SGD;
  lr, weight decay, beta1 and epsilon for Adam) plus Adam's beta2.
Choi et al. found that with a wide enough space Adam is never worse than SGD with momentum, and that narrow
spaces can flip rankings. The same budget per arm: the wide arms search more dimensions with as many trials.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from harness.analysis_plan import Difference, Interaction, NonInferior
from harness.learn.spaces import default_space, lr_space
from harness.spec import Arm, StudySpec, TrialConfig

if TYPE_CHECKING:
    import optuna


def search_space(trial: optuna.Trial, arm: Arm) -> dict:
    if arm.name.endswith("narrow"):
        fixed = {"momentum": 0.9} if arm.optimizer == "sgd" else {}
        return lr_space(trial, arm.optimizer) | {"optimizer_params": fixed}
    space = default_space(trial, arm.optimizer)
    if arm.optimizer == "adam":  # Choi et al. tune beta2 as well
        space["optimizer_params"]["beta2"] = trial.suggest_float("beta2", 0.9, 0.9999)
    return space


STUDY = StudySpec(
    question="Does the SGD vs Adam ranking depend on how many hyperparameters are tuned? (Choi et al. 2019)",
    arms=tuple(Arm(f"{opt}-{width}", opt, "full") for width in ("narrow", "wide") for opt in ("sgd", "adam")),
    search_space=search_space,
    base=TrialConfig(model="lenet5", weights="source", dataset="digits", epochs=10),
    searches=1,  # the question is one search's width: its intervals are conditional on each arm's search
    n_trials=12,
    seeds=5,  # then 5 more at a time for the arms of undecided comparisons, up to 15
    seed_step=5,
    seed_cap=15,
    confirm_top=1,
    sampler="qmc",
    prune=False,  # pruning would judge wide and narrow spaces by their first epochs
    plan=(
        # the question itself: does Adam's lead over SGD change with the width of the search space?
        Interaction(("adam-narrow", "sgd-narrow"), ("adam-wide", "sgd-wide"),
                    claim="narrow spaces can flip rankings (Choi et al. 2019)"),
        NonInferior("adam-wide", "sgd-wide", margin=0.01,
                    claim="with every hyperparameter tuned, Adam >= SGD with momentum (Choi et al. 2019)",
                    reason=("1 point, as in sgd_vs_adam: about half the gap Wilson et al. 2017 reported in SGD's "
                            "favour (7.65 vs 9.60% test error, CIFAR-10), the loss that argued against adaptive "
                            "methods; Choi et al.'s 'never worse' must rule out a loss of that order")),
        Difference("adam-narrow", "sgd-narrow"),
        Difference("adam-wide", "sgd-wide"),
    ),
)
