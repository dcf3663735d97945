"""The numpy MLP as an ONNX graph, built node by node from its weights with onnx.helper (no exporter: there
is no torch module to trace), and checked against the numpy forward pass.

    input (N, 1, 28, 28) -Flatten-> (N, 784) -Gemm(W_1, b_1)-> -Sigmoid-> ... -Gemm(W_L, b_L)-> logits (N, 10)

Gemm computes A @ B + C with B = W_l as stored, (n_{l-1}, n_l), so the weights go in unchanged.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from training.export.onnx_eval import run_onnx, session
from training.scratch_mlp.model import MLP

OPSET = 18


class ParityError(RuntimeError):
    """onnxruntime and the numpy forward pass disagree by more than the tolerance."""


def build_graph(mlp: MLP, input_shape: tuple[int, ...], *, input_name: str = "input", output_name: str = "logits",
                doc: str = "") -> onnx.ModelProto:
    """ONNX graph for `mlp` taking (N, *input_shape) float32 and giving (N, classes) logits."""
    if int(np.prod(input_shape)) != mlp.sizes[0]:
        raise ValueError(f"input shape {input_shape} has {int(np.prod(input_shape))} values; the MLP takes {mlp.sizes[0]}")
    nodes = [helper.make_node("Flatten", [input_name], ["a_0"], axis=1)]  # (N, n_0)
    inits = []
    last = len(mlp.weights)
    for l, (w, b) in enumerate(zip(mlp.weights, mlp.biases), start=1):
        inits += [numpy_helper.from_array(w.astype(np.float32), f"W_{l}"),  # (n_{l-1}, n_l)
                  numpy_helper.from_array(b.astype(np.float32), f"b_{l}")]  # (n_l,)
        z = output_name if l == last else f"z_{l}"
        nodes.append(helper.make_node("Gemm", [f"a_{l - 1}", f"W_{l}", f"b_{l}"], [z], name=f"dense_{l}"))
        if l < last:
            nodes.append(helper.make_node("Sigmoid", [z], [f"a_{l}"]))  # (N, n_l)
    graph = helper.make_graph(
        nodes, "mlp",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, ["batch", *input_shape])],
        [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, ["batch", mlp.sizes[-1]])],
        initializer=inits, doc_string=doc,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="zooserve")
    model.ir_version = 10
    return model


def export(mlp: MLP, path: Path, input_shape: tuple[int, ...], *, doc: str = "") -> Path:
    model = build_graph(mlp, input_shape, doc=doc)
    onnx.checker.check_model(model, full_check=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def check_parity(mlp: MLP, path: Path, inputs: np.ndarray, *, atol: float = 1e-4) -> dict:
    """Run numpy and onnxruntime on the same real inputs (N, 1, 28, 28); demand |diff| <= atol and equal argmax.
    Returns the card's `parity` section (reference "numpy")."""
    expected = mlp.logits(inputs.astype(np.float32))  # (N, classes)
    got = run_onnx(session(path), inputs.astype(np.float32))
    diff = float(np.max(np.abs(got - expected)))
    agree = float(np.mean(got.argmax(-1) == expected.argmax(-1)))
    if not diff <= atol or agree < 1.0:
        raise ParityError(f"{path}: max |ORT - numpy| = {diff:.3g} (tolerance {atol}), argmax agreement {agree:.4f}")
    return {"reference": "numpy", "max_abs_diff": diff, "argmax_agreement": agree, "inputs": len(inputs),
            "opset": OPSET, "onnxruntime": ort.__version__}
