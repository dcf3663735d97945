"""MobileNet-style net (Howard et al., 2017): depthwise-separable convolutions with a width multiplier.

Each separable block is a 3x3 depthwise conv (groups = channels: one filter per channel) then a 1x1
pointwise conv that mixes channels, each followed by BN + ReLU. It costs 9*C + C*C' weights instead of
9*C*C' for a full 3x3 conv. The width multiplier alpha scales every channel count.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import nn

from training.zoo.layers import classifier_head, conv_bn_relu


def separable(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    return nn.Sequential(conv_bn_relu(c_in, c_in, 3, stride=stride, groups=c_in), conv_bn_relu(c_in, c_out, 1))


@dataclass(frozen=True)
class MobileNetConfig:
    family: ClassVar[str] = "cnn/mobilenet"
    in_channels: int = 1
    num_classes: int = 10
    width_multiplier: float = 1.0
    stem: int = 32
    # (output channels, stride) per separable block, before the width multiplier.
    blocks: tuple[tuple[int, int], ...] = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (256, 1))
    dropout: float = 0.2

    def scaled(self, c: int) -> int:
        return max(8, int(round(c * self.width_multiplier)))

    def build(self) -> nn.Module:
        c = self.scaled(self.stem)
        layers: list[nn.Module] = [conv_bn_relu(self.in_channels, c, 3)]
        for width, stride in self.blocks:
            layers.append(separable(c, self.scaled(width), stride))
            c = self.scaled(width)
        layers.append(classifier_head(c, self.num_classes, self.dropout))
        return nn.Sequential(*layers)
