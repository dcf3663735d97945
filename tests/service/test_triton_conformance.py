"""The real server (`python -m service.cli` in a subprocess) driven by the unchanged Triton HTTP client.

A module-scoped fixture builds a model repository with the training pipeline's --dry-run on tiny fake
Fashion-MNIST, starts the server on a free 127.0.0.1 port and always stops it again. Every result is
compared with onnxruntime run in-process on the same ONNX file.
"""

from __future__ import annotations

import re
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

tritonhttp = pytest.importorskip("tritonclient.http")
from tritonclient.utils import InferenceServerException  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import serve_fixture as sf  # noqa: E402

from zooserve.card import load_card  # noqa: E402

MODEL = "fashion-lenet"
INPUT, OUTPUT = "input", "logits"
ATOL = 1e-5
TIMEOUT_S = 30.0  # per HTTP call (connect and network)
ADMIN_KEY = "conformance-admin-key"
ADMIN = {"X-Admin-Key": ADMIN_KEY}


# -- fixtures ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def repository(tmp_path_factory) -> Path:
    """`training.train --recipe fashion-lenet --dry-run` on 700/100 fake images -> models/fashion-lenet/1."""
    base = tmp_path_factory.mktemp("triton-repo")
    repo = sf.build_repository(base, (MODEL,), n_train=700, n_test=100)
    assert (repo / MODEL / "1" / "model.onnx").is_file()
    return repo


@pytest.fixture(scope="module")
def server(repository, tmp_path_factory):
    control = {"ZOOSERVE_REPOSITORY_CONTROL": "true", "ZOOSERVE_ADMIN_KEY": ADMIN_KEY}  # for load and unload
    with sf.running_server(repository, workdir=tmp_path_factory.mktemp("server"), env=control, ready_timeout=90) as s:
        yield s


@pytest.fixture
def client(server):
    c = tritonhttp.InferenceServerClient(server.url, connection_timeout=TIMEOUT_S, network_timeout=TIMEOUT_S)
    yield c
    c.close()


