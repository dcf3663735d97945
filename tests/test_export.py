"""ONNX export (dynamic batch, parity), INT8 quantization, and the model card written next to the graph."""

from __future__ import annotations

import copy
import hashlib
import json
from datetime import datetime

import numpy as np
import onnx
import onnxruntime as ort
import pydantic
import pytest
import torch
from torch import nn

from zooserve.card import CARD_FILE, ModelCard, find_cards, load_card
from training.export.card import next_version, write_card
from training.export.onnx_export import ParityError, check_parity, export, file_digest, run_onnx, session
from training.export.quantize import quantize_int8
from training.zoo.layers import classifier_head, conv_bn_relu


def tiny_net(seed: int) -> nn.Module:
    """Conv-BN-ReLU, pooling, a grouped conv and the zoo's classifier head; BN statistics warmed up."""
    torch.manual_seed(seed)
    net = nn.Sequential(conv_bn_relu(1, 4, 3), nn.MaxPool2d(2), conv_bn_relu(4, 8, 3, groups=2),
                        classifier_head(8, 10, 0.1))
    net.train()
    with torch.no_grad():
        for _ in range(3):
            net(torch.randn(16, 1, 28, 28) * 2 + 0.5)  # non-trivial running mean/var
    return net.eval()


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(model, path, opset, inputs): one export shared by the tests of this module (exporting is slow)."""
    model = tiny_net(0)
    path = tmp_path_factory.mktemp("onnx") / "nested" / "model.onnx"
    inputs = torch.randn(40, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    opset = export(model, inputs[:2], path)
    return model, path, opset, inputs


def dims(value_info) -> list:
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


def test_export_writes_checked_graph_with_named_io(exported):
    _, path, opset, _ = exported
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    assert [i.name for i in proto.graph.input] == ["input"]
    assert [o.name for o in proto.graph.output] == ["logits"]
    assert opset == next(op.version for op in proto.opset_import if op.domain in ("", "ai.onnx")) >= 17
    assert not list(path.parent.glob("*.data"))  # weights inside the one file, no external data


def test_export_batch_axis_is_dynamic(exported):
    _, path, _, _ = exported
    proto = onnx.load(str(path))
    (inp,), (out,) = proto.graph.input, proto.graph.output
    assert isinstance(dims(inp)[0], str) and dims(inp)[1:] == [1, 28, 28]
    assert dims(out)[0] == dims(inp)[0] and dims(out)[1:] == [10]


@pytest.mark.parametrize("batch", [1, 7])
def test_onnxruntime_runs_any_batch(exported, batch):
    model, path, _, inputs = exported
    x = inputs[:batch]
    (got,) = session(path).run(None, {"input": x.numpy()})
    with torch.no_grad():
        expected = model(x).numpy()
    assert got.shape == (batch, 10)
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)


def test_run_onnx_concatenates_batches(exported):
    _, path, _, inputs = exported
    sess = session(path)
    x = inputs[:10].numpy()
    np.testing.assert_array_equal(run_onnx(sess, x, batch_size=3), sess.run(None, {"input": x})[0])


def test_parity_passes_for_the_exported_model(exported):
    model, path, opset, inputs = exported
    report = check_parity(model, path, inputs, opset=opset)
    assert report.inputs == 40 and report.opset == opset and report.reference == "torch"
    assert 0 <= report.max_abs_diff <= 1e-4
    assert report.argmax_agreement == 1.0
    assert report.onnxruntime == ort.__version__


def test_parity_catches_a_different_model(exported):
    _, path, opset, inputs = exported
    stranger = tiny_net(1)  # same architecture, re-initialised
    with pytest.raises(ParityError, match=rf"{path.name}: max \|ORT - torch\| = .* \(tolerance 0.0001\)"):
        check_parity(stranger, path, inputs, opset=opset)


def test_parity_catches_a_small_weight_change(exported):
    model, path, opset, inputs = exported
    nudged = copy.deepcopy(model)
    with torch.no_grad():
        nudged[-1][-1].bias += 1e-2  # shifts every logit, argmax unchanged: only the tolerance catches it
    with pytest.raises(ParityError, match="argmax agreement 1.0000"):
        check_parity(nudged, path, inputs, opset=opset)


def test_file_digest(tmp_path):
    path = tmp_path / "model.onnx"
    path.write_bytes(b"not really onnx")
    assert file_digest(path) == {"file": "model.onnx", "bytes": 15,
                                 "sha256": hashlib.sha256(b"not really onnx").hexdigest()}


@pytest.fixture(scope="module")
def quantized(exported, tmp_path_factory):
    _, path, _, inputs = exported
    dst = tmp_path_factory.mktemp("int8") / "q" / "model.onnx"
    before = path.read_bytes()
    quantize_int8(path, dst, inputs[:32].numpy())
    assert path.read_bytes() == before  # the float source is left alone
    return dst


@pytest.mark.parametrize("batch", [1, 5])
def test_quantized_model_runs_with_same_output_shape(exported, quantized, batch):
    _, path, _, inputs = exported
    x = inputs[-batch:].numpy()
    (q,) = session(quantized).run(None, {"input": x})
    (f,) = session(path).run(None, {"input": x})
    assert q.shape == f.shape == (batch, 10)
    assert np.isfinite(q).all()


def test_quantized_model_is_int8_qdq_and_close_to_float(exported, quantized):
    _, path, _, inputs = exported
    proto = onnx.load(str(quantized))
    ops = {n.op_type for n in proto.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert any(t.data_type == onnx.TensorProto.INT8 for t in proto.graph.initializer)
    x = inputs.numpy()
    q, f = run_onnx(session(quantized), x), run_onnx(session(path), x)
    assert not np.array_equal(q, f)  # really quantized
    assert np.corrcoef(q.ravel(), f.ravel())[0, 1] > 0.95  # but still the same function, roughly


# ---------------------------------------------------------------- model cards

@pytest.fixture
def make_card_fields():
    """Factory: a valid card's fields (what train.publish passes to write_card), with overrides."""

    def make(**overrides) -> dict:
        fields = {
            "name": "fashion-tiny", "version": 1, "task": "image-classification", "family": "cnn/tiny",
            "description": "a tiny test net",
            "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 1, 28, 28]}],
            "outputs": [{"name": "logits", "datatype": "FP32", "shape": [-1, 10]}],
            "preprocess": {"height": 28, "width": 28, "channels": 1, "scale": 1 / 255, "mean": [0.28], "std": [0.35]},
            "labels": [f"class{i}" for i in range(10)],
            "batching": {"max_batch_size": 64, "max_delay_ms": 2.0},
            "metrics": [{"split": "test", "examples": 32, "accuracy": 0.5, "cross_entropy": 1.2}],
            "dataset": {"name": "fashion-mnist", "sha256": {"t10k-labels-idx1-ubyte": "ab" * 32}, "official": False,
                        "splits": {"train": 64, "validation": 32, "test": 32}, "split_seed": 0},
            "parity": {"reference": "torch", "max_abs_diff": 1e-6, "argmax_agreement": 1.0, "inputs": 32, "opset": 20,
                       "onnxruntime": ort.__version__},
            "training": {"arch": "tiny", "model_config": {"widths": [4, 8]}, "train_config": {"epochs": 1},
                         "optim_config": {"name": "adamw"}, "seed": 0, "epochs_run": 1, "best_epoch": 1,
                         "wall_time_s": 0.5, "parameters": 1234, "world_size": 1, "device": "cpu",
                         "torch": torch.__version__, "onnx": onnx.__version__},
        }
        fields.update(overrides)
        return fields

    return make


