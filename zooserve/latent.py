"""Codes for generators and decoders, and their images as pixels: the rule both the service (`/sample`) and
the training side's reports follow, so that a seed names the same images everywhere.

A seed draws, with numpy's PCG64, the codes z (n, dim) from N(0, I) in float32 (`default_rng(seed)`) and, for a
conditional generator asked for no class, the classes (n,) uniformly over the card's labels (from a second
stream, `default_rng([seed, 1])`). Image i depends only on the seed and i: never on n (n=25 gives the first 25
of n=64 with the same seed) nor on what else runs in the same batch.
"""

from __future__ import annotations

import numpy as np

from zooserve.card import ImagePostprocess, Latent


def draw(latent: Latent, n: int, seed: int, *, classes: int | None = None, labels: int = 0) -> dict[str, np.ndarray]:
    """The graph inputs for n images from `seed`: {latent.input: z (n, dim) float32} and, for a conditional
    generator, {latent.condition: (n,) int64}: `classes` for all n, or drawn from the seed over `labels` classes."""
    if latent.prior != "normal":
        raise ValueError("this code has no prior to sample from (a plain autoencoder's codes come from its encoder)")
    inputs = {latent.input: np.random.default_rng(seed).standard_normal((n, latent.dim), dtype=np.float32)}
    if latent.condition is not None:
        if classes is None:
            picked = np.random.default_rng([seed, 1]).integers(0, labels, size=n)
        else:
            picked = np.full(n, classes)
        inputs[latent.condition] = picked.astype(np.int64)
    return inputs


def to_pixels(images: np.ndarray, post: ImagePostprocess) -> np.ndarray:
    """A graph's images (N, C, H, W) in post.range -> uint8 pixels (N, H, W) for one channel, else (N, H, W, C)."""
    lo, hi = post.range
    x = np.clip((images.astype(np.float32) - lo) / (hi - lo), 0.0, 1.0)
    x = np.rint(x * 255.0).astype(np.uint8)  # (N, C, H, W)
    return x[:, 0] if x.shape[1] == 1 else x.transpose(0, 2, 3, 1)
