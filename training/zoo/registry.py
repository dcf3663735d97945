"""One interface for every architecture: a config dataclass that knows its family and builds its net."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Protocol

from torch import nn


class ModelConfig(Protocol):
    family: ClassVar[str]  # e.g. "cnn/resnet": goes into the model card

    def build(self) -> nn.Module: ...


def _architectures() -> dict[str, type]:
    from training.zoo.alexnet import AlexNetConfig
    from training.zoo.inception import InceptionConfig
    from training.zoo.lenet import LeNetConfig
    from training.zoo.mobilenet import MobileNetConfig
    from training.zoo.resnet import ResNetConfig
    from training.zoo.vgg import VGGConfig

    return {
        "lenet": LeNetConfig,
        "vgg": VGGConfig,
        "resnet": ResNetConfig,
        "mobilenet": MobileNetConfig,
        "inception": InceptionConfig,
        "alexnet": AlexNetConfig,
    }


ARCHITECTURES: dict[str, type] = _architectures()


def _tuples(value: Any) -> Any:
    """Lists (from JSON) back to the tuples the frozen config dataclasses use, at every depth."""
    return tuple(_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value


def build_config(arch: str, overrides: dict[str, Any] | None = None) -> ModelConfig:
    """Config for `arch` with `overrides` applied; unknown names or fields raise a clear error."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; choose from {sorted(ARCHITECTURES)}")
    cls = ARCHITECTURES[arch]
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = set(overrides or {}) - fields
    if unknown:
        raise ValueError(f"{arch} has no option(s) {sorted(unknown)}; it has {sorted(fields)}")
    # JSON round-trips turn tuples into lists; restore them so configs compare equal after a resume.
    fixed = {k: _tuples(v) for k, v in (overrides or {}).items()}
    return cls(**fixed)
