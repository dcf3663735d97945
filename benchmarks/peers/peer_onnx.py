"""Peer side, shared by the MLServer runtime and the LitServe app: one onnxruntime session built with the
options zooserve resolved, and the V2 JSON tensor shapes both peers read and answer.

This file runs inside a peer's own virtualenv (onnxruntime and numpy at zooserve's versions, and the peer),
so it imports nothing from the project. The benchmark passes the options in ZOOSERVE_PEER_ORT as JSON:
{"intra_op_num_threads": 1, "inter_op_num_threads": 0, "graph_optimization_level": "ORT_ENABLE_ALL",
 "config": {"session.intra_op.allow_spinning": "0", ...}} (benchmarks/peers/targets.py, ort_options)."""

import json
import os

import numpy as np
import onnxruntime as ort

ORT_ENV = "ZOOSERVE_PEER_ORT"


def session_options() -> ort.SessionOptions:
    spec = json.loads(os.environ[ORT_ENV])
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = spec["intra_op_num_threads"]
    opts.inter_op_num_threads = spec["inter_op_num_threads"]
    opts.graph_optimization_level = getattr(ort.GraphOptimizationLevel, spec["graph_optimization_level"])
    for key, value in spec["config"].items():
        opts.add_session_config_entry(key, value)
    return opts


class Session:
    """One CPU session for one ONNX file with one input and one output (the image classifiers)."""

    def __init__(self, path: str):
        self.session = ort.InferenceSession(path, session_options(), providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name
        self.output = self.session.get_outputs()[0].name

    def run(self, x: np.ndarray) -> np.ndarray:
        """(B, 1, 28, 28) float32 -> (B, 10) logits."""
        return self.session.run([self.output], {self.input: x})[0]


def v2_input(body: dict) -> np.ndarray:
    """The first tensor of a parsed V2 infer body, as float32 in its declared shape."""
    spec = body["inputs"][0]
    return np.asarray(spec["data"], dtype=np.float32).reshape(spec["shape"])


def v2_output(model: str, name: str, y: np.ndarray) -> dict:
    """A V2 infer answer holding one FP32 tensor."""
    return {"model_name": model, "outputs": [{"name": name, "datatype": "FP32", "shape": list(y.shape),
                                              "data": y.ravel().tolist()}]}
