"""Export a module with several named inputs and outputs (a generator's z and label, an autoencoder's code and
image) to ONNX, and check every output against PyTorch.

`onnx_export.export` covers the classifiers' one-input, one-output graphs; this is its general form, with the
batch axis dynamic on every input and output. Parity is the largest |onnxruntime - torch| over all outputs;
there is no argmax to compare for images and codes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

from training.export.onnx_eval import run_graph  # noqa: F401  (re-exported: the runner is torch-free)
from training.export.onnx_export import ParityError, ParityReport, opset_of


class _Named(nn.Module):
    """Call `fn(*inputs)` and always return a tuple, so one-output graphs export like the rest."""

    def __init__(self, fn):
        super().__init__()
        self.fn = fn
        if isinstance(fn, nn.Module):
            self.inner = fn  # registered, so .eval() reaches its BatchNorm layers

    def forward(self, *inputs):
        out = self.fn(*inputs)
        return out if isinstance(out, tuple) else (out,)


def export_graph(fn, sample: dict[str, torch.Tensor], output_names: list[str], path: Path) -> int:
    """Write `fn` (a module, or a bound method of one, taking the inputs in `sample`'s order) to `path`: inputs
    and outputs named, the batch axis dynamic. The module must be in eval mode on the CPU. Returns the opset."""
    path.parent.mkdir(parents=True, exist_ok=True)
    batch = torch.export.Dim("batch", min=1, max=4096)
    program = torch.onnx.export(
        _Named(fn).eval(), tuple(sample.values()), input_names=list(sample), output_names=output_names,
        dynamic_shapes=(tuple({0: batch} for _ in sample),), dynamo=True, external_data=False,  # one *inputs
    )
    program.save(str(path), external_data=False)
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    return opset_of(path)


def check_graph_parity(fn, path: Path, inputs: dict[str, np.ndarray], *, opset: int,
                       atol: float = 1e-4) -> ParityReport:
    """Run PyTorch (`fn`, in eval mode) and onnxruntime on the same inputs; demand every output within atol."""
    with torch.no_grad():
        want = _Named(fn).eval()(*(torch.from_numpy(v) for v in inputs.values()))
    got = run_graph(path, inputs)
    diff = max(float(np.max(np.abs(g - w.numpy()))) for g, w in zip(got.values(), want))
    report = ParityReport("torch", diff, None, len(next(iter(inputs.values()))), opset, ort.__version__)
    if not diff <= atol:
        raise ParityError(f"{path}: max |ORT - torch| = {diff:.3g} over outputs {list(got)} (tolerance {atol})")
    return report
