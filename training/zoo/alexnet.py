"""AlexNet (Krizhevsky, Sutskever & Hinton, 2012) scaled from 224x224x3 to 28x28x1.

What is kept: five stacked convolutions with ReLU (larger kernels first, 3x3 for the last three),
overlapping 3x3/2 max pooling after the first, second and fifth convolutions, and two wide fully
connected layers with dropout 0.5 before the classifier, which hold most of the weights, as in AlexNet.
What is scaled: the first convolution is 5x5 with stride 1 (11x11 stride 4 would leave almost nothing of
a 28x28 image), and the widths and dense layers are narrower (`widths`, `kernels`, `hidden`) so that the
ONNX file stays small and an epoch fits a 2-core CPU.

    (B,1,28,28) -conv5-> (B,w1,28,28) -pool3/2-> (B,w1,14,14) -conv-> (B,w2,14,14) -pool3/2-> (B,w2,7,7)
    -conv3-> w3 -conv3-> w4 -conv3-> (B,w5,7,7) -pool3/2-> (B,w5,3,3) -flatten-> (B,9*w5)
    -dropout-dense-> hidden -dropout-dense-> hidden -dense-> classes

`norm` picks what follows each convolution: "lrn" is AlexNet's local response normalisation (after the
first two convolutions, as in the paper), "batch" is BatchNorm after every convolution (not AlexNet's:
it converges in far fewer epochs, which a CPU budget needs), "none" is neither.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import nn

from training.zoo.layers import conv_bn_relu

NORMS = ("batch", "lrn", "none")


@dataclass(frozen=True)
class AlexNetConfig:
    family: ClassVar[str] = "cnn/alexnet"
    in_channels: int = 1
    num_classes: int = 10
    image_size: int = 28
    widths: tuple[int, int, int, int, int] = (64, 128, 192, 192, 128)
    kernels: tuple[int, int, int, int, int] = (5, 5, 3, 3, 3)
    hidden: int = 1024
    dropout: float = 0.5  # before each wide dense layer, as in AlexNet
    norm: str = "batch"  # batch | lrn | none

    def build(self) -> nn.Module:
        if self.norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {self.norm!r}")
        if len(self.widths) != 5 or len(self.kernels) != 5:
            raise ValueError("AlexNet has five convolutions: give five widths and five kernels")
        layers: list[nn.Module] = []
        c, size = self.in_channels, self.image_size
        for i, (width, k) in enumerate(zip(self.widths, self.kernels)):
            layers += self._conv(i, c, width, k)
            c = width
            if i in (0, 1, 4):  # overlapping pooling, 3x3 stride 2: 28 -> 14 -> 7 -> 3
                layers.append(nn.MaxPool2d(3, stride=2, padding=1 if size % 2 == 0 else 0))
                size = (size + (2 if size % 2 == 0 else 0) - 3) // 2 + 1
        layers += [
            nn.Flatten(),
            nn.Dropout(self.dropout), nn.Linear(c * size * size, self.hidden), nn.ReLU(inplace=True),
            nn.Dropout(self.dropout), nn.Linear(self.hidden, self.hidden), nn.ReLU(inplace=True),
            nn.Linear(self.hidden, self.num_classes),
        ]
        return nn.Sequential(*layers)

    def _conv(self, i: int, c_in: int, c_out: int, k: int) -> list[nn.Module]:
        """One convolution with 'same' padding, its ReLU, and the chosen normalisation."""
        if self.norm == "batch":
            return [conv_bn_relu(c_in, c_out, k)]
        layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, k, padding=k // 2), nn.ReLU(inplace=True)]
        if self.norm == "lrn" and i < 2:  # the paper's constants: n=5, alpha=1e-4, beta=0.75, k=2
            layers.append(nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0))
        return layers
