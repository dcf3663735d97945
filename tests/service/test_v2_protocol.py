"""Unit tests for the Open Inference Protocol v2 codec: parse_infer and encode_infer, JSON and binary."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from service.protocol.v2 import InferRequest, encode_infer, parse_infer
from service.runtime.errors import BadInput
from tests.service.conftest import binary_body, decode_binary_response


def parse_json(doc) -> InferRequest:
    return parse_infer(orjson.dumps(doc), None)


def tensor(name, datatype, shape, data) -> dict:
    return {"name": name, "datatype": datatype, "shape": shape, "data": data}


# -- parse: JSON tensors --------------------------------------------------------------------------------

def test_parse_fp32_int64_bool_json_tensors():
    req = parse_json({"id": "r1", "inputs": [
        tensor("x", "FP32", [2, 3], [0.5, -1.25, 3.0, 1e-3, 2.0, -0.0]),
        tensor("ids", "INT64", [1, 3], [2**40, -7, 0]),
        tensor("mask", "BOOL", [3], [True, False, True]),
    ]})
    assert list(req.inputs) == ["x", "ids", "mask"]
    x, ids, mask = req.inputs["x"], req.inputs["ids"], req.inputs["mask"]
    assert x.dtype == np.float32 and x.shape == (2, 3)
    np.testing.assert_array_equal(x, np.array([[0.5, -1.25, 3.0], [1e-3, 2.0, -0.0]], np.float32))
    assert ids.dtype == np.int64 and ids.tolist() == [[2**40, -7, 0]]
    assert mask.dtype == np.bool_ and mask.tolist() == [True, False, True]
    assert req.id == "r1" and req.requested is None and req.binary_outputs == {} and req.default_binary is False


def test_parse_accepts_nested_data_in_row_major_order():
    flat = parse_json({"inputs": [tensor("x", "INT32", [2, 2], [1, 2, 3, 4])]}).inputs["x"]
    nested = parse_json({"inputs": [tensor("x", "INT32", [2, 2], [[1, 2], [3, 4]])]}).inputs["x"]
    assert flat.dtype == nested.dtype == np.int32
    np.testing.assert_array_equal(flat, nested)


@pytest.mark.parametrize("datatype, data, dtype", [
    ("FP16", [1.5, -2.0], np.float16), ("FP64", [1e300, 2.0], np.float64), ("INT8", [-128, 127], np.int8),
    ("UINT8", [0, 255], np.uint8), ("INT32", [-(2**31), 2**31 - 1], np.int32), ("UINT64", [2**64 - 1, 0], np.uint64),
])
def test_parse_other_datatypes(datatype, data, dtype):
    arr = parse_json({"inputs": [tensor("x", datatype, [2], data)]}).inputs["x"]
    assert arr.dtype == dtype and arr.tolist() == data


def test_parse_requested_outputs_and_binary_flags():
    req = parse_json({"id": 17, "inputs": [tensor("x", "FP32", [1], [1.0])],
                      "outputs": [{"name": "b", "parameters": {"binary_data": True}}, {"name": "a"}]})
    assert req.id == "17"  # ids are echoed as strings
    assert req.requested == ["b", "a"]
    assert req.binary_outputs == {"b": True, "a": False}
    assert parse_json({"inputs": [tensor("x", "FP32", [1], [1.0])],
                       "parameters": {"binary_data_output": True}}).default_binary is True


# -- parse: binary tensors ----------------------------------------------------------------------------------

def test_binary_round_trip_of_several_datatypes():
    rng = np.random.default_rng(0)
    arrays = {
        "x": ("FP32", rng.normal(size=(2, 3, 4)).astype(np.float32)),
        "ids": ("INT64", rng.integers(-2**62, 2**62, size=(2, 5))),
        "mask": ("BOOL", rng.random((2, 5)) > 0.5),
        "half": ("FP16", rng.normal(size=(3,)).astype(np.float16)),
        "small": ("UINT8", rng.integers(0, 256, size=(4,), dtype=np.uint8)),
    }
    body, n = binary_body([(name, dt, arr) for name, (dt, arr) in arrays.items()], id="bin")
    req = parse_infer(body, str(n))
    assert req.id == "bin" and list(req.inputs) == list(arrays)
    for name, (_, arr) in arrays.items():
        got = req.inputs[name]
        assert got.shape == arr.shape and got.dtype.kind == arr.dtype.kind and got.dtype.itemsize == arr.dtype.itemsize
        np.testing.assert_array_equal(got, arr)


def test_binary_and_json_inputs_mix():
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    raw = a.astype("<f4").tobytes()
    head = orjson.dumps({"inputs": [
        tensor("json_first", "INT64", [2], [5, 6]),
        {"name": "bin", "datatype": "FP32", "shape": [2, 3], "parameters": {"binary_data_size": len(raw)}},
    ]})
    req = parse_infer(head + raw, str(len(head)))
    assert req.inputs["json_first"].tolist() == [5, 6]
    np.testing.assert_array_equal(req.inputs["bin"], a)


def test_binary_bytes_are_little_endian():
    raw = np.array([1.0, 2.0], dtype=">f4").astype("<f4").tobytes()  # whatever the sender's byte order
    head = orjson.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [2],
                                     "parameters": {"binary_data_size": 8}}]})
    assert parse_infer(head + raw, str(len(head))).inputs["x"].tolist() == [1.0, 2.0]
    assert raw == b"\x00\x00\x80\x3f\x00\x00\x00\x40"


def test_header_length_without_binary_data_is_plain_json():
    body = orjson.dumps({"inputs": [tensor("x", "FP32", [1], [2.5])]})
    assert parse_infer(body, str(len(body))).inputs["x"].tolist() == [2.5]


# -- parse: errors --------------------------------------------------------------------------------------------

GOOD_T = tensor("x", "FP32", [2], [1.0, 2.0])


@pytest.mark.parametrize("body, header, words", [
    (b"not json", None, ["request body", "JSON"]),
    (b"[1]", None, ["JSON object"]),
    (b"{}", None, ['\"inputs\"']),
    (orjson.dumps({"inputs": []}), None, ['\"inputs\"']),
    (orjson.dumps({"inputs": [GOOD_T, GOOD_T]}), None, ['\"x\"', "twice"]),
    (orjson.dumps({"inputs": [{**GOOD_T, "name": 3}]}), None, ["inputs[0]", "name"]),
    (orjson.dumps({"inputs": [{**GOOD_T, "shape": [2, -1]}]}), None, ['inputs[0] ("x").shape']),
    (orjson.dumps({"inputs": [{**GOOD_T, "shape": [True, 2]}]}), None, ["shape"]),
    (orjson.dumps({"inputs": [{**GOOD_T, "shape": [2.0]}]}), None, ["shape"]),
    (orjson.dumps({"inputs": [{**GOOD_T, "datatype": "STRING"}]}), None, ['datatype "STRING"']),
    (orjson.dumps({"inputs": [{**GOOD_T, "data": [1.0]}]}), None, ["1 elements", "needs 2"]),
    (orjson.dumps({"inputs": [{**GOOD_T, "data": ["a", "b"]}]}), None, ["not FP32"]),
    (orjson.dumps({"inputs": [tensor("x", "INT8", [1], [300])]}), None, ["beyond the INT8 range [-128, 127]"]),
    (orjson.dumps({"inputs": [{k: v for k, v in GOOD_T.items() if k != "data"}]}), None, ["no data"]),
    (b"{}", "x", ["Inference-Header-Content-Length", '\"x\"']),
    (b"{}", "3", ["Inference-Header-Content-Length 3", "outside"]),
    (b"{}", "0", ["outside"]),
    (b"{}xx", "3", ["inference header", "JSON"]),
])
def test_parse_errors_name_the_problem(body, header, words):
    with pytest.raises(BadInput) as info:
        parse_infer(body, header)
    for word in words:
        assert word in str(info.value), (word, str(info.value))


def _binary(spec_overrides: dict, blob: bytes) -> tuple[bytes, str]:
    head = orjson.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [2],
                                     "parameters": {"binary_data_size": 8}, **spec_overrides}]})
    return head + blob, str(len(head))


@pytest.mark.parametrize("overrides, blob, words", [
    ({}, b"\0" * 4, ["binary_data_size 8", "runs past"]),
    ({}, b"\0" * 12, ["4 bytes", "unclaimed"]),
    ({"shape": [3]}, b"\0" * 8, ["binary_data_size 8", "12 bytes"]),
    ({"parameters": {"binary_data_size": -1}}, b"\0" * 8, ["binary_data_size -1"]),
    ({"parameters": {"binary_data_size": "8"}}, b"\0" * 8, ['binary_data_size "8"']),
])
def test_binary_errors_name_the_problem(overrides, blob, words):
    body, n = _binary(overrides, blob)
    with pytest.raises(BadInput) as info:
        parse_infer(body, n)
    for word in words:
        assert word in str(info.value), (word, str(info.value))


@pytest.mark.parametrize("doc", [
    pytest.param({"inputs": [{**GOOD_T, "parameters": [1]}]}, id="input-parameters-list"),
    pytest.param({"inputs": [GOOD_T], "parameters": "binary"}, id="request-parameters-string"),
    pytest.param({"inputs": [GOOD_T], "outputs": [{"name": "y", "parameters": 1}]}, id="output-parameters-int"),
    pytest.param({"inputs": [GOOD_T], "outputs": [{"name": {"y": 1}}]}, id="output-name-object"),
    pytest.param({"inputs": [{**GOOD_T, "datatype": ["FP32"]}]}, id="datatype-list"),
    pytest.param({"inputs": [{**GOOD_T, "shape": [2**32, 2**32], "data": []}]}, id="element-count-overflow"),
])
def test_malformed_fields_are_bad_input_not_a_crash(doc):
    try:
        parse_json(doc)
    except BadInput:
        return
    except Exception as exc:  # noqa: BLE001
        raise AssertionError(f"{type(exc).__name__} instead of BadInput: {exc}") from exc
    raise AssertionError("accepted")


# -- encode ---------------------------------------------------------------------------------------------

def test_encode_json_serialises_numpy_outputs():
    outputs = {
        "logits": np.array([[0.25, -1.5]], np.float32),
        "ids": np.array([2**40, -3], np.int64),
        "mask": np.array([True, False]),
        "half": np.array([1.5], np.float16),
        "wide": np.array([1e300], np.float64),
        "bytes": np.array([[0, 255]], np.uint8),
    }
    body, header_len = encode_infer("m", 3, InferRequest(inputs={}, id="abc"), outputs)
    assert header_len is None
    doc = orjson.loads(body)
    assert doc["model_name"] == "m" and doc["model_version"] == "3" and doc["id"] == "abc"
    by_name = {o["name"]: o for o in doc["outputs"]}
    assert list(by_name) == list(outputs)
    expect = {"logits": ("FP32", [1, 2], [0.25, -1.5]), "ids": ("INT64", [2], [2**40, -3]),
              "mask": ("BOOL", [2], [True, False]), "half": ("FP16", [1], [1.5]), "wide": ("FP64", [1], [1e300]),
              "bytes": ("UINT8", [1, 2], [0, 255])}
    for name, (datatype, shape, data) in expect.items():
        assert by_name[name]["datatype"] == datatype
        assert by_name[name]["shape"] == shape
        assert by_name[name]["data"] == data  # flat, row-major
        assert "parameters" not in by_name[name]


def test_encode_without_id_and_with_non_contiguous_arrays():
    base = np.arange(12, dtype=np.float32).reshape(3, 4)
    outputs = {"t": base.T, "s": base[:, ::2]}
    doc = orjson.loads(encode_infer("m", 1, InferRequest(inputs={}), outputs)[0])
    assert "id" not in doc
    t, s = doc["outputs"]
    assert t["shape"] == [4, 3] and t["data"] == base.T.ravel().tolist()
    assert s["shape"] == [3, 2] and s["data"] == base[:, ::2].ravel().tolist()


def test_encode_requested_subset_in_requested_order():
    outputs = {"a": np.zeros((1, 2), np.float32), "b": np.ones((1, 3), np.float32), "c": np.zeros(1, np.int64)}
    req = InferRequest(inputs={}, requested=["c", "a"])
    doc = orjson.loads(encode_infer("m", 1, req, outputs)[0])
    assert [o["name"] for o in doc["outputs"]] == ["c", "a"]


def test_encode_binary_round_trip():
    rng = np.random.default_rng(1)
    outputs = {"logits": rng.normal(size=(2, 10)).astype(np.float32),
               "ids": rng.integers(0, 100, size=(2,)),
               "mask": np.array([[True, False, True]])}
    req = InferRequest(inputs={}, id="x", binary_outputs={"logits": True, "ids": False}, default_binary=True,
                       requested=["logits", "ids", "mask"])
    body, n = encode_infer("m", 2, req, outputs)
    assert n is not None and body[:n].endswith(b"}")
    head, arrays = decode_binary_response(body, n)
    kinds = {o["name"]: ("binary" if "parameters" in o else "json") for o in head["outputs"]}
    assert kinds == {"logits": "binary", "ids": "json", "mask": "binary"}  # per-output flag beats the default
    assert head["outputs"][0]["parameters"]["binary_data_size"] == 2 * 10 * 4
    assert head["outputs"][2]["parameters"]["binary_data_size"] == 3
    for name, arr in outputs.items():
        np.testing.assert_array_equal(arrays[name], arr)


def test_encode_binary_bytes_are_little_endian():
    out = {"y": np.array([1.0, 2.0], dtype=np.float32)}
    body, n = encode_infer("m", 1, InferRequest(inputs={}, default_binary=True), out)
    assert body[n:] == b"\x00\x00\x80\x3f\x00\x00\x00\x40"
    assert orjson.loads(body[:n])["outputs"][0]["datatype"] == "FP32"


def test_parse_then_encode_round_trip_through_binary():
    x = np.random.default_rng(2).normal(size=(3, 4)).astype(np.float32)
    body, n = binary_body([("x", "FP32", x)], outputs=[{"name": "x", "parameters": {"binary_data": True}}])
    req = parse_infer(body, str(n))
    encoded, m = encode_infer("echo", 1, req, dict(req.inputs))
    _, arrays = decode_binary_response(encoded, m)
    np.testing.assert_array_equal(arrays["x"], x)


def test_flat_float_data_of_many_lengths_keeps_a_bounded_set_of_packers():
    """Flat float lists are read with one struct packer per element count: a client sending every shape
    must not grow that set without bound, and each answer stays exact."""
    from service.protocol import v2

    for n in range(1, 3 * v2._MAX_PACKERS):
        values = np.arange(n, dtype=np.float32) / 7
        doc = {"inputs": [{"name": "x", "shape": [n], "datatype": "FP32", "data": values.tolist()}]}
        np.testing.assert_array_equal(parse_infer(orjson.dumps(doc), None).inputs["x"], values)
        assert len(v2._PACKERS) <= v2._MAX_PACKERS