@pytest.fixture
def model_dir(tmp_path, exported):
    d = tmp_path / "repo" / "fashion-tiny" / "1"
    d.mkdir(parents=True)
    (d / "model.onnx").write_bytes(exported[1].read_bytes())
    return d


def test_card_round_trips(model_dir, make_card_fields):
    card = write_card(model_dir, make_card_fields())
    assert load_card(model_dir) == card == load_card(model_dir / CARD_FILE)
    assert card.artifact.model_dump() == file_digest(model_dir / "model.onnx")
    assert datetime.fromisoformat(card.created).utcoffset().total_seconds() == 0
    raw = json.loads((model_dir / CARD_FILE).read_text())
    assert raw["training"]["model_config"] == {"widths": [4, 8]}  # written by alias
    assert "quantization" not in raw  # None fields are left out
    assert raw["schema_version"] == 1
    assert find_cards(model_dir.parent.parent) == [model_dir / CARD_FILE]


def test_card_with_quantization_section(model_dir, make_card_fields):
    avx2 = {"isa": "avx2", "cpu": "AMD EPYC-Rome (Zen 2), emulated", "onnxruntime": "1.32.0",
            "emulator": "qemu-x86_64 -cpu EPYC-Rome"}
    q = {"method": "static QDQ", "calibration_examples": 64, "source_model": "fashion-tiny/1", "accuracy_change": -0.01,
         "format": "U8S8", "weight_range": [-64, 63],
         "isa_checks": [{"measured_on": avx2, "examples": 32, "accuracy": 0.5, "max_abs_diff": 0.0}]}
    card = write_card(model_dir, make_card_fields(quantization=q))
    assert load_card(model_dir).quantization.model_dump(exclude_none=True) == q == card.quantization.model_dump(exclude_none=True)
    with pytest.raises(ValueError, match="weight_range"):
        write_card(model_dir, make_card_fields(quantization={**q, "weight_range": [-64]}))


