"""Checkpoints: a state_dict plus the run's config as plain data, enough to resume a run exactly.

They are for resuming training, not for serving (artifacts are ONNX + JSON). They hold only tensors
and plain Python values, so `torch.load(weights_only=True)` reads them without unpickling code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch


def save(path: Path, **state: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)  # atomic: a crash mid-write never leaves a half checkpoint behind


def load(path: Path) -> dict[str, Any]:
    return torch.load(path, map_location="cpu", weights_only=True)


def rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
