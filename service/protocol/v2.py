"""Parse and encode Open Inference Protocol v2 inference bodies, without pydantic on the tensor data.

JSON tensors go straight from orjson's lists into numpy. Triton's binary tensor extension puts a JSON
header of `Inference-Header-Content-Length` bytes first and the raw little-endian tensors after it, in
input order, each sized by its `parameters.binary_data_size`.
"""

from __future__ import annotations

import math
import struct

from dataclasses import dataclass, field

import numpy as np
import orjson

from service.runtime.errors import BadInput, json_type, shown, value_types
from service.runtime.engine.session import V2_TO_NUMPY

HEADER_LENGTH = "inference-header-content-length"
NUMPY_TO_V2 = {np.dtype(v): k for k, v in V2_TO_NUMPY.items()}


@dataclass
class InferRequest:
    inputs: dict[str, np.ndarray]
    id: str | None = None
    binary_outputs: dict[str, bool] = field(default_factory=dict)  # output name -> send as binary
    default_binary: bool = False
    requested: list[str] | None = None  # output names asked for; None = all
    classification: dict[str, int] = field(default_factory=dict)  # output name -> top-k as "score:index:label"


def load_json(blob: bytes, what: str):
    try:
        return orjson.loads(blob)
    except orjson.JSONDecodeError as exc:
        raise BadInput(f"{what} is not valid JSON: {exc}") from None


MAX_ELEMENTS = 2**40  # far beyond any body the size limit admits, and far below int64 overflow


def _shape(raw, where: str) -> list[int]:
    if not isinstance(raw, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in raw):
        raise BadInput(f"{where}.shape must be a list of non-negative integers, got {shown(raw)}")
    count = 1
    for d in raw:  # Python ints: no wrap-around, unlike np.prod in int64
        count *= d
        if count > MAX_ELEMENTS:
            raise BadInput(f"{where}.shape {raw} has more than {MAX_ELEMENTS} elements")
    return raw


def _params(raw, where: str) -> dict:
    """A `parameters` object, or {} when absent."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise BadInput(f"{where}.parameters must be a JSON object, got {json_type(raw)}")
    return raw


# The JSON value types each kind of datatype takes (by its numpy dtype's kind): numbers for integers (floats
# too, when they have no fraction) and floats, true/false for BOOL.
_TYPES = {"i": {int, float}, "u": {int, float}, "f": {int, float}, "b": {bool}}


def _finite(arr: np.ndarray, where: str, datatype: str) -> np.ndarray:
    """Float data must be finite: NaN and Inf (or JSON numbers beyond the datatype's range, which become
    Inf) would run through the model and come back as nulls."""
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise BadInput(f"{where}.data holds NaN, Inf or values beyond the {datatype} range; give finite numbers")
    return arr


def _tensor(spec: dict, where: str, binary: memoryview | None) -> np.ndarray:
    if not isinstance(spec, dict):
        raise BadInput(f"{where} must be an object with name, shape, datatype and data")
    shape = _shape(spec.get("shape"), where)
    datatype = spec.get("datatype")
    if not isinstance(datatype, str) or datatype not in V2_TO_NUMPY:
        raise BadInput(f"{where}.datatype {shown(datatype)} is not supported; use one of {shown(sorted(V2_TO_NUMPY), 400)}")
    dtype = np.dtype(V2_TO_NUMPY[datatype])
    expected = math.prod(shape)
    if binary is not None:
        if binary.nbytes != expected * dtype.itemsize:
            raise BadInput(f"{where}: binary_data_size {binary.nbytes} does not match shape {shape} of {datatype} "
                           f"({expected * dtype.itemsize} bytes)")
        arr = np.frombuffer(binary, dtype=dtype.newbyteorder("<")).astype(dtype, copy=False).reshape(shape)
        return _finite(arr, where, datatype)
    if "data" not in spec:
        raise BadInput(f"{where} has no data")
    data = spec["data"]
    if dtype.kind == "f" and isinstance(data, list) and len(data) == expected:
        arr = _flat_floats(data, dtype)  # the common case, at the cost of numpy's own conversion
        if arr is not None:
            return _finite(arr.reshape(shape), where, datatype)
    types = value_types(data) if isinstance(data, list) else {type(data)}
    if not types <= _TYPES[dtype.kind]:
        what = "JSON booleans" if bool in types and dtype.kind != "b" else "values that are not " + datatype
        raise BadInput(f"{where}.data holds {what}; {datatype} takes flat or nested lists of "
                       f"{'true/false' if dtype.kind == 'b' else 'numbers'}")
    if dtype.kind in "iu":
        arr = _integers(data, float in types, dtype, where, datatype)
    else:
        try:
            with np.errstate(over="ignore"):  # beyond a float type's range becomes Inf, refused below
                arr = np.asarray(data, dtype=dtype)
        except ValueError:
            raise BadInput(f"{where}.data is not a list of equal-length lists") from None
    if arr.size != expected:
        raise BadInput(f"{where}: data has {arr.size} elements but shape {shape} needs {expected}")
    return _finite(arr.reshape(shape), where, datatype)


def _flat_floats(data: list, dtype: np.dtype) -> np.ndarray | None:
    """A flat list of JSON numbers as `dtype`, or None when it holds anything else (the caller then checks
    value by value and says what is wrong). struct refuses strings, None and lists as numpy would not; it
    takes true and false as 1 and 0, so only data holding an exact 0 or 1 is scanned for booleans.
    struct.pack reads a list of floats about 6x faster than array.array or numpy's own conversion (784
    numbers, a LeNet image: 5 against 32 us on the AVX2 EPYC), a tenth of such a request's time in all."""
    try:
        values = np.frombuffer(_packer(len(data)).pack(*data), np.float64)
    except struct.error:
        return None
    if ((values == 0) | (values == 1)).any() and bool in value_types(data):
        return None
    # Beyond the datatype's range becomes Inf (with numpy's overflow warning), which _finite refuses; the
    # warning's context manager would cost more than the cast on this path.
    return values.astype(dtype)


