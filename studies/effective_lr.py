"""At equal effective learning rate lr / (1 - momentum), do momentum 0 and 0.9 fine-tune alike? Li et al. 2020.

LeNet-5 pretrained on digits 0-4, every layer fine-tuned on digits 5-9 with SGD at momentum 0, 0.5, 0.9 and
0.99. Each arm searches the same range of *effective* learning rate (the Optuna parameter `effective_lr`); the
run's lr is effective_lr * (1 - momentum). Every arm gets the same Sobol sequence, so the arms are compared at
the same effective lrs. The report plots validation accuracy against effective lr per arm (the SGD figure and
the per-arm slices).

Li et al. found that at equal effective lr momentum 0 and 0.9 perform alike; the report checks each momentum
against momentum 0 within 2 points.
"""

from harness.spec import Arm, Expectation, StudySpec, TrialConfig

MOMENTA = (0.0, 0.5, 0.9, 0.99)
EFFECTIVE_LR = (3e-3, 1.0)  # around SGD's usual 0.01-0.1 at momentum 0.9, i.e. effective 0.1-1


def _name(momentum: float) -> str:
    return f"momentum-{momentum:g}"


def search_space(trial, arm: Arm) -> dict:
    momentum = arm.fixed["optimizer_params"]["momentum"]
    effective = trial.suggest_float("effective_lr", *EFFECTIVE_LR, log=True)
    return {"lr": effective * (1 - momentum)}


STUDY = StudySpec(
    question="At equal effective learning rate lr / (1 - momentum), does SGD fine-tune alike with momentum "
             "0, 0.5, 0.9 and 0.99? (Li et al. 2020)",
    arms=tuple(Arm(_name(m), "sgd", "full", fixed={"optimizer_params": {"momentum": m}}) for m in MOMENTA),
    search_space=search_space,
    base=TrialConfig(model="lenet5", weights="source", dataset="digits", epochs=10),
    n_trials=8,  # one searched dimension
    seeds=5,
    confirm_top=1,
    sampler="qmc",
    prune=False,  # momentum changes how fast a run starts: early epochs would mislead the pruner
    comparisons=tuple((_name(m), _name(0.0)) for m in MOMENTA[1:]),
    expected=(
        Expectation("at equal effective lr, momentum 0.5, 0.9 and 0.99 fine-tune alike momentum 0 (Li et al. 2020)",
                    "alike", tuple(_name(m) for m in (*MOMENTA[1:], 0.0)), margin=0.02),
    ),
)
