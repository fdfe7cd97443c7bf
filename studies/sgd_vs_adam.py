"""Does Adam fine-tune better than SGD? LeNet-5 pretrained on digits 0-4, transferred to digits 5-9.

Four arms, {SGD, Adam} x {frozen: only the new head trains; unfrozen: every layer fine-tunes}, each its own
Optuna study with the same budget and the same seeded quasi-random sampler.
"""

from harness.spec import Arm, StudySpec, TrialConfig


def search_space(trial, arm: Arm) -> dict:
    """Each optimizer's learning rate over four decades around its usual values, and everything else that
    matters tuned too: momentum and Nesterov for SGD; beta1 and epsilon for Adam (Choi et al. 2019: a
    comparison that leaves epsilon at its default is biased against Adam)."""
    if arm.optimizer == "sgd":
        lr = trial.suggest_float("lr", 1e-3, 1.0, log=True)
        params = {
            "momentum": trial.suggest_float("momentum", 0.0, 0.99),
            "nesterov": trial.suggest_categorical("nesterov", [False, True]),
        }
    else:
        lr = trial.suggest_float("lr", 1e-5, 1e-1, log=True)
        params = {
            "beta1": trial.suggest_float("beta1", 0.5, 0.99),
            "eps": trial.suggest_float("eps", 1e-10, 1e-1, log=True),
        }
    weight_decay = trial.suggest_float("weight_decay", 1e-6, 1e-2, log=True)
    return {"lr": lr, "weight_decay": weight_decay, "optimizer_params": params}


STUDY = StudySpec(
    name="sgd_vs_adam",
    question="Does Adam fine-tune a pretrained CNN better than SGD, with its layers frozen or fine-tuned?",
    arms=(
        Arm("sgd-frozen", "sgd", "linear_probe"),
        Arm("adam-frozen", "adam", "linear_probe"),
        Arm("sgd-unfrozen", "sgd", "full"),
        Arm("adam-unfrozen", "adam", "full"),
    ),
    search_space=search_space,
    base=TrialConfig(study="sgd_vs_adam", model="lenet5", weights="source", dataset="digits", epochs=12),
    n_trials=20,
    seeds=5,
    sampler="qmc",
    comparisons=(("adam-frozen", "sgd-frozen"), ("adam-unfrozen", "sgd-unfrozen")),
)
