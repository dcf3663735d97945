"""Export a trained net to ONNX and prove the graph computes what the PyTorch module computes.

The exported graph has named inputs and outputs and a dynamic batch axis (-1 in the card), so the
service can batch requests. A failed parity check raises: a wrong graph must never reach `models/`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

# Re-exported: the graph runners live in a torch-free module (see onnx_eval).
from training.export.onnx_eval import run_onnx, session  # noqa: F401


class ParityError(RuntimeError):
    """onnxruntime and PyTorch disagree by more than the tolerance."""


@dataclass(frozen=True)
class ParityReport:
    reference: str
    max_abs_diff: float
    argmax_agreement: float | None  # None for graphs that output images or codes
    inputs: int
    opset: int
    onnxruntime: str


def export(model: nn.Module, sample: torch.Tensor, path: Path, *, input_name: str = "input",
           output_name: str = "logits") -> int:
    """Write `model` (eval mode, CPU) to `path` with a dynamic batch axis; return the opset used."""
    model = model.eval().cpu()
    path.parent.mkdir(parents=True, exist_ok=True)
    batch = torch.export.Dim("batch", min=1, max=4096)
    program = torch.onnx.export(
        model, (sample.cpu(),), input_names=[input_name], output_names=[output_name],
        dynamic_shapes=({0: batch},), dynamo=True, external_data=False,
    )
    program.save(str(path), external_data=False)
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    return opset_of(path)


def opset_of(graph: Path | onnx.ModelProto) -> int:
    """The default-domain opset a graph (a file, or one already loaded) imports."""
    proto = graph if isinstance(graph, onnx.ModelProto) else onnx.load(str(graph), load_external_data=False)
    return next(op.version for op in proto.opset_import if op.domain in ("", "ai.onnx"))


def check_parity(model: nn.Module, path: Path, inputs: torch.Tensor, *, opset: int, atol: float = 1e-4) -> ParityReport:
    """Run PyTorch and onnxruntime on the same real inputs (N, C, H, W); demand |diff| <= atol and equal argmax."""
    model = model.eval().cpu()
    with torch.no_grad():
        expected = model(inputs.cpu()).numpy()  # (N, classes)
    got = run_onnx(session(path), inputs.cpu().numpy())
    diff = float(np.max(np.abs(got - expected)))
    agree = float(np.mean(got.argmax(-1) == expected.argmax(-1)))
    report = ParityReport("torch", diff, agree, len(inputs), opset, ort.__version__)
    if not diff <= atol or agree < 1.0:
        raise ParityError(f"{path}: max |ORT - torch| = {diff:.3g} (tolerance {atol}), argmax agreement {agree:.4f}")
    return report


def file_digest(path: Path) -> dict:
    blob = path.read_bytes()
    return {"file": path.name, "bytes": len(blob), "sha256": hashlib.sha256(blob).hexdigest()}
