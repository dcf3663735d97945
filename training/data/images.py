"""Turn raw uint8 image arrays into normalised float tensors, and augment batches on the fly."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class Normalisation:
    """Per-channel mean and std of pixel values scaled to [0, 1], computed on the training split."""

    mean: tuple[float, ...]
    std: tuple[float, ...]

    @classmethod
    def fit(cls, images: np.ndarray) -> "Normalisation":
        # images: (N, H, W) or (N, C, H, W) uint8
        x = images.astype(np.float64) / 255.0
        axes = (0, 1, 2) if x.ndim == 3 else (0, 2, 3)
        mean, std = np.atleast_1d(x.mean(axis=axes)), np.atleast_1d(x.std(axis=axes))
        return cls(tuple(float(m) for m in mean), tuple(float(s) for s in std))

    def apply(self, images: np.ndarray) -> torch.Tensor:
        """uint8 (N, H, W) or (N, C, H, W) -> float32 (N, C, H, W), normalised."""
        x = torch.from_numpy(np.ascontiguousarray(images)).float().div_(255.0)
        if x.ndim == 3:
            x = x.unsqueeze(1)
        mean = torch.tensor(self.mean).view(1, -1, 1, 1)
        std = torch.tensor(self.std).view(1, -1, 1, 1)
        return (x - mean) / std


class RandomCropFlip:
    """Random crop after zero padding, plus an optional horizontal flip, applied per sample to a batch.

    Works on a whole batch (B, C, H, W) at once with gather-style indexing, so it costs far less than
    per-image transforms in a DataLoader worker. Padding uses the value of a black pixel after
    normalisation, so shifted-in borders look like the dataset's own background.
    """

    def __init__(self, pad: int = 2, flip: bool = True, fill: float = 0.0):
        self.pad, self.flip, self.fill = pad, flip, fill

    def __call__(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        b, c, h, w = x.shape
        p = self.pad
        if p > 0:
            padded = torch.nn.functional.pad(x, (p, p, p, p), value=self.fill)  # (B, C, H+2p, W+2p)
            dy = torch.randint(0, 2 * p + 1, (b,), generator=gen)
            dx = torch.randint(0, 2 * p + 1, (b,), generator=gen)
            rows = (dy[:, None] + torch.arange(h)[None, :])  # (B, H)
            cols = (dx[:, None] + torch.arange(w)[None, :])  # (B, W)
            bi = torch.arange(b)[:, None, None, None]
            ci = torch.arange(c)[None, :, None, None]
            x = padded[bi, ci, rows[:, None, :, None], cols[:, None, None, :]]  # (B, C, H, W)
        if self.flip:
            mask = torch.rand(b, generator=gen) < 0.5
            x = torch.where(mask[:, None, None, None], x.flip(-1), x)
        return x
