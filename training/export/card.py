"""Write a model's ONNX file and its card into a Triton-style repository: `<out>/<name>/<version>/`."""

from __future__ import annotations

import shutil
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import onnx
import torch

from zooserve.card import ModelCard, save_card
from training.export import isa_check
from training.export.onnx_export import file_digest, opset_of
from training.export.quantize import FORMAT, saturation_report


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
    save_card(model_dir, card)
    return card


def training_section(config: dict, result, model: torch.nn.Module, *, world_size: int, device: str) -> dict:
    """The card's `training` part for a net trained by `training.engine.trainer.fit`: the configs as run,
    what the run did, and the versions that produced the weights."""
    return {**{k: config[k] for k in ("arch", "model_config", "train_config", "optim_config")},
            "seed": config["train_config"]["seed"], "epochs_run": result.epochs_run, "best_epoch": result.best_epoch,
            "wall_time_s": round(result.wall_time_s, 1), "parameters": sum(p.numel() for p in model.parameters()),
            "world_size": world_size, "device": str(device), "torch": torch.__version__, "onnx": onnx.__version__}


def write_quantized_card(fields: dict, model_dir: Path, qdir: Path, *, style: str, method: str,
                         calibration_examples: int, metrics: list[dict], quantized: np.ndarray, reference: np.ndarray,
                         inputs: int, change: dict, isa_checks: list[dict] = ()) -> ModelCard:
    """The INT8 twin's card, written beside `qdir/model.onnx`: the float card with its own name and figures,
    parity against the float graph (`quantized` and `reference` are the two graphs' outputs on the same
    `inputs`; argmax over the last axis), and the quantization record with `change` (e.g. accuracy_change),
    the integer format and weight range (checked: `quantize.saturation_report`), and `isa_checks` (the test
    split on emulated CPUs, `isa_check.checks`). Each figure says which CPU level it was measured on.
    The float model's extra files (vocabulary, tokenizer) are copied beside it unchanged."""
    for extra in fields.get("extra_files", []):
        shutil.copyfile(model_dir / extra["file"], qdir / extra["file"])
    report = saturation_report(qdir / "model.onnx")  # the quantizers have already refused a graph that fails it
    here = isa_check.measured_on()
    return write_card(qdir, {
        **fields, "name": f"{fields['name']}-int8", "description": f"{fields['description']} (INT8, {style})",
        "metrics": [{**m, "measured_on": here} for m in metrics],
        "parity": {**fields["parity"], "reference": "onnx-fp32",
                   "max_abs_diff": float(np.abs(quantized - reference).max()),
                   "argmax_agreement": float((quantized.argmax(-1) == reference.argmax(-1)).mean()),
                   "inputs": inputs, "opset": opset_of(qdir / "model.onnx"), "onnxruntime": here["onnxruntime"]},
        "quantization": {"method": method, "calibration_examples": calibration_examples,
                         "source_model": f"{fields['name']}/{fields['version']}", **change,
                         "format": FORMAT, "weight_range": list(report.weight_range), "isa_checks": list(isa_checks)},
    })
