"""Small building blocks shared by the CNNs."""

from __future__ import annotations

from torch import nn


def conv_bn_relu(c_in: int, c_out: int, k: int | tuple[int, int] = 3, stride: int = 1, groups: int = 1) -> nn.Sequential:
    """Conv (no bias: BatchNorm's shift replaces it) -> BatchNorm -> ReLU, 'same' padding for odd kernels.

    Parameters: k_h*k_w*(c_in/groups)*c_out for the conv, 2*c_out for the BatchNorm scale and shift.
    """
    kh, kw = (k, k) if isinstance(k, int) else k
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, (kh, kw), stride=stride, padding=(kh // 2, kw // 2), groups=groups, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


def classifier_head(c_in: int, num_classes: int, dropout: float) -> nn.Sequential:
    """Global average pool (B, C, H, W) -> (B, C), dropout, then a dense layer to the logits (B, classes)."""
    return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(c_in, num_classes))
