"""The generative nets for 28x28 grey images: a conv autoencoder, a VAE, a linear autoencoder, and a
class-conditional DCGAN (generator and discriminator).

Downsampling is by stride-2 convolutions and upsampling by stride-2 transposed convolutions (which the seeds
explain as inserting zeros between the input's elements, then convolving):

    encoder: (B,1,28,28) -conv4/2/1-> (B,c,14,14) -conv4/2/1-> (B,2c,7,7) -flatten-> (B,2c*49) -dense-> (B,hidden)
    decoder: (B,d) -dense-> (B,2c*49) -> (B,2c,7,7) -convT4/2/1-> (B,c,14,14) -convT4/2/1-> (B,1,28,28) logits

The autoencoders' `forward` returns what their exported main graph outputs (a tuple: code, [log_var,] image),
and `decoder` is the second graph (code -> image), so export and serving read the same modules.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn


def conv_encoder(channels: int, hidden: int) -> nn.Sequential:
    """(B, 1, 28, 28) -> (B, hidden) features."""
    return nn.Sequential(
        nn.Conv2d(1, channels, 4, 2, 1), nn.ReLU(),  # (B, c, 14, 14)
        nn.Conv2d(channels, 2 * channels, 4, 2, 1), nn.ReLU(),  # (B, 2c, 7, 7)
        nn.Flatten(), nn.Linear(2 * channels * 49, hidden), nn.ReLU(),
    )


class ConvDecoder(nn.Module):
    """(B, d) code -> (B, 1, 28, 28) logits (`logits`) or images in [0, 1] (`forward`, sigmoid)."""

    def __init__(self, dim: int, channels: int):
        super().__init__()
        self.channels = channels
        self.dense = nn.Sequential(nn.Linear(dim, 2 * channels * 49), nn.ReLU())
        self.up = nn.Sequential(
            nn.ConvTranspose2d(2 * channels, channels, 4, 2, 1), nn.ReLU(),  # (B, c, 14, 14)
            nn.ConvTranspose2d(channels, 1, 4, 2, 1),  # (B, 1, 28, 28)
        )

    def logits(self, code: torch.Tensor) -> torch.Tensor:
        return self.up(self.dense(code).view(-1, 2 * self.channels, 7, 7))

    def forward(self, code: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logits(code))


class Autoencoder(nn.Module):
    """image (B,1,28,28) in [0,1] -> (code (B,d), reconstruction (B,1,28,28) in [0,1])."""

    def __init__(self, dim: int, channels: int, hidden: int):
        super().__init__()
        self.encoder = nn.Sequential(conv_encoder(channels, hidden), nn.Linear(hidden, dim))
        self.decoder = ConvDecoder(dim, channels)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        code = self.encoder(x)
        return code, self.decoder(code)


class VAE(nn.Module):
    """image -> (mean (B,d), log-variance (B,d), image decoded from the mean). Training samples z from
    q(z|x) = N(mean, exp(log_var)) by the reparameterisation z = mean + exp(log_var / 2) * eps."""

    def __init__(self, dim: int, channels: int, hidden: int):
        super().__init__()
        self.features = conv_encoder(channels, hidden)
        self.mean = nn.Linear(hidden, dim)
        self.log_var = nn.Linear(hidden, dim)
        self.decoder = ConvDecoder(dim, channels)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.features(x)
        return self.mean(h), self.log_var(h)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mean, log_var = self.encode(x)
        return mean, log_var, self.decoder(mean)


class LinearAutoencoder(nn.Module):
    """No nonlinearity: x (B,1,28,28) -> code = W_e x + b_e (B,k) -> W_d code + b_d. With squared error its
    optimum spans the same subspace as the top-k principal components (Baldi & Hornik, 1989)."""

    def __init__(self, dim: int, pixels: int = 784):
        super().__init__()
        self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(pixels, dim))
        self.decoder = nn.Linear(dim, pixels)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        code = self.encoder(x)
        return code, self.decoder(code).view_as(x)


@dataclass(frozen=True)
class AutoencoderConfig:
    family: ClassVar[str] = "autoencoder/conv"
    dim: int = 32  # code size
    channels: int = 32  # first conv's channels (the second has twice as many)
    hidden: int = 256  # dense features between the convs and the code

    def build(self) -> nn.Module:
        return Autoencoder(self.dim, self.channels, self.hidden)


@dataclass(frozen=True)
class VAEConfig(AutoencoderConfig):
    family: ClassVar[str] = "vae/conv"
    dim: int = 16

    def build(self) -> nn.Module:
        return VAE(self.dim, self.channels, self.hidden)


class Generator(nn.Module):
    """(z (B,d) float, label (B,) int64) -> image (B,1,28,28) in [-1,1] (tanh).

    [z, embed(label)] -dense-> (B,128*49) -BN,ReLU-> (B,128,7,7) -convT4/2/1,BN,ReLU-> (B,64,14,14)
    -convT4/2/1,tanh-> (B,1,28,28)."""

    def __init__(self, dim: int, classes: int, embed: int, channels: int):
        super().__init__()
        self.channels = channels
        self.embed = nn.Embedding(classes, embed)
        self.dense = nn.Sequential(nn.Linear(dim + embed, 2 * channels * 49, bias=False),
                                   nn.BatchNorm1d(2 * channels * 49), nn.ReLU())
        self.up = nn.Sequential(
            nn.ConvTranspose2d(2 * channels, channels, 4, 2, 1, bias=False), nn.BatchNorm2d(channels), nn.ReLU(),
            nn.ConvTranspose2d(channels, 1, 4, 2, 1), nn.Tanh(),
        )

    def forward(self, z: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        h = self.dense(torch.cat([z, self.embed(label)], dim=1))
        return self.up(h.view(-1, 2 * self.channels, 7, 7))


class Discriminator(nn.Module):
    """(image (B,1,28,28) in [-1,1], label (B,)) -> logit (B,) of "real". Conditional by projection
    (Miyato & Koyama, 2018): logit = w.h + embed(label).h, h the conv features."""

    def __init__(self, classes: int, channels: int):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, channels, 4, 2, 1), nn.LeakyReLU(0.2),  # (B, c, 14, 14)
            nn.Conv2d(channels, 2 * channels, 4, 2, 1, bias=False), nn.BatchNorm2d(2 * channels),
            nn.LeakyReLU(0.2),  # (B, 2c, 7, 7)
            nn.Flatten(),
        )
        self.out = nn.Linear(2 * channels * 49, 1)
        self.project = nn.Embedding(classes, 2 * channels * 49)

    def forward(self, x: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        h = self.features(x)  # (B, 2c*49)
        return self.out(h).squeeze(1) + (self.project(label) * h).sum(1)


@dataclass(frozen=True)
class DCGANConfig:
    family: ClassVar[str] = "gan/dcgan"
    dim: int = 64  # z size
    classes: int = 10
    embed: int = 16  # label embedding size in the generator
    channels: int = 64  # generator (B,2c,7,7) -> (B,c,14,14): c=64 gives 128x7x7 -> 64x14x14
    d_channels: int = 64  # discriminator's first conv (the second has twice as many)

    def build(self) -> tuple[Generator, Discriminator]:
        return Generator(self.dim, self.classes, self.embed, self.channels), Discriminator(self.classes, self.d_channels)


def init_dcgan(module: nn.Module) -> None:
    """DCGAN's initialisation (Radford et al., 2016): conv, dense and embedding weights N(0, 0.02), BatchNorm
    scales N(1, 0.02)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, 0.0, 0.02)
