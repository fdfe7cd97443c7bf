"""The registry's own small networks, for small grey images: LeNet-5 and a CIFAR-style ResNet-8."""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, conv1x1


class MaxPool2x2(nn.MaxPool2d):
    """`nn.MaxPool2d(2)`; where no gradient is needed (evaluation, a frozen stage) the same maxima come from two
    pairwise `torch.maximum`s: on a CPU max_pool2d also computes the indices backward needs, and LeNet-5's
    evaluation ran 2.5x slower for them (5.3 ms against 2.1 ms for 108 digits, one thread)."""

    same_in_training = True  # the same output in both modes: a frozen prefix that ends here is cached

    def __init__(self):
        super().__init__(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.requires_grad and torch.is_grad_enabled():
            return super().forward(x)
        x = x[..., : x.shape[-2] // 2 * 2, : x.shape[-1] // 2 * 2]  # floor mode: an odd last row or column is dropped
        x = torch.maximum(x[..., 0::2, :], x[..., 1::2, :])
        return torch.maximum(x[..., 0::2], x[..., 1::2])


class LeNet5(nn.Module):
    """LeNet-5 (LeCun et al. 1998) on 32x32 grey images; ReLU and max-pooling, as it is trained today.

    Each convolution pools before its ReLU: max and ReLU commute (both orders give the same outputs, and the same
    gradients, bit for bit: the test checks a run of steps), and the ReLU then sees a quarter of the values. One
    training step of the default study's source model: 6% faster."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv2d(1, 6, 5), MaxPool2x2(), nn.ReLU())
        self.conv2 = nn.Sequential(nn.Conv2d(6, 16, 5), MaxPool2x2(), nn.ReLU())
        self.fc1 = nn.Sequential(nn.Flatten(), nn.Linear(16 * 5 * 5, 120), nn.ReLU())
        self.fc2 = nn.Sequential(nn.Linear(120, 84), nn.ReLU())
        self.head = nn.Linear(84, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.fc2(self.fc1(self.conv2(self.conv1(x)))))


class ResNet8(nn.Module):
    """He et al. 2016's CIFAR ResNet with one basic block a stage (6n + 2 layers, n = 1): a 3x3 stem of 16
    channels, stages of 16, 32 and 64 (torchvision's BasicBlock), global pooling, the head. 78k parameters: a
    ResNet that trains in seconds on a CPU (ResNet-18 takes 2 s an epoch of 900 digits; this 0.5 s at 16 px)."""

    def __init__(self, num_classes: int = 10, widths: tuple[int, ...] = (16, 32, 64)):
        super().__init__()
        self.conv1 = nn.Conv2d(1, widths[0], 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        channels, blocks = widths[0], []
        for i, width in enumerate(widths):
            stride = 1 if i == 0 else 2
            down = None if stride == 1 and channels == width else \
                nn.Sequential(conv1x1(channels, width, stride), nn.BatchNorm2d(width))
            blocks.append(BasicBlock(channels, width, stride, down))
            channels = width
        self.layer1, self.layer2, self.layer3 = blocks
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))
