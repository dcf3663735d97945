"""INT8 post-training quantization with onnxruntime.

Static (QDQ format, per-channel weights) for the CNNs: activations are calibrated on real training images,
so the scales reflect the data the model sees. Dynamic (int8 weights, activations quantized per call) for
the recurrent and Transformer models, whose activations have no fixed range to calibrate.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_dynamic, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process


class _Batches(CalibrationDataReader):
    def __init__(self, input_name: str, data: np.ndarray, batch_size: int = 64):
        self._it = iter({input_name: data[i:i + batch_size]} for i in range(0, len(data), batch_size))

    def get_next(self):
        return next(self._it, None)


def quantize_int8(src: Path, dst: Path, calibration: np.ndarray, input_name: str = "input") -> None:
    """Write an INT8 copy of `src` to `dst`, calibrated on `calibration` (N, C, H, W) float32."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        prepped = Path(tmp) / "prepped.onnx"
        # Shape inference and graph clean-up first, as onnxruntime's quantization guide recommends.
        quant_pre_process(str(src), str(prepped), skip_symbolic_shape=False)
        quantize_static(
            str(prepped), str(dst), _Batches(input_name, calibration.astype(np.float32)),
            quant_format=QuantFormat.QDQ, per_channel=True,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
        )


def quantize_dynamic_int8(src: Path, dst: Path) -> None:
    """Write a dynamically quantized copy of `src` to `dst` (int8 weights; no calibration data)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        # The dynamo exporter's recorded intermediate shapes trip onnx's re-inference inside quantize_dynamic
        # ("existing shape differs"); dropping them lets it infer them afresh.
        proto = onnx.load(str(src))
        del proto.graph.value_info[:]
        onnx.save(proto, f"{tmp}/model.onnx")
        quantize_dynamic(f"{tmp}/model.onnx", str(dst), weight_type=QuantType.QInt8)
