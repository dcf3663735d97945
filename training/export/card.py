"""Write a model's ONNX file and its card into a Triton-style repository: `<out>/<name>/<version>/`."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

from service.card import CARD_FILE, ModelCard
from training.export.onnx_export import file_digest


def next_version(repository: Path, name: str) -> int:
    """One more than the highest existing version (1 for a new model)."""
    versions = [int(p.name) for p in (repository / name).glob("*") if p.is_dir() and p.name.isdigit()]
    return max(versions, default=0) + 1


def write_card(model_dir: Path, fields: dict) -> ModelCard:
    """Validate `fields` against the card schema, add artifact facts, and write `model.json`."""
    onnx_path = model_dir / "model.onnx"
    card = ModelCard.model_validate({
        **fields,
        "artifact": file_digest(onnx_path),
        "created": datetime.now(timezone.utc).replace(microsecond=0).isoformat(),
    })
    (model_dir / CARD_FILE).write_text(json.dumps(card.model_dump(mode="json", by_alias=True, exclude_none=True), indent=2) + "\n")
    return card
