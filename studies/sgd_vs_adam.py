"""Does Adam fine-tune better than SGD? LeNet-5 pretrained on digits 0-4, transferred to digits 5-9.

Four arms, {SGD, Adam} x {frozen: only the new head trains; unfrozen: every layer fine-tunes}, each its own
Optuna study with the same budget and the same seeded quasi-random sampler.
"""

from harness.learn.spaces import default_space
from harness.spec import Arm, Expectation, StudySpec, TrialConfig


def search_space(trial, arm: Arm) -> dict:
    """The registry's default space for the arm's optimizer (harness.learn.spaces, the one source of truth): the lr
    over four or more decades around each optimizer's usual values, weight decay, and everything else that
    matters: momentum and Nesterov for SGD; beta1 and epsilon for Adam (Choi et al. 2019: a comparison that
    leaves epsilon at its default is biased against Adam)."""
    return default_space(trial, arm.optimizer)


STUDY = StudySpec(
    question="Does Adam fine-tune a pretrained CNN better than SGD, with its layers frozen or fine-tuned?",
    arms=(
        Arm("sgd-frozen", "sgd", "linear_probe"),
        Arm("adam-frozen", "adam", "linear_probe"),
        Arm("sgd-unfrozen", "sgd", "full"),
        Arm("adam-unfrozen", "adam", "full"),
    ),
    search_space=search_space,
    base=TrialConfig(model="lenet5", weights="source", dataset="digits", epochs=12),
    n_trials=20,
    seeds=5,
    sampler="qmc",
    comparisons=(("adam-frozen", "sgd-frozen"), ("adam-unfrozen", "sgd-unfrozen")),
    expected=(
        # every hyperparameter tuned, epsilon included: Adam should be no worse than SGD
        Expectation("Adam >= SGD, layers frozen, when every hyperparameter is tuned (Choi et al. 2019)",
                    "at_least", ("adam-frozen", "sgd-frozen")),
        Expectation("Adam >= SGD, layers fine-tuned, when every hyperparameter is tuned (Choi et al. 2019)",
                    "at_least", ("adam-unfrozen", "sgd-unfrozen")),
        *(Expectation(f"{opt}: fine-tuning every layer >= the head on fixed features (Kornblith et al. 2019)",
                      "at_least", (f"{opt}-unfrozen", f"{opt}-frozen")) for opt in ("sgd", "adam")),
    ),
)
