"""VGG-style net: stages of stacked 3x3 conv-BN-ReLU layers, each stage ending in 2x2 max pooling and
dropout, then a dense classifier.

    (B,1,28,28) -stage(32)-> (B,32,14,14) -stage(64)-> (B,64,7,7) -stage(128)-> (B,128,3,3)
    -flatten-> (B,1152) -dense-> hidden -dense-> classes
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import nn

from training.zoo.layers import conv_bn_relu


@dataclass(frozen=True)
class VGGConfig:
    family: ClassVar[str] = "cnn/vgg"
    in_channels: int = 1
    num_classes: int = 10
    image_size: int = 28
    widths: tuple[int, ...] = (32, 64, 128)
    convs_per_stage: int = 2
    groups: int = 1  # group convolution for every conv after a stage's first
    dropout: float = 0.25  # after each stage
    hidden: int = 256
    head_dropout: float = 0.5

    def build(self) -> nn.Module:
        layers: list[nn.Module] = []
        c, size = self.in_channels, self.image_size
        for width in self.widths:
            for i in range(self.convs_per_stage):
                layers.append(conv_bn_relu(c, width, 3, groups=self.groups if i > 0 else 1))
                c = width
            layers += [nn.MaxPool2d(2), nn.Dropout(self.dropout)]
            size //= 2
        layers += [
            nn.Flatten(),
            nn.Linear(c * size * size, self.hidden), nn.ReLU(inplace=True), nn.Dropout(self.head_dropout),
            nn.Linear(self.hidden, self.num_classes),
        ]
        return nn.Sequential(*layers)