_PACKERS: dict[int, struct.Struct] = {}  # element count -> its packer of native float64s
_MAX_PACKERS = 64  # a client sending many shapes must not grow this without bound


def _packer(n: int) -> struct.Struct:
    packer = _PACKERS.get(n)
    if packer is None:
        if len(_PACKERS) >= _MAX_PACKERS:
            _PACKERS.clear()
        packer = _PACKERS[n] = struct.Struct(f"{n}d")
    return packer


def _integers(data, floats: bool, dtype: np.dtype, where: str, datatype: str) -> np.ndarray:
    """Integer data, exactly: out-of-range values are refused (astype would wrap them around), and so are
    numbers with a fraction (numpy would cut 1.5 to 1); 3.0 is 3."""
    info = np.iinfo(dtype)
    beyond = BadInput(f"{where}.data holds values beyond the {datatype} range [{info.min}, {info.max}]")
    try:
        if floats:
            approx = np.asarray(data, dtype=np.float64)
            if not np.array_equal(approx, np.trunc(approx)):
                raise BadInput(f"{where}.data holds numbers with a fraction; {datatype} takes integers")
            if approx.size and (approx.min() < info.min or approx.max() > info.max):
                raise beyond
        return np.asarray(data, dtype=dtype)
    except OverflowError:
        raise beyond from None
    except ValueError:
        raise BadInput(f"{where}.data is not a list of equal-length lists") from None