def bad_inputs(fields):
    fields["inputs"][0]["shape"] = [-1, 1, 0, 28]


def bad_preprocess(fields):
    fields["preprocess"]["mean"] = [0.1, 0.2, 0.3]


def nested_extra(fields):
    fields["preprocess"]["colour"] = "grey"


@pytest.mark.parametrize("change,message", [
    (lambda f: f.update(labels=[f"c{i}" for i in range(9)]), "9 labels but the output has 10 classes"),
    (lambda f: f.update(labels=None), "a classifier's card lists its labels"),
    (lambda f: f.update(name="Fashion Tiny"), "String should match pattern"),
    (lambda f: f.update(name="-tiny"), "String should match pattern"),
    (lambda f: f.update(family="cnn"), "String should match pattern"),
    (lambda f: f.update(version=0), "greater than or equal to 1"),
    (bad_inputs, "dimensions are positive or -1"),
    (lambda f: f["outputs"][0].update(shape=[-2, 10]), "dimensions are positive or -1"),
    (lambda f: f.update(colour="blue"), "Extra inputs are not permitted"),
    (nested_extra, "Extra inputs are not permitted"),
    (lambda f: f["inputs"][0].update(datatype="float32"), "Input should be"),
    (lambda f: f.update(task="segmentation"), "Input should be"),
    (bad_preprocess, "one value per channel"),
    (lambda f: f.update(inputs=[]), "at least 1 item"),
    (lambda f: f["batching"].update(max_batch_size=0), "greater than or equal to 1"),
    (lambda f: f["parity"].update(reference="tensorflow"), "Input should be 'torch', 'numpy', 'onnx-fp32' or 'onnx-step'"),
    (lambda f: f.pop("parity"), "Field required"),
    (lambda f: f["outputs"][0].update(optional=True), "only inputs can be optional"),
    (lambda f: f["inputs"][0].update(optional=True), "at least one input is required"),
], ids=["labels-count", "no-labels", "name-space", "name-dash", "family", "version0", "dim0", "dim-2",
        "extra-field", "nested-extra", "datatype", "task", "mean-per-channel", "no-inputs", "batch0", "parity-reference",
        "missing", "optional-output", "no-required-input"])
def test_card_rejects_invalid_fields(model_dir, make_card_fields, change, message):
    fields = make_card_fields()
    change(fields)
    with pytest.raises(pydantic.ValidationError, match=message) as err:
        write_card(model_dir, fields)
    assert isinstance(err.value, ValueError)  # callers catch ValueError (zooserve.card.main does)
    assert not (model_dir / CARD_FILE).exists()


def test_card_rejects_scalar_output_shape(model_dir, make_card_fields):
    fields = make_card_fields()
    fields["outputs"][0]["shape"] = []
    with pytest.raises(ValueError):
        write_card(model_dir, fields)


def test_card_file_is_frozen(model_dir, make_card_fields):
    card = write_card(model_dir, make_card_fields())
    with pytest.raises(pydantic.ValidationError):
        card.name = "other"


def test_load_card_rejects_tampered_json(model_dir, make_card_fields):
    write_card(model_dir, make_card_fields())
    path = model_dir / CARD_FILE
    raw = json.loads(path.read_text())
    raw["outputs"][0]["shape"] = [-1, 0]
    path.write_text(json.dumps(raw))
    with pytest.raises(ValueError, match="dimensions are positive or -1"):
        load_card(model_dir)


def test_write_card_needs_the_onnx_file(tmp_path, make_card_fields):
    with pytest.raises(FileNotFoundError):
        write_card(tmp_path, make_card_fields())


def test_next_version(tmp_path):
    assert next_version(tmp_path, "fashion-x") == 1  # no folder yet
    for name in ("1", "3", "tmp", "2b"):
        (tmp_path / "fashion-x" / name).mkdir(parents=True)
    (tmp_path / "fashion-x" / "9").write_text("a file, not a version")
    (tmp_path / "fashion-y" / "7").mkdir(parents=True)
    assert next_version(tmp_path, "fashion-x") == 4
    assert next_version(tmp_path, "fashion-y") == 8


def test_find_cards_only_in_numbered_versions(tmp_path, model_dir, make_card_fields):
    write_card(model_dir, make_card_fields())
    stray = model_dir.parent / "latest"
    stray.mkdir()
    (stray / CARD_FILE).write_text("{}")
    assert find_cards(model_dir.parent.parent) == [model_dir / CARD_FILE]


def test_card_model_accepts_written_card_schema(model_dir, make_card_fields):
    # The JSON Schema the service publishes knows the aliased field name the trainer writes.
    write_card(model_dir, make_card_fields())
    schema = ModelCard.model_json_schema(by_alias=True)
    training = schema["$defs"]["Training"]["properties"]
    assert "model_config" in training and "model_config_" not in training
