"""Fixtures for the serving tests, without torch.

* `make_repo`: writes a Triton-style model repository `<root>/<name>/<version>/model.onnx + model.json`
  of tiny ONNX graphs built with `onnx.helper` (FP32 [-1,1,28,28] -> Flatten -> MatMul -> Add -> [-1,10]),
  each with a card that validates against `zooserve.card.ModelCard` - or, on request, broken in one
  particular way (corrupt or missing graph, invalid card, card that disagrees with its graph, ...).
* `serve`: runs `create_app(Settings(...))` with its lifespan and an `httpx.AsyncClient` on
  `httpx.ASGITransport` in a fresh event loop, and awaits a test's `async def body(client, app)` there.

pytest-asyncio is not installed, so tests are plain functions that go through `asyncio.run`.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import json
import os
import shutil
import threading
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import numpy as np
import onnx
import onnxruntime as ort
import orjson
import pytest
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from service.app import create_app
from zooserve.card import ModelCard
from service.settings import Settings

OPSET = 17
IR_VERSION = 8  # onnxruntime 1.2x-1.3x accepts IR 3..11
CLASSES = 10
LABELS = [f"class-{i}" for i in range(CLASSES)]
MEAN, STD, SCALE = [0.5], [0.25], 1 / 255
SAFETY_TIMEOUT_S = 60.0  # a hung test fails instead of blocking the suite forever

KINDS = ("good", "fixed_batch", "corrupt", "missing_onnx", "bad_card_json", "invalid_card", "wrong_input_name",
         "wrong_datatype", "wrong_shape", "wrong_card_version", "runtime_error", "two_inputs", "two_outputs",
         "tampered")


# -- ONNX graphs ---------------------------------------------------------------------------------------

def onnx_model(nodes, inputs, outputs, initializers) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "zooserve-test", inputs, outputs, initializer=initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION,
                              producer_name="tests/service/conftest.py")
    onnx.checker.check_model(model)
    return model


def linear_graph(w: np.ndarray, b: np.ndarray, *, batch: int | str = "N", input_name: str = "input",
                 output_name: str = "logits") -> onnx.ModelProto:
    """input FP32 [batch,1,28,28] -> Flatten -> MatMul W (784,10) -> Add B (10,) -> logits [batch,10]."""
    x = helper.make_tensor_value_info(input_name, TensorProto.FLOAT, [batch, 1, 28, 28])
    y = helper.make_tensor_value_info(output_name, TensorProto.FLOAT, [batch, CLASSES])
    nodes = [helper.make_node("Flatten", [input_name], ["flat"], axis=1),
             helper.make_node("MatMul", ["flat", "W"], ["mm"]),
             helper.make_node("Add", ["mm", "B"], [output_name])]
    return onnx_model(nodes, [x], [y], [numpy_helper.from_array(w, "W"), numpy_helper.from_array(b, "B")])


def two_output_graph(w: np.ndarray, b: np.ndarray) -> onnx.ModelProto:
    """The linear classifier with a second output: "probabilities" = Softmax(logits)."""
    model = linear_graph(w, b)
    graph = model.graph
    graph.node.append(helper.make_node("Softmax", ["logits"], ["probabilities"], axis=-1))
    graph.output.append(helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", CLASSES]))
    onnx.checker.check_model(model)
    return model


def runtime_error_graph() -> onnx.ModelProto:
    """Loads and validates like a classifier, but every run fails: Gather with an index past the end."""
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 1, 28, 28])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", CLASSES])
    idx = numpy_helper.from_array(np.full(CLASSES, 10_000, dtype=np.int64), "idx")
    nodes = [helper.make_node("Flatten", ["input"], ["flat"], axis=1),
             helper.make_node("Gather", ["flat", "idx"], ["logits"], axis=1)]
    return onnx_model(nodes, [x], [y], [idx])


def two_input_graph() -> onnx.ModelProto:
    """a FP32 [N,10] + b FP32 [N,10] -> logits [N,10]."""
    a = helper.make_tensor_value_info("a", TensorProto.FLOAT, ["N", CLASSES])
    b = helper.make_tensor_value_info("b", TensorProto.FLOAT, ["N", CLASSES])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", CLASSES])
    return onnx_model([helper.make_node("Add", ["a", "b"], ["logits"])], [a, b], [y], [])


def weights(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return (rng.normal(0, 0.05, (28 * 28, CLASSES)).astype(np.float32),
            rng.normal(0, 0.1, CLASSES).astype(np.float32))


# -- model cards ---------------------------------------------------------------------------------------

def card_dict(name: str, version: int, blob: bytes, *, inputs: list[dict], outputs: list[dict],
              max_batch_size: int, max_delay_ms: float) -> dict:
    """A card with honest placeholders: this is a random-weight test model, trained on nothing."""
    return {
        "schema_version": 1,
        "name": name,
        "version": version,
        "task": "image-classification",
        "family": "test/linear",
        "description": "Random-weight linear classifier written by tests/service/conftest.py; not trained.",
        "inputs": inputs,
        "outputs": outputs,
        "preprocess": {"kind": "image", "height": 28, "width": 28, "channels": 1, "layout": "NCHW",
                       "scale": SCALE, "mean": MEAN, "std": STD},
        "labels": LABELS,
        "batching": {"max_batch_size": max_batch_size, "max_delay_ms": max_delay_ms},
        "metrics": [],
        "dataset": {"name": "none (random weights)", "sha256": {}, "official": False, "splits": {}, "split_seed": 0},
        # No parity check was run (inputs 0); the schema needs a reference, and the only graph there is is this one.
        "parity": {"reference": "onnx-fp32", "max_abs_diff": 0.0, "argmax_agreement": 1.0, "inputs": 0, "opset": OPSET,
                   "onnxruntime": ort.__version__},
        "quantization": None,
        "training": {"arch": "linear", "model_config": {}, "train_config": {}, "optim_config": {}, "seed": 0,
                     "epochs_run": 0, "best_epoch": 0, "wall_time_s": 0.0, "parameters": 28 * 28 * CLASSES + CLASSES,
                     "world_size": 1, "device": "cpu", "torch": "none", "onnx": onnx.__version__},
        "artifact": {"file": "model.onnx", "bytes": len(blob), "sha256": hashlib.sha256(blob).hexdigest()},
        "created": "2024-01-01T00:00:00Z",
    }


def image_io(batch: int = -1) -> tuple[list[dict], list[dict]]:
    return ([{"name": "input", "datatype": "FP32", "shape": [batch, 1, 28, 28]}],
            [{"name": "logits", "datatype": "FP32", "shape": [batch, CLASSES]}])


# -- the repository writer -----------------------------------------------------------------------------

class RepoWriter:
    """Writes model versions into `root`. Each version is staged in a hidden folder and renamed into place,
    so a polling server never sees half a version."""

    def __init__(self, root: Path):
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def path(self, name: str, version: int = 1) -> Path:
        return self.root / name / str(version)

    def add(self, name: str = "lin", version: int = 1, kind: str = "good", *, seed: int | None = None,
            max_batch_size: int = 8, max_delay_ms: float = 2.0) -> RepoWriter:
        if kind not in KINDS:
            raise ValueError(f"unknown kind {kind!r}; one of {KINDS}")
        seed = version if seed is None else seed
        inputs, outputs = image_io(1 if kind == "fixed_batch" else -1)
        if kind == "two_inputs":
            model = two_input_graph()
            inputs = [{"name": n, "datatype": "FP32", "shape": [-1, CLASSES]} for n in ("a", "b")]
        elif kind == "runtime_error":
            model = runtime_error_graph()
        elif kind == "two_outputs":
            model = two_output_graph(*weights(seed))
            outputs = outputs + [{**outputs[0], "name": "probabilities"}]
        else:
            model = linear_graph(*weights(seed), batch=1 if kind == "fixed_batch" else "N")
        blob = b"\x00not an onnx model\xff" * 64 if kind == "corrupt" else model.SerializeToString()
        if kind == "wrong_input_name":
            inputs = [{**inputs[0], "name": "image"}]
        elif kind == "wrong_datatype":
            inputs = [{**inputs[0], "datatype": "INT64"}]
        elif kind == "wrong_shape":
            inputs = [{**inputs[0], "shape": [-1, 1, 32, 32]}]
        card = card_dict(name, version, blob, inputs=inputs, outputs=outputs, max_batch_size=max_batch_size,
                         max_delay_ms=max_delay_ms)
        if kind == "wrong_card_version":
            card["version"] = version + 100
        ModelCard.model_validate(card)  # every card written here is schema-valid unless broken on purpose
        if kind == "tampered":  # flip bytes inside the weights after the card recorded the checksum
            pos = blob.find(numpy_helper.from_array(weights(seed)[0], "W").raw_data[:64])
            assert pos > 0
            blob = blob[:pos] + bytes(255 - c for c in blob[pos:pos + 64]) + blob[pos + 64:]
        card_text = json.dumps(card, indent=2)
        if kind == "bad_card_json":
            card_text = card_text[: len(card_text) // 2]  # truncated: not JSON any more
        elif kind == "invalid_card":
            card_text = json.dumps({**card, "labels": LABELS[:3]})  # JSON, but 3 labels for 10 classes
        return self.write(name, version, {"model.json": card_text.encode(),
                                          **({} if kind == "missing_onnx" else {"model.onnx": blob})})

    def write(self, name: str, version: int, files: dict[str, bytes]) -> RepoWriter:
        """Put a version folder of these files in place at once (staged, then renamed)."""
        stage = self.root / name / f".staging-{version}"
        if stage.exists():
            shutil.rmtree(stage)
        stage.mkdir(parents=True)
        for file, blob in files.items():
            (stage / file).write_bytes(blob)
        final = self.path(name, version)
        if final.exists():
            shutil.rmtree(final)
        os.replace(stage, final)
        return self

    def session(self, name: str, version: int = 1) -> ort.InferenceSession:
        return ort.InferenceSession(str(self.path(name, version) / "model.onnx"), providers=["CPUExecutionProvider"])

    def reference(self, name: str, version: int, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """onnxruntime run directly on the file, for comparing with what the server returned."""
        sess = self.session(name, version)
        names = [o.name for o in sess.get_outputs()]
        return dict(zip(names, sess.run(names, feeds)))


@pytest.fixture
def make_repo(tmp_path):
    """Factory: `make_repo(("lin", 1), ("lin", 2), ("bad", 1, "corrupt"), ...)` -> a RepoWriter whose `.root`
    is a fresh repository; `.add(name, version, kind, ...)` writes more versions (also while serving)."""
    count = 0

    def make(*models) -> RepoWriter:
        nonlocal count
        count += 1
        writer = RepoWriter(tmp_path / f"repo{count}")
        for m in models:
            if isinstance(m, dict):
                writer.add(**m)
            else:
                writer.add(*m)
        return writer

    return make


@pytest.fixture
def isolated_settings(monkeypatch):
    """Settings come only from what a test passes: no ZOOSERVE_* variables, no multi-process metrics."""
    for key in list(os.environ):
        if key.startswith("ZOOSERVE_"):
            monkeypatch.delenv(key)
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)


# -- the in-process server -----------------------------------------------------------------------------

ADMIN_KEY = "test-admin-key"  # repository control is on in these tests; the client sends this key


def settings_for(root: Path, **overrides) -> Settings:
    values = {"repository": root, "log_level": "error", "intra_op_threads": 1, "inter_op_threads": 1,
              "repository_control": True, "admin_key": ADMIN_KEY, **overrides}
    return Settings(_env_file=None, **values)


@asynccontextmanager
async def serving(root: Path, *, available_providers: list[str] | None = None, **overrides):
    """A started app (lifespan entered) and a client for it; the lifespan exits on the way out."""
    app = create_app(settings_for(root, **overrides), available_providers=available_providers)
    async with app.router.lifespan_context(app):
        # raise_app_exceptions=False: an unhandled server error comes back as the 500 a real client sees.
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test", timeout=30,
                                     headers={"X-Admin-Key": ADMIN_KEY}) as client:
            yield client, app


def run(coro_fn, timeout: float = SAFETY_TIMEOUT_S):
    """asyncio.run with a safety timeout: `run(lambda: some_async_fn(...))`."""
    async def main():
        return await asyncio.wait_for(coro_fn(), timeout)
    return asyncio.run(main())


@pytest.fixture
def serve(isolated_settings):
    """`serve(root, body, **settings)`: await `body(client, app)` against a started app; returns its result.
    Settings keywords go to `Settings`; `available_providers=[...]` goes to `create_app`."""

    def go(root: Path, body, *, available_providers: list[str] | None = None, **overrides):
        async def main():
            async with serving(root, available_providers=available_providers, **overrides) as (client, app):
                return await body(client, app)
        return run(main)

    return go


# -- request helpers -----------------------------------------------------------------------------------

def images(n: int, seed: int = 0) -> np.ndarray:
    """(n, 1, 28, 28) FP32 inputs, roughly standardised."""
    return np.random.default_rng(seed).normal(0, 1, (n, 1, 28, 28)).astype(np.float32)


def infer_json(x: np.ndarray, name: str = "input", **extra) -> dict:
    datatype = "INT64" if np.issubdtype(x.dtype, np.integer) else "FP32"
    return {"inputs": [{"name": name, "shape": list(x.shape), "datatype": datatype, "data": x.ravel().tolist()}],
            **extra}


def binary_body(tensors: list[tuple[str, str, np.ndarray]], **header_extra) -> tuple[bytes, int]:
    """Triton's binary tensor extension by hand: JSON header, then each tensor's raw little-endian bytes."""
    specs, blobs = [], []
    for name, datatype, arr in tensors:
        raw = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<")).tobytes()
        specs.append({"name": name, "shape": list(arr.shape), "datatype": datatype,
                      "parameters": {"binary_data_size": len(raw)}})
        blobs.append(raw)
    head = orjson.dumps({"inputs": specs, **header_extra})
    return head + b"".join(blobs), len(head)


def decode_binary_response(body: bytes, header_length: int) -> tuple[dict, dict[str, np.ndarray]]:
    """Split a binary-extension response into its JSON header and the named arrays (JSON or binary)."""
    from service.runtime.engine.session import V2_TO_NUMPY

    head = orjson.loads(body[:header_length])
    offset, arrays = header_length, {}
    for out in head["outputs"]:
        dtype = np.dtype(V2_TO_NUMPY[out["datatype"]]).newbyteorder("<")
        size = (out.get("parameters") or {}).get("binary_data_size")
        if size is None:
            arrays[out["name"]] = np.asarray(out["data"], dtype=dtype).reshape(out["shape"])
        else:
            arrays[out["name"]] = np.frombuffer(body[offset:offset + size], dtype=dtype).reshape(out["shape"])
            offset += size
    assert offset == len(body), "bytes left over after the last binary output"
    return head, arrays


def png_bytes(pixels: np.ndarray, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format=fmt)
    return buf.getvalue()


def b64(blob: bytes) -> str:
    return base64.b64encode(blob).decode()


def preprocess_like_card(img: Image.Image) -> np.ndarray:
    """What the card's preprocess says, done independently of service.runtime.tasks.classifiers: (1, 28, 28)."""
    img = img.convert("L").resize((28, 28), Image.BILINEAR)
    x = np.asarray(img, dtype=np.float32) * np.float32(SCALE)
    return ((x - np.float32(MEAN[0])) / np.float32(STD[0]))[None].astype(np.float32)


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def gate_model(loaded) -> tuple[threading.Event, threading.Event]:
    """Make a served model block until `gate` is set (keeps the real run function); `entered` is set once
    a batch is inside the model."""
    gate, entered, real = threading.Event(), threading.Event(), loaded.batcher.run_fn

    def gated(feeds):
        entered.set()
        assert gate.wait(10)
        return real(feeds)

    loaded.batcher.run_fn = gated
    return gate, entered
