"""INT8 post-training quantization with onnxruntime, in a format that gives the same answers on every x86-64 CPU.

Static (QDQ format) for the CNNs and the Transformer classifier: activations are calibrated on real training
examples, so the scales reflect the data the model sees, and are fixed (see `quantize_text_int8` for why that
matters). Dynamic (activations quantized per call, inside onnxruntime's LSTM operator) for the recurrent
LSTM. All use per-channel weights.

Why 7-bit weights (`reduce_range`): onnxruntime multiplies uint8 activations by int8 weights (U8S8). With
AVX2 but no VNNI (and AVX-512 without VNNI), it does so with VPMADDUBSW, which adds each pair of products
into a *saturating* int16: 2 * 255 * 127 = 64,770 does not fit in 32,767, so those CPUs clip sums that a VNNI
CPU (VPDPBUSD, 32-bit sums) keeps, and the same INT8 graph gave 0.9101 on one CPU and 0.9146 on the other.
With weights in [-64, 64], |a1 * w1 + a2 * w2| <= 2 * 255 * 64 = 32,640 always fits, so every kernel
computes the same exact integer sums. `saturation_report` checks this on the file itself, whatever CPU
runs it; the tests apply it to every shipped INT8 graph.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
import onnx
from onnx import numpy_helper
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_dynamic, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

WEIGHT_LIMIT = 64  # |int8 weight| <= 64: 2 * 255 * 64 = 32,640 <= 32,767, the int16 pair sum cannot saturate
INT16_MAX = 32767
FORMAT = "U8S8: uint8 activations, per-channel int8 weights in [-64, 64] (reduce_range)"
DYNAMIC_METHOD = ("onnxruntime dynamic quantization: per-channel int8 weights in [-64, 64] (reduce_range), uint8 "
                  "activations quantized per call")


class _Feeds(CalibrationDataReader):
    def __init__(self, feeds: Iterable[dict[str, np.ndarray]]):
        self._it = iter(feeds)

    def get_next(self):
        return next(self._it, None)


def quantize_int8(src: Path, dst: Path, calibration: np.ndarray, input_name: str = "input") -> None:
    """Write an INT8 copy of the image classifier `src` to `dst`, calibrated on `calibration` (N, C, H, W)
    float32, in batches of 64."""
    x = calibration.astype(np.float32)
    _quantize_static(src, dst, ({input_name: x[i:i + 64]} for i in range(0, len(x), 64)), symbolic_shapes=True)


def quantize_text_int8(src: Path, dst: Path, calibration: Iterable[dict[str, np.ndarray]]) -> None:
    """Write an INT8 copy of the text classifier `src` to `dst`, calibrated on `calibration`, batches of
    {"input_ids": (B, T), "attention_mask": (B, T)} int64.

    Static, not dynamic, quantization: fixed activation scales make a text's answer independent of the other
    texts in its batch, and of the CPU. A dynamic scale spans the whole batch, and comes from the tensor's
    largest value: a last-bit difference in a float kernel (LayerNorm, GELU and softmax round differently
    with AVX2 and AVX-512) moved it and so every quantized value, and the test accuracy moved by 0.1 points
    between an AVX-512 VNNI CPU and an emulated AVX2 one; with fixed scales a value changes only when it sits
    on a rounding boundary. The linear layers and the embedding are quantized; the attention products
    (activation x activation) stay float."""
    _quantize_static(src, dst, calibration, op_types=["MatMul", "Gemm", "Gather"], weights_only_matmuls=True,
                     symbolic_shapes=False)


def _quantize_static(src: Path, dst: Path, calibration: Iterable[dict[str, np.ndarray]], *,
                     op_types: list[str] | None = None, weights_only_matmuls: bool = False,
                     symbolic_shapes: bool) -> None:
    """Static QDQ quantization of `src` into `dst`. `weights_only_matmuls`: leave float the MatMuls of two
    activations."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        plain, prepped = Path(tmp) / "plain.onnx", Path(tmp) / "prepped.onnx"
        onnx.save(_without_value_info(src), str(plain))
        # Shape inference and graph clean-up first, as onnxruntime's quantization guide recommends.
        quant_pre_process(str(plain), str(prepped), skip_symbolic_shape=not symbolic_shapes)
        graph = onnx.load(str(prepped)).graph
        # The layer that writes the logits stays float: quantized, its output is clipped to the range seen in
        # calibration, so confident examples tie at the top of it (160 of 10,000 test images for LeNet) and
        # argmax and the served probabilities become arbitrary among the tied classes.
        outputs = {o.name for o in graph.output}
        exclude = [n.name for n in graph.node if outputs & set(n.output)]
        if weights_only_matmuls:
            weights = {t.name for t in graph.initializer}
            exclude += [n.name for n in graph.node if n.op_type == "MatMul" and not weights & set(n.input)]
        quantize_static(
            str(prepped), str(dst), _Feeds(calibration), quant_format=QuantFormat.QDQ, per_channel=True,
            reduce_range=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            op_types_to_quantize=op_types, nodes_to_exclude=exclude,
        )
    saturation_report(dst).require()


