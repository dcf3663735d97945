"""Numeric helpers that training's evaluation and the server must compute identically (a card's figures are
checked against the server's answers)."""

from __future__ import annotations

import numpy as np


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Along the last axis, in float64."""
    z = logits.astype(np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def softmax(logits: np.ndarray) -> np.ndarray:
    """Along the last axis, in the logits' dtype."""
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def cumexp(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """z (R, V) float64 -> (its row maxima (R, 1), the rows' cumulative exp(z - max) (R, V))."""
    zmax = np.maximum.reduce(z, axis=-1, keepdims=True)
    return zmax, np.add.accumulate(np.exp(z - zmax), axis=-1)


def inverse_cdf(cdf: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Inverse CDF -> (R,) int64: per row of cdf (R, V), cumulative and unnormalised, the number of values
    <= u (R, 1) times the row's last value (float64 products), i.e. searchsorted(row, u * last, "right").
    Counted over the first V - 1 values, so that it stays below V even when rounding makes u * last = last.
    The service samples by this rule, and a language model's steps graph computes it in ONNX
    (training/export/lm_steps.py), so both give the same token for the same number."""
    return np.add.reduce(cdf[:, :-1] <= u * cdf[:, -1:], axis=-1)