@pytest.fixture(scope="module")
def reference(repository):
    """In-process onnxruntime on the same file: images (N, 1, 28, 28) -> logits (N, 10)."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(repository / MODEL / "1" / "model.onnx"), opts, providers=["CPUExecutionProvider"])

    def run(x: np.ndarray) -> np.ndarray:
        return sess.run([OUTPUT], {INPUT: x})[0]

    return run


def images(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 1, 28, 28), dtype=np.float32)


def make_input(x: np.ndarray, binary: bool, name: str = INPUT, datatype: str = "FP32"):
    inp = tritonhttp.InferInput(name, list(x.shape), datatype)
    inp.set_data_from_numpy(x, binary_data=binary)
    return inp


def output_was_binary(result) -> bool:
    (out,) = result.get_response()["outputs"]
    return "binary_data_size" in (out.get("parameters") or {})


def batch_size_histogram(server) -> tuple[float, float]:
    """(count, sum) of the zooserve_batch_size histogram of MODEL, from /metrics."""
    status, body = sf.http_get(server.port, "/metrics", timeout=TIMEOUT_S)
    assert status == 200
    text = body.decode()

    def value(pattern: str) -> float:
        m = re.search(pattern, text, re.M)
        return float(m.group(1)) if m else 0.0

    label = re.escape(f'model="{MODEL}"')
    return (value(rf"^zooserve_batch_size_count\{{{label}\}} (\S+)$"),
            value(rf"^zooserve_batch_size_sum\{{{label}\}} (\S+)$"))


# -- health and metadata ---------------------------------------------------------------------------

def test_server_live_and_ready(client):
    assert client.is_server_live()
    assert client.is_server_ready()


def test_server_metadata(client):
    md = client.get_server_metadata()
    assert md["name"] == "zooserve"
    assert isinstance(md["version"], str) and md["version"]
    assert {"binary_tensor_data", "model_repository"} <= set(md["extensions"])


def test_model_ready(client):
    assert client.is_model_ready(MODEL)
    assert client.is_model_ready(MODEL, "1")
    assert not client.is_model_ready(MODEL, "2")
    assert not client.is_model_ready("no-such-model")


def test_model_metadata_matches_card_and_graph(client, repository):
    card = load_card(repository / MODEL / "1")
    sess = ort.InferenceSession(str(repository / MODEL / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    for md in (client.get_model_metadata(MODEL), client.get_model_metadata(MODEL, "1")):
        assert md["name"] == MODEL
        assert md["versions"] == ["1"]
        assert md["platform"] == "onnxruntime_onnx"
        assert md["inputs"] == [{"name": INPUT, "datatype": "FP32", "shape": [-1, 1, 28, 28]}]
        assert md["outputs"] == [{"name": OUTPUT, "datatype": "FP32", "shape": [-1, 10]}]
        assert md["inputs"] == [s.model_dump() for s in card.inputs]
        assert [i.name for i in sess.get_inputs()] == [INPUT] and [o.name for o in sess.get_outputs()] == [OUTPUT]
    with pytest.raises(InferenceServerException, match="no-such-model"):
        client.get_model_metadata("no-such-model")


def test_repository_index(client):
    index = client.get_model_repository_index()
    assert {"name": MODEL, "version": "1", "state": "READY", "reason": ""} in index
    assert all(set(row) >= {"name", "version", "state"} for row in index)


def test_unload_then_load(client, reference):
    x = images(1, seed=5)
    try:
        client.unload_model(MODEL, headers=ADMIN)
        assert not client.is_model_ready(MODEL)
        row = next(r for r in client.get_model_repository_index() if r["name"] == MODEL)
        assert row["state"] == "UNAVAILABLE"
        with pytest.raises(InferenceServerException):
            client.infer(MODEL, [make_input(x, True)])
    finally:
        client.load_model(MODEL, headers=ADMIN)  # always leave the model loaded for the other tests
    assert client.is_model_ready(MODEL)
    assert client.is_server_ready()
    result = client.infer(MODEL, [make_input(x, True)])
    np.testing.assert_allclose(result.as_numpy(OUTPUT), reference(x), atol=ATOL)


def test_load_unknown_model_raises(client):
    with pytest.raises(InferenceServerException, match="no-such-model"):
        client.load_model("no-such-model", headers=ADMIN)


# -- inference -------------------------------------------------------------------------------------

@pytest.mark.parametrize("binary_input", [True, False], ids=["in=binary", "in=json"])
@pytest.mark.parametrize("binary_output", [None, True, False], ids=["out=default", "out=binary", "out=json"])
def test_infer_matches_onnxruntime(client, reference, binary_input, binary_output):
    x = images(1, seed=1)
    outputs = None if binary_output is None else [tritonhttp.InferRequestedOutput(OUTPUT, binary_data=binary_output)]
    result = client.infer(MODEL, [make_input(x, binary_input)], outputs=outputs, request_id="req-42")
    got = result.as_numpy(OUTPUT)
    assert got.dtype == np.float32 and got.shape == (1, 10)
    np.testing.assert_allclose(got, reference(x), atol=ATOL)
    response = result.get_response()
    assert response["model_name"] == MODEL and response["model_version"] == "1"
    assert response["id"] == "req-42"
    # No outputs named: the client sets binary_data_output, so the server must answer in binary.
    assert output_was_binary(result) == (True if binary_output is None else binary_output)


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_infer_batch_of_rows(client, reference, binary):
    x = images(5, seed=2)
    result = client.infer(MODEL, [make_input(x, binary)],
                          outputs=[tritonhttp.InferRequestedOutput(OUTPUT, binary_data=binary)])
    got = result.as_numpy(OUTPUT)
    assert got.shape == (5, 10)
    np.testing.assert_allclose(got, reference(x), atol=ATOL)


def test_infer_explicit_version(client, reference):
    x = images(2, seed=3)
    result = client.infer(MODEL, [make_input(x, True)], model_version="1")
    assert result.get_response()["model_version"] == "1"
    np.testing.assert_allclose(result.as_numpy(OUTPUT), reference(x), atol=ATOL)


def test_response_compression_request_is_answered(client, reference):
    # The server may ignore Accept-Encoding; the client must still get the right tensor.
    x = images(1, seed=4)
    result = client.infer(MODEL, [make_input(x, True)], response_compression_algorithm="gzip")
    np.testing.assert_allclose(result.as_numpy(OUTPUT), reference(x), atol=ATOL)


def test_unknown_model_raises(client):
    with pytest.raises(InferenceServerException) as err:
        client.infer("no-such-model", [make_input(images(1, seed=0), True)])
    assert err.value.status() == "404"
    assert "no-such-model" in err.value.message()


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_wrong_shape_raises_with_useful_message(client, binary):
    x = images(1, seed=0)[0]  # (1, 28, 28): the batch axis is missing
    with pytest.raises(InferenceServerException) as err:
        client.infer(MODEL, [make_input(x, binary)])
    assert err.value.status() == "400"
    msg = err.value.message()
    assert INPUT in msg and "shape" in msg
    assert "[-1, 1, 28, 28]" in msg and "[1, 28, 28]" in msg, msg


@pytest.mark.parametrize("case, pattern", [
    ("datatype", r"datatype must be FP32"),
    ("input-name", r'takes inputs \["input"\]'),
    ("output-name", r'no output\(s\) \["probs"\]'),
    ("too-many-rows", r"exceeds this model's max_batch_size"),
    ("version", r"no version 7"),
])
def test_bad_requests_raise_with_useful_message(client, case, pattern):
    x, kwargs = images(1, seed=0), {}
    inputs = [make_input(x, True)]
    if case == "datatype":
        inputs = [make_input(x.astype(np.float64), True, datatype="FP64")]
    elif case == "input-name":
        inputs = [make_input(x, True, name="image")]
    elif case == "output-name":
        kwargs["outputs"] = [tritonhttp.InferRequestedOutput("probs")]
    elif case == "too-many-rows":
        inputs = [make_input(np.zeros((1000, 1, 28, 28), np.float32), True)]
    elif case == "version":
        kwargs["model_version"] = "7"
    with pytest.raises(InferenceServerException, match=pattern) as err:
        client.infer(MODEL, inputs, **kwargs)
    assert err.value.status() in ("400", "404")


def test_concurrent_infers_keep_results_per_request(server, reference):
    """Threads, each with its own client, send distinct inputs of 1-3 rows; every answer must be its own,
    including when the dynamic batcher put several requests into one onnxruntime call."""
    threads, per_thread, rounds = 8, 25, 3
    count0, _ = batch_size_histogram(server)
    mismatches: list[str] = []
    lock = threading.Lock()

    def worker(t: int, r: int) -> int:
        c = tritonhttp.InferenceServerClient(server.url, connection_timeout=TIMEOUT_S, network_timeout=TIMEOUT_S)
        done = 0
        try:
            for i in range(per_thread):
                x = images(1 + (t + i) % 3, seed=10_000 * r + 100 * t + i)
                binary = (t + i) % 2 == 0
                result = c.infer(MODEL, [make_input(x, binary)],
                                 outputs=[tritonhttp.InferRequestedOutput(OUTPUT, binary_data=binary)],
                                 request_id=f"{r}-{t}-{i}")
                got = result.as_numpy(OUTPUT)
                if result.get_response().get("id") != f"{r}-{t}-{i}" or got.shape != (len(x), 10) \
                        or not np.allclose(got, reference(x), atol=ATOL):
                    with lock:
                        mismatches.append(f"round {r} thread {t} request {i}")
                done += 1
        finally:
            c.close()
        return done

    batched = False
    for r in range(rounds):
        with ThreadPoolExecutor(threads) as pool:
            futures = [pool.submit(worker, t, r) for t in range(threads)]
            assert sum(f.result(timeout=120) for f in futures) == threads * per_thread
        assert not mismatches, mismatches[:10]
        # Fewer onnxruntime calls than requests: some calls served several requests at once.
        count, _ = batch_size_histogram(server)
        if count - count0 < threads * per_thread * (r + 1):
            batched = True
            break
    assert batched, "the dynamic batcher never merged concurrent requests, so the per-request split was not exercised"


def test_async_infer_on_one_client(server, reference):
    """The client's own concurrency: async_infer on a pool of 4 connections (greenlets)."""
    c = tritonhttp.InferenceServerClient(server.url, concurrency=4, connection_timeout=TIMEOUT_S,
                                         network_timeout=TIMEOUT_S)
    try:
        xs = [images(1 + i % 2, seed=500 + i) for i in range(12)]
        pending = [c.async_infer(MODEL, [make_input(x, i % 2 == 0)], request_id=str(i)) for i, x in enumerate(xs)]
        for i, (x, p) in enumerate(zip(xs, pending)):
            result = p.get_result(timeout=TIMEOUT_S)
            assert result.get_response()["id"] == str(i)
            np.testing.assert_allclose(result.as_numpy(OUTPUT), reference(x), atol=ATOL)
    finally:
        c.close()


