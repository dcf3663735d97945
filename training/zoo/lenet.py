"""LeNet-5 (LeCun et al., 1998) for 28x28 inputs, with the modern choice of ReLU and max pooling.

    (B,1,28,28) -conv5 pad2-> (B,6,28,28) -pool-> (B,6,14,14) -conv5-> (B,16,10,10) -pool-> (B,16,5,5)
    -flatten-> (B,400) -dense-> 120 -dense-> 84 -dense-> classes

The classic tanh/average-pool variant is one option away (`activation="tanh", pool="avg"`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import nn


@dataclass(frozen=True)
class LeNetConfig:
    family: ClassVar[str] = "cnn/lenet"
    in_channels: int = 1
    num_classes: int = 10
    activation: str = "relu"  # relu | tanh
    pool: str = "max"  # max | avg
    dropout: float = 0.0

    def build(self) -> nn.Module:
        act = {"relu": nn.ReLU, "tanh": nn.Tanh}[self.activation]
        pool = {"max": nn.MaxPool2d, "avg": nn.AvgPool2d}[self.pool]
        return nn.Sequential(
            nn.Conv2d(self.in_channels, 6, 5, padding=2), act(), pool(2),
            nn.Conv2d(6, 16, 5), act(), pool(2),
            nn.Flatten(),
            nn.Linear(16 * 5 * 5, 120), act(), nn.Dropout(self.dropout),
            nn.Linear(120, 84), act(), nn.Dropout(self.dropout),
            nn.Linear(84, self.num_classes),
        )
