"""Inception-style net (Szegedy et al.): modules of parallel branches concatenated along channels.

Branches of one module, all keeping H and W:
    1x1  |  1x1 -> 3x3  |  1x1 -> 1xn -> nx1 (a factorised nxn)  |  3x3 max pool -> 1x1
    (B,C,H,W) -> cat[(B,b1,H,W), (B,b3,H,W), (B,bn,H,W), (B,bp,H,W)] -> (B,b1+b3+bn+bp,H,W)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from training.zoo.layers import classifier_head, conv_bn_relu


class InceptionModule(nn.Module):
    def __init__(self, c_in: int, b1: int, b3: int, bn: int, bp: int, n: int):
        super().__init__()
        reduce3, reducen = max(8, b3 // 2), max(8, bn // 2)
        self.branch1 = conv_bn_relu(c_in, b1, 1)
        self.branch3 = nn.Sequential(conv_bn_relu(c_in, reduce3, 1), conv_bn_relu(reduce3, b3, 3))
        self.branchn = nn.Sequential(
            conv_bn_relu(c_in, reducen, 1), conv_bn_relu(reducen, bn, (1, n)), conv_bn_relu(bn, bn, (n, 1))
        )
        self.branchp = nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1), conv_bn_relu(c_in, bp, 1))
        self.out_channels = b1 + b3 + bn + bp

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch1(x), self.branch3(x), self.branchn(x), self.branchp(x)], dim=1)


@dataclass(frozen=True)
class InceptionConfig:
    family: ClassVar[str] = "cnn/inception"
    in_channels: int = 1
    num_classes: int = 10
    stem: int = 32
    # (b1, b3, bn, bp) branch widths per module; "pool" halves H and W with 2x2 max pooling.
    modules: tuple = ((16, 32, 16, 16), "pool", (32, 48, 32, 16), (32, 48, 32, 16), "pool", (48, 64, 48, 32))
    factorised_n: int = 5  # the n of the 1xn + nx1 branch
    dropout: float = 0.3

    def build(self) -> nn.Module:
        layers: list[nn.Module] = [conv_bn_relu(self.in_channels, self.stem, 3)]
        c = self.stem
        for spec in self.modules:
            if spec == "pool":
                layers.append(nn.MaxPool2d(2))
                continue
            module = InceptionModule(c, *spec, n=self.factorised_n)
            layers.append(module)
            c = module.out_channels
        layers.append(classifier_head(c, self.num_classes, self.dropout))
        return nn.Sequential(*layers)
