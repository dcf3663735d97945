"""The model zoo. Every architecture is a config dataclass with a `family` and a `build()` method.

`registry.ARCHITECTURES` maps a short name to its config class, so scripts never branch on model type.
"""

from training.zoo.registry import ARCHITECTURES, ModelConfig, build_config

__all__ = ["ARCHITECTURES", "ModelConfig", "build_config"]