def _without_value_info(src: Path) -> onnx.ModelProto:
    """The graph without its recorded intermediate shapes: the dynamo exporter's trip onnx's re-inference
    inside the quantizers ("existing shape differs"); dropping them lets it infer them afresh."""
    proto = onnx.load(str(src))
    del proto.graph.value_info[:]
    return proto


def quantize_dynamic_int8(src: Path, dst: Path) -> None:
    """Write a dynamically quantized copy of `src` to `dst` (int8 weights; no calibration data)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        onnx.save(_without_value_info(src), f"{tmp}/model.onnx")
        quantize_dynamic(f"{tmp}/model.onnx", str(dst), weight_type=QuantType.QInt8, per_channel=True,
                         reduce_range=True)
    saturation_report(dst).require()


@dataclass(frozen=True)
class SaturationReport:
    """What in an INT8 graph could make a U8S8 kernel without VNNI saturate (empty lists: nothing can)."""

    weight_range: tuple[int, int]  # smallest and largest int8 weight in the graph ((0, 0): none)
    wide_weights: list[str]  # int8 weight tensors with a value beyond +-WEIGHT_LIMIT
    int8_activations: list[str]  # activations quantized to int8 (S8S8), whose kernels we make no claim for

    @property
    def worst_pair_sum(self) -> int:
        """The largest |a1 * w1 + a2 * w2| a uint8 activation pair can make with these weights."""
        return 2 * 255 * max(abs(v) for v in self.weight_range)

    @property
    def ok(self) -> bool:
        return not self.wide_weights and not self.int8_activations

    def require(self) -> None:
        if not self.ok:
            raise ValueError(f"INT8 graph can saturate without VNNI: weights beyond +-{WEIGHT_LIMIT} in "
                             f"{self.wide_weights[:5]}, int8 activations in {self.int8_activations[:5]}")


def saturation_report(path: Path) -> SaturationReport:
    """Check a quantized graph's integers, independently of the CPU: every int8 weight (an initializer feeding
    DequantizeLinear, MatMulInteger, ConvInteger, QLinear* or DynamicQuantizeLSTM) within [-64, 64], and
    every quantized activation uint8 (QuantizeLinear's zero point; DynamicQuantizeLinear is always uint8)."""
    graph = onnx.load(str(path)).graph
    inits = {t.name: t for t in graph.initializer}
    lo = hi = 0
    wide, s8_acts = [], []
    for node in graph.node:
        if node.op_type == "QuantizeLinear" and len(node.input) > 2 and node.input[2] in inits:
            if inits[node.input[2]].data_type == onnx.TensorProto.INT8:
                s8_acts.append(node.output[0])
        for name in node.input:
            t = inits.get(name)
            # Scalar and per-channel zero points are int8 too; weights are the tensors of 2+ dimensions.
            if t is None or t.data_type != onnx.TensorProto.INT8 or len(t.dims) < 2:
                continue
            w = numpy_helper.to_array(t)
            w_lo, w_hi = int(w.min()), int(w.max())
            lo, hi = min(lo, w_lo), max(hi, w_hi)
            if w_lo < -WEIGHT_LIMIT or w_hi > WEIGHT_LIMIT:
                wide.append(name)
    return SaturationReport((lo, hi), sorted(set(wide)), s8_acts)
