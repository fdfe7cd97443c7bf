"""Kornblith et al. 2019 ("Do better ImageNet models transfer better?") asked the fine-tuning question over
many target datasets; this suite asks `sgd_vs_adam`'s question the same way: torchvision's ImageNet weights,
fine-tuned (or frozen) on several of their datasets, each workload a study of its own.

For users with internet and a GPU: the datasets and weights download on first use (into --data-root and
torch's cache), and on a GPU box `--workers auto` runs one worker per GPU. On a 2-core CPU it would take days.
Their Describable Textures (DTD) and the others torchvision lacks are not in the registry; `folder:PATH` takes
any dataset laid out as PATH/<class>/*.jpg.
"""

from harness.suite_spec import SuiteSpec, Workload


def imagenet(model: str, dataset: str, shots: int) -> dict:
    return {"model": model, "weights": "imagenet", "dataset": dataset, "shots": shots, "epochs": 12}


SUITE = SuiteSpec(
    question="Over Kornblith et al.'s target datasets, does Adam fine-tune an ImageNet-pretrained CNN better than "
             "SGD, with its layers frozen or fine-tuned?",
    study="sgd_vs_adam",  # its arms, search space, budget, sequential seeds and declared comparisons
    workloads=(
        Workload("ResNet-50, CIFAR-10, 100 shots", imagenet("resnet50", "cifar10", 100)),
        Workload("ResNet-50, CIFAR-100, 100 shots", imagenet("resnet50", "cifar100", 100)),
        Workload("ResNet-50, Flowers102, 10 shots", imagenet("resnet50", "flowers102", 10)),  # 20 a class to draw from
        Workload("ResNet-50, Oxford-IIIT Pets, 50 shots", imagenet("resnet50", "oxford_iiit_pet", 50)),
        Workload("ResNet-50, STL-10, 100 shots", imagenet("resnet50", "stl10", 100)),
        Workload("ResNet-18, CIFAR-10, 100 shots", imagenet("resnet18", "cifar10", 100)),
        Workload("VGG-16-BN, CIFAR-10, 100 shots", imagenet("vgg16_bn", "cifar10", 100)),
    ),
)
