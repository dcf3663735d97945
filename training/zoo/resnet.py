"""ResNet (He et al., 2016) for small images: a 3x3 stem, stages of basic residual blocks, global pooling.

A basic block computes relu(x + BN(conv3x3(relu(BN(conv3x3(x)))))). When a stage halves the resolution
or changes the width, the skip path is a strided 1x1 conv + BN so the shapes agree:

    x (B,C,H,W) --conv3x3/s--BN--ReLU--conv3x3--BN--(+)--ReLU--> (B,C',H/s,W/s)
        \\------------- 1x1/s conv + BN (if needed) ----/
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from training.zoo.layers import classifier_head, conv_bn_relu


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int, groups: int):
        super().__init__()
        self.conv1 = conv_bn_relu(c_in, c_out, 3, stride=stride, groups=groups)
        self.conv2 = nn.Sequential(nn.Conv2d(c_out, c_out, 3, padding=1, groups=groups, bias=False), nn.BatchNorm2d(c_out))
        self.skip: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.skip = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv2(self.conv1(x)) + self.skip(x))


@dataclass(frozen=True)
class ResNetConfig:
    family: ClassVar[str] = "cnn/resnet"
    in_channels: int = 1
    num_classes: int = 10
    widths: tuple[int, ...] = (32, 64, 128)  # one stage per width; stages after the first halve H and W
    blocks: tuple[int, ...] = (2, 2, 2)  # basic blocks per stage
    groups: int = 1  # group convolution inside the blocks (ResNeXt-style cardinality)
    dropout: float = 0.0

    def build(self) -> nn.Module:
        if len(self.widths) != len(self.blocks):
            raise ValueError("widths and blocks must have one entry per stage")
        layers: list[nn.Module] = [conv_bn_relu(self.in_channels, self.widths[0], 3)]
        c = self.widths[0]
        for stage, (width, n) in enumerate(zip(self.widths, self.blocks)):
            for i in range(n):
                stride = 2 if stage > 0 and i == 0 else 1
                layers.append(BasicBlock(c, width, stride, self.groups))
                c = width
        layers.append(classifier_head(c, self.num_classes, self.dropout))
        return nn.Sequential(*layers)
