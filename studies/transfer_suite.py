"""Over transfer tasks like these, does Adam fine-tune a pretrained CNN better than SGD, frozen or fine-tuned?

The question of `sgd_vs_adam` asked on several workloads of the digits that ship with scikit-learn: each
workload is that study with other settings (its own Optuna studies, MLflow experiment and report), and the
first is `sgd_vs_adam` itself, so a checkout that ran it reuses its runs. Digits hold about 87 training images
per class after the validation and test splits, so the largest shot count is 80, not 100. The small ResNet is
ResNet-8 (He et al. 2016's CIFAR ResNet, one block a stage): ResNet-18 takes about a minute per pretraining seed on a
2-core CPU, and the suite is meant to run in under ten minutes there.
"""

from harness.suite_spec import SuiteSpec, Workload

SUITE = SuiteSpec(
    question="Over transfer tasks like these, does Adam fine-tune a pretrained CNN better than SGD, with its "
             "layers frozen or fine-tuned?",
    study="sgd_vs_adam",  # its arms, search space, budget, sequential seeds and declared comparisons
    workloads=(
        Workload("LeNet-5, digits 0-4 -> 5-9, 30 shots"),  # sgd_vs_adam as its file defines it
        Workload("LeNet-5, digits 0-4 -> 5-9, 10 shots", {"shots": 10}),
        Workload("LeNet-5, digits 0-4 -> 5-9, 80 shots", {"shots": 80}),
        Workload("LeNet-5, digits 5-9 -> 0-4, 30 shots", {"source_classes": (5, 6, 7, 8, 9),
                                                           "target_classes": (0, 1, 2, 3, 4)}),
        Workload("ResNet-8, digits 0-4 -> 5-9, 30 shots", {"model": "resnet8"}),  # He et al. 2016's CIFAR ResNet
    ),
    target_fraction=0.95,  # time to target: 95% of the best arm's mean best validation accuracy
)