def test_asyncio_client(server, reference):
    """tritonclient.http.aio (aiohttp): health, metadata and concurrent infers from one event loop."""
    aio = pytest.importorskip("tritonclient.http.aio")
    import asyncio

    async def scenario():
        c = aio.InferenceServerClient(server.url, conn_timeout=TIMEOUT_S)
        try:
            assert await c.is_server_ready()
            assert await c.is_model_ready(MODEL)
            assert (await c.get_model_metadata(MODEL))["name"] == MODEL
            xs = [images(1, seed=900 + i) for i in range(16)]

            async def one(i: int, x: np.ndarray):
                inp = aio.InferInput(INPUT, list(x.shape), "FP32")
                inp.set_data_from_numpy(x, binary_data=i % 2 == 0)
                return await c.infer(MODEL, [inp], outputs=[aio.InferRequestedOutput(OUTPUT, binary_data=i % 3 == 0)])

            results = await asyncio.gather(*(one(i, x) for i, x in enumerate(xs)))
            for x, result in zip(xs, results):
                np.testing.assert_allclose(result.as_numpy(OUTPUT), reference(x), atol=ATOL)
        finally:
            await c.close()

    asyncio.run(asyncio.wait_for(scenario(), timeout=120))


# -- known gaps ------------------------------------------------------------------------------------

@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_classification_extension_class_count(client, reference, binary):
    x = images(2, seed=6)
    out = tritonhttp.InferRequestedOutput(OUTPUT, binary_data=binary, class_count=3)
    result = client.infer(MODEL, [make_input(x, True)], outputs=[out])
    got = result.as_numpy(OUTPUT)
    assert got.shape == (2, 3)
    top = np.argsort(-reference(x), axis=1)[:, :3]
    for row, want in zip(got, top):
        entries = [(e.decode() if isinstance(e, bytes) else str(e)).split(":") for e in row]
        assert [int(e[1]) for e in entries] == list(want)


@pytest.mark.parametrize("algorithm", ["gzip", "deflate"])
def test_request_compression(client, reference, algorithm):
    x = images(1, seed=7)
    result = client.infer(MODEL, [make_input(x, True)], request_compression_algorithm=algorithm)
    np.testing.assert_allclose(result.as_numpy(OUTPUT), reference(x), atol=ATOL)