def parse_infer(body: bytes, header_length: str | None) -> InferRequest:
    """Body bytes (+ the binary-extension header, if any) -> named numpy arrays."""
    if header_length is not None:
        try:
            n = int(header_length)
        except ValueError:
            raise BadInput(f"Inference-Header-Content-Length must be an integer, got {shown(header_length)}") from None
        if not 0 < n <= len(body):
            raise BadInput(f"Inference-Header-Content-Length {n} is outside the body of {len(body)} bytes")
        header, tail = load_json(body[:n], "the inference header"), memoryview(body)[n:]
    else:
        header, tail = load_json(body, "the request body"), memoryview(b"")
    if not isinstance(header, dict):
        raise BadInput("the request body must be a JSON object with an \"inputs\" list")
    specs = header.get("inputs")
    if not isinstance(specs, list) or not specs:
        raise BadInput('"inputs" must be a non-empty list of tensors')
    inputs, offset = {}, 0
    for i, spec in enumerate(specs):
        name = spec.get("name") if isinstance(spec, dict) else None
        where = f"inputs[{i}]" + (f" ({shown(name)})" if name else "")
        if not isinstance(name, str):
            raise BadInput(f"{where}.name must be a string")
        if name in inputs:
            raise BadInput(f"input {shown(name)} is given twice")
        size = _params(spec.get("parameters"), where).get("binary_data_size")
        chunk = None
        if size is not None:
            if not isinstance(size, int) or size < 0 or offset + size > len(tail):
                raise BadInput(f"{where}.parameters.binary_data_size {shown(size)} runs past the {len(tail)} bytes of binary data")
            chunk, offset = tail[offset:offset + size], offset + size
        inputs[name] = _tensor(spec, where, chunk)
    if offset != len(tail):
        raise BadInput(f"{len(tail) - offset} bytes of binary data follow the inputs unclaimed")
    params = _params(header.get("parameters"), "the request")
    outputs = header.get("outputs")
    requested, binary, classes = None, {}, {}
    if outputs is not None:
        if not isinstance(outputs, list):
            raise BadInput('"outputs" must be a list of {"name": ...} objects')
        requested = []
        for i, o in enumerate(outputs):
            name = o.get("name") if isinstance(o, dict) else None
            if not isinstance(name, str):
                raise BadInput(f"outputs[{i}] must be an object whose name is a string")
            requested.append(name)
            oparams = _params(o.get("parameters"), f"outputs[{i}]")
            binary[name] = bool(oparams.get("binary_data"))
            k = oparams.get("classification")
            if k is not None:
                if not isinstance(k, int) or isinstance(k, bool) or k < 1:
                    raise BadInput(f"outputs[{i}].parameters.classification must be a positive integer, got {shown(k)}")
                classes[name] = k
    rid = header.get("id")
    return InferRequest(inputs, str(rid) if rid is not None else None, binary,
                        bool(params.get("binary_data_output")), requested, classes)


def classify_output(arr: np.ndarray, k: int, labels: list[str] | None) -> np.ndarray:
    """The classification extension: the top `k` along the last axis of scores (..., C) as BYTES entries
    "score:index[:label]", highest first -> (..., min(k, C)) object array of bytes."""
    if arr.ndim < 1 or not np.issubdtype(arr.dtype, np.number):
        raise BadInput(f"classification needs a numeric output with a class axis, got {arr.dtype} {list(arr.shape)}")
    k = min(k, arr.shape[-1])
    top = np.argsort(-arr, axis=-1, kind="stable")[..., :k]
    scores = np.take_along_axis(arr, top, axis=-1)
    out = np.empty(top.shape, dtype=object)
    for pos in np.ndindex(top.shape):
        i = int(top[pos])
        text = f"{float(scores[pos]):f}:{i}" + (f":{labels[i]}" if labels and i < len(labels) else "")
        out[pos] = text.encode()
    return out


def _bytes_blob(arr: np.ndarray) -> bytes:
    """BYTES elements in the binary extension: each as a 4-byte little-endian length, then the bytes."""
    return b"".join(len(b).to_bytes(4, "little") + b for b in arr.ravel())


def encode_infer(model: str, version: int, req: InferRequest, outputs: dict[str, np.ndarray]) -> tuple[bytes, int | None]:
    """Response body and, when any output is binary, the JSON header's length for the response header."""
    entries, blobs = [], []
    for name in req.requested or list(outputs):
        arr = outputs[name]
        is_bytes = arr.dtype == object
        entry = {"name": name, "datatype": "BYTES" if is_bytes else NUMPY_TO_V2[arr.dtype], "shape": list(arr.shape)}
        if req.binary_outputs.get(name, req.default_binary):
            raw = _bytes_blob(arr) if is_bytes else np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<")).tobytes()
            entry["parameters"] = {"binary_data_size": len(raw)}
            blobs.append(raw)
        elif is_bytes:
            entry["data"] = [b.decode() for b in arr.ravel()]
        else:
            entry["data"] = np.ascontiguousarray(arr).ravel()
        entries.append(entry)
    doc = {"model_name": model, "model_version": str(version), "outputs": entries}
    if req.id is not None:
        doc["id"] = req.id
    head = orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)
    if not blobs:
        return head, None
    return head + b"".join(blobs), len(head)
