"""A card's image preprocess as arithmetic: raw 0-255 pixels -> the graph's input. The one rule for the
service's image routes and the training side's reports (zooserve.latent.to_pixels is the way back)."""

from __future__ import annotations

import numpy as np

from zooserve.card import ImagePreprocess


def to_input(pixels: np.ndarray, pre: ImagePreprocess) -> np.ndarray:
    """Pixel values 0-255 (..., C, H, W) -> float32 (..., C, H, W): times `scale`, minus `mean`, over `std`,
    per channel."""
    x = np.asarray(pixels, dtype=np.float32) * pre.scale
    mean = np.asarray(pre.mean, np.float32)[:, None, None]
    std = np.asarray(pre.std, np.float32)[:, None, None]
    return ((x - mean) / std).astype(np.float32)
