"""Bad client input: every case gets a 4xx with an `{"error": ...}` message naming the field, never a 500,
and the server keeps serving afterwards. Also the body-size limit (413) and the API key (401).

All the malformed requests go to ONE server (a module-scoped fixture), one after the other, followed by a
good request that must still succeed; each case is then checked by its own parametrized test.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import zlib

import numpy as np
import orjson
import pytest

from tests.service.conftest import RepoWriter, b64, binary_body, images, infer_json, png_bytes, serving

MAX_BODY = 256 * 1024
GOOD_X = images(1, seed=123)
GOOD = infer_json(GOOD_X)
INP = GOOD["inputs"][0]
PIXELS = np.random.default_rng(0).integers(0, 256, (28, 28)).tolist()


def with_input(**changes) -> dict:
    spec = {**INP, **changes}
    return {"inputs": [{k: v for k, v in spec.items() if v is not ...}]}


def raw_binary(header: dict, blob: bytes, header_length: int | str | None = None) -> dict:
    head = orjson.dumps(header)
    n = len(head) if header_length is None else header_length
    return {"content": head + blob, "headers": {"Inference-Header-Content-Length": str(n)}}


RAW_784 = GOOD_X.astype("<f4").tobytes()
BIN_SPEC = {"name": "input", "shape": [1, 1, 28, 28], "datatype": "FP32", "parameters": {"binary_data_size": 3136}}
INFER = "/v2/models/lin/infer"
CLASSIFY = "/v1/models/lin/classify"


def case(id, method, path, kw=None, status=400, words=(), bug=None):
    marks = [pytest.mark.xfail(strict=True, raises=AssertionError, reason=f"bug: {bug}")] if bug else []
    return pytest.param((method, path, kw or {}, status, tuple(words)), id=id, marks=marks)


CASES = [
    # -- unknown things: 404 ----------------------------------------------------------------------------
    case("unknown-model", "POST", "/v2/models/nope/infer", {"json": GOOD}, 404, ['\"nope\"']),
    case("unknown-version", "POST", "/v2/models/lin/versions/9/infer", {"json": GOOD}, 404, ["version 9"]),
    case("unknown-model-metadata", "GET", "/v2/models/nope", None, 404, ['\"nope\"']),
    case("unknown-model-ready", "GET", "/v2/models/nope/ready", None, 404, ['\"nope\"']),
    case("unknown-version-metadata", "GET", "/v2/models/lin/versions/9", None, 404, ["version 9"]),
    case("unknown-version-ready", "GET", "/v2/models/lin/versions/9/ready", None, 404, ["version 9"]),
    case("unknown-model-classify", "POST", "/v1/models/nope/classify", {"json": {"arrays": [PIXELS]}}, 404, ['\"nope\"']),
    case("unknown-model-load", "POST", "/v2/repository/models/nope/load", None, 404, ['\"nope\"']),
    case("unknown-model-unload", "POST", "/v2/repository/models/nope/unload", None, 404, ['\"nope\"']),
    case("unknown-route", "GET", "/v2/nothing/here", None, 404, ["Not Found"]),
    case("wrong-method", "GET", INFER, None, 405, ["Method Not Allowed"]),
    case("version-not-an-integer", "GET", "/v2/models/lin/versions/one", None, 400,
         ['path parameter "version" must be an integer, got "one"']),
    case("version-not-an-integer-infer", "POST", "/v2/models/lin/versions/1.5/infer", {"json": GOOD}, 400, ["version"]),
    case("version-zero", "GET", "/v2/models/lin/versions/0/ready", None, 400, ['"version" must be at least 1']),
    # -- the body as a whole ------------------------------------------------------------------------------
    case("bad-json", "POST", INFER, {"content": b'{"inputs": [{"name": "input",'}, 400, ["not valid JSON"]),
    case("not-utf8", "POST", INFER, {"content": b"\xff\xfe\x00"}, 400, ["not valid JSON"]),
    case("empty-body", "POST", INFER, {"content": b""}, 400, ["not valid JSON"]),
    case("non-object-body", "POST", INFER, {"json": [1, 2, 3]}, 400, ["JSON object"]),
    case("no-inputs", "POST", INFER, {"json": {"outputs": []}}, 400, ['\"inputs\"']),
    case("empty-inputs", "POST", INFER, {"json": {"inputs": []}}, 400, ['\"inputs\"']),
    case("inputs-not-a-list", "POST", INFER, {"json": {"inputs": {"input": INP}}}, 400, ['\"inputs\"']),
    case("input-not-an-object", "POST", INFER, {"json": {"inputs": [5]}}, 400, ["inputs[0]"]),
    case("input-without-name", "POST", INFER, {"json": with_input(name=...)}, 400, ["inputs[0]", "name"]),
    case("duplicate-input", "POST", INFER, {"json": {"inputs": [INP, INP]}}, 400, ['\"input\"', "twice"]),
    case("wrong-input-name", "POST", INFER, {"json": with_input(name="image")}, 400, ['["input"]', '["image"]']),
    case("extra-input", "POST", INFER, {"json": {"inputs": [INP, {**INP, "name": "more"}]}}, 400, ['\"more\"']),
    # -- one tensor -----------------------------------------------------------------------------------------
    case("wrong-shape", "POST", INFER, {"json": with_input(shape=[1, 1, 27, 28], data=[0.0] * 756)}, 400,
         ['\"input\"', "shape", "[1, 1, 27, 28]"]),
    case("wrong-rank", "POST", INFER, {"json": with_input(shape=[1, 784])}, 400, ['\"input\"', "shape"]),
    case("negative-dimension", "POST", INFER, {"json": with_input(shape=[-1, 1, 28, 28])}, 400, ["shape"]),
    case("shape-not-a-list", "POST", INFER, {"json": with_input(shape="1,1,28,28")}, 400, ["shape"]),
    case("wrong-datatype", "POST", INFER, {"json": with_input(datatype="INT64", data=[0] * 784)}, 400,
         ['\"input\"', "datatype", "FP32"]),
    case("unsupported-datatype", "POST", INFER, {"json": with_input(datatype="BYTES")}, 400, ["datatype", '\"BYTES\"']),
    case("missing-datatype", "POST", INFER, {"json": with_input(datatype=...)}, 400, ["datatype"]),
    case("wrong-element-count", "POST", INFER, {"json": with_input(data=[0.0] * 10)}, 400, ["10 elements", "784"]),
    case("missing-data", "POST", INFER, {"json": with_input(data=...)}, 400, ['\"input\"', "no data"]),
    case("data-not-numbers", "POST", INFER, {"json": with_input(data=["x"] * 784)}, 400, ["data", "FP32"]),
    case("data-ragged", "POST", INFER, {"json": with_input(data=[[1.0], [1.0, 2.0]])}, 400, ["data"]),
    case("int-out-of-range", "POST", INFER, {"json": with_input(datatype="UINT8", data=[-1] * 784)}, 400, ["UINT8"]),
    case("empty-batch", "POST", INFER, {"json": with_input(shape=[0, 1, 28, 28], data=[])}, 400, ['\"input\"', "empty"]),
    case("too-many-rows", "POST", INFER, {"json": infer_json(images(9))}, 400, ["9 rows", "max_batch_size 8"]),
    case("unknown-output", "POST", INFER, {"json": {**GOOD, "outputs": [{"name": "nope"}]}}, 400, ['\"nope\"', "logits"]),
    # -- binary tensor extension ------------------------------------------------------------------------------
    case("header-length-not-a-number", "POST", INFER, raw_binary({"inputs": [BIN_SPEC]}, RAW_784, "abc"), 400,
         ["Inference-Header-Content-Length", '\"abc\"']),
    case("header-length-past-the-body", "POST", INFER, raw_binary({"inputs": [BIN_SPEC]}, RAW_784, 10**6), 400,
         ["Inference-Header-Content-Length"]),
    case("header-length-zero", "POST", INFER, raw_binary({"inputs": [BIN_SPEC]}, RAW_784, 0), 400,
         ["Inference-Header-Content-Length"]),
    case("header-length-negative", "POST", INFER, raw_binary({"inputs": [BIN_SPEC]}, RAW_784, -5), 400,
         ["Inference-Header-Content-Length"]),
    case("header-length-cuts-the-json", "POST", INFER, raw_binary({"inputs": [BIN_SPEC]}, RAW_784, 7), 400,
         ["inference header", "JSON"]),
    case("binary-size-does-not-match-shape", "POST", INFER,
         raw_binary({"inputs": [{**BIN_SPEC, "shape": [1, 1, 28, 27]}]}, RAW_784), 400,
         ["binary_data_size 3136", "[1, 1, 28, 27]"]),
    case("binary-size-runs-past-the-body", "POST", INFER,
         raw_binary({"inputs": [{**BIN_SPEC, "parameters": {"binary_data_size": 3136}}]}, RAW_784[:100]), 400,
         ["binary_data_size", "runs past"]),
    case("binary-size-negative", "POST", INFER,
         raw_binary({"inputs": [{**BIN_SPEC, "parameters": {"binary_data_size": -4}}]}, RAW_784), 400,
         ["binary_data_size"]),
    case("binary-bytes-unclaimed", "POST", INFER, raw_binary({"inputs": [BIN_SPEC]}, RAW_784 + b"\0" * 8), 400,
         ["8 bytes", "unclaimed"]),
    case("binary-without-header-length", "POST", INFER, {"content": binary_body([("input", "FP32", GOOD_X)])[0]}, 400,
         ["JSON"]),
    # -- classify -----------------------------------------------------------------------------------------------
    case("classify-undecodable-image", "POST", CLASSIFY, {"json": {"images": [b64(b"certainly not a PNG")]}}, 400,
         ["images[0]", "decodable"]),
    case("classify-bad-base64", "POST", CLASSIFY, {"json": {"images": ["%%% not base64 %%%"]}}, 400,
         ["images[0]", "base64"]),
    case("classify-image-not-a-string", "POST", CLASSIFY, {"json": {"images": [42]}}, 400,
         ["images[0] must be a string, got 42"]),
    case("classify-second-image-bad", "POST", CLASSIFY,
         {"json": {"images": [b64(png_bytes(np.zeros((28, 28), np.uint8))), b64(b"GIF89a garbage")]}}, 400,
         ["images[1]"]),
    case("classify-neither-images-nor-arrays", "POST", CLASSIFY, {"json": {"top_k": 3}}, 400, ["images", "arrays"]),
    case("classify-both-images-and-arrays", "POST", CLASSIFY, {"json": {"images": [], "arrays": []}}, 400,
         ["exactly one"]),
    case("classify-images-not-a-list", "POST", CLASSIFY, {"json": {"images": "abc"}}, 400, ['"images"', "list"]),
    case("classify-no-images", "POST", CLASSIFY, {"json": {"arrays": []}}, 400, ['"arrays" is empty']),
    case("classify-unknown-field", "POST", CLASSIFY, {"json": {"arrays": [PIXELS], "topk": 2}}, 400,
         ['"topk" is not a known field (known: arrays, top_k)']),
    # Messages show what came in as JSON: true, not True; "3", not '3'; [2, 2], not (2, 2).
    case("classify-top-k-boolean", "POST", CLASSIFY, {"json": {"arrays": [PIXELS], "top_k": True}}, 400,
         ["top_k", "got true"]),
    case("classify-top-k-string", "POST", CLASSIFY, {"json": {"arrays": [PIXELS], "top_k": "3"}}, 400,
         ["top_k", 'got "3"']),
    case("classify-array-wrong-shape", "POST", CLASSIFY, {"json": {"arrays": [[[1, 2], [3, 4]]]}}, 400,
         ["arrays[0]", "shape", "got [1, 2, 2]"]),
    case("classify-array-not-numbers", "POST", CLASSIFY, {"json": {"arrays": [[["a"] * 28] * 28]}}, 400, ["arrays[0]"]),
    case("classify-too-many-images", "POST", CLASSIFY, {"json": {"arrays": [PIXELS] * 9}}, 400, ["max_batch_size"]),
    case("classify-top-k-not-an-integer-query", "POST", CLASSIFY + "?top_k=three", {"json": {"arrays": [PIXELS]}}, 400,
         ['query parameter "top_k" must be an integer, got "three"']),
    case("classify-top-k-not-an-integer-body", "POST", CLASSIFY, {"json": {"arrays": [PIXELS], "top_k": "3"}}, 400,
         ["top_k"]),
    case("classify-top-k-negative", "POST", CLASSIFY + "?top_k=-2", {"json": {"arrays": [PIXELS]}}, 400, ["top_k"]),
    case("classify-top-k-zero-query", "POST", CLASSIFY + "?top_k=0", {"json": {"arrays": [PIXELS]}}, 400, ["top_k"]),
    case("classify-top-k-zero-body", "POST", CLASSIFY, {"json": {"arrays": [PIXELS], "top_k": 0}}, 400, ["top_k"]),
    case("classify-bad-json", "POST", CLASSIFY, {"content": b"{images"}, 400, ["JSON"]),
    case("classify-non-object-body", "POST", CLASSIFY, {"json": ["x"]}, 400, ["JSON object"]),
    case("classify-multipart-without-files", "POST", CLASSIFY, {"data": {"other": "x"}, "files": {"doc": ("a", b"1")}},
         400, ['\"files\"']),
    case("classify-multipart-undecodable-file", "POST", CLASSIFY,
         {"files": [("files", ("a.png", b"garbage", "image/png"))]}, 400, ["files[0]", "a.png"]),
    case("classify-multipart-text-instead-of-file", "POST", CLASSIFY,
         {"data": {"files": "hello"}, "files": {"doc": ("a", b"1")}}, 400, ["files[0]", "file upload"]),
    case("classify-multipart-without-boundary", "POST", CLASSIFY,
         {"content": b"xx", "headers": {"Content-Type": "multipart/form-data"}}, 400, ["boundary"]),
    # -- repository index body ----------------------------------------------------------------------------------
    case("index-body-not-an-object", "POST", "/v2/repository/index", {"json": [True]}, 400, ["JSON object"]),
    case("index-body-bad-json", "POST", "/v2/repository/index", {"content": b"{ready"}, 400, ["index body", "JSON"]),
    case("index-ready-not-a-boolean", "POST", "/v2/repository/index", {"json": {"ready": "yes"}}, 400,
         ['"ready" must be true or false, got "yes"']),
    case("load-with-config-override", "POST", "/v2/repository/models/lin/load",
         {"json": {"parameters": {"config": "{}"}}}, 400, ['"parameters" is not supported']),
    case("unload-unknown-parameter", "POST", "/v2/repository/models/lin/unload",
         {"json": {"parameters": {"unload_all": True}}}, 400, ["parameters.unload_all is not a known field"]),
    # -- malformed fields that once reached a 500 ---------------------------------------------------------
    case("input-parameters-not-an-object", "POST", INFER, {"json": with_input(parameters=["binary"])}, 400,
         ["parameters"]),
    case("request-parameters-not-an-object", "POST", INFER, {"json": {**GOOD, "parameters": 5}}, 400,
         ["parameters"]),
    case("output-parameters-not-an-object", "POST", INFER,
         {"json": {**GOOD, "outputs": [{"name": "logits", "parameters": "binary"}]}}, 400, ["parameters"]),
    case("output-name-not-a-string", "POST", INFER, {"json": {**GOOD, "outputs": [{"name": ["logits"]}]}}, 400,
         ["outputs"]),
    case("output-without-a-name-next-to-an-unknown-one", "POST", INFER,
         {"json": {**GOOD, "outputs": [{"name": "nope"}, {}]}}, 400, ["output"]),
    case("datatype-not-a-string", "POST", INFER, {"json": with_input(datatype=["FP32"])}, 400, ["datatype"]),
    case("shape-element-count-overflows", "POST", INFER, {"json": with_input(shape=[2**32, 2**32], data=[])}, 400,
         ["shape"]),
    case("binary-shape-element-count-overflows", "POST", INFER,
         raw_binary({"inputs": [{**BIN_SPEC, "shape": [2**32, 2**32], "parameters": {"binary_data_size": 0}}]}, b""),
         400, ["shape"]),
    case("classification-count-not-an-integer", "POST", INFER,
         {"json": {**GOOD, "outputs": [{"name": "logits", "parameters": {"classification": "3"}}]}}, 400,
         ["classification"]),
    case("classification-count-zero", "POST", INFER,
         {"json": {**GOOD, "outputs": [{"name": "logits", "parameters": {"classification": 0}}]}}, 400,
         ["classification"]),
    case("inputs-disagree-on-rows", "POST", "/v2/models/pair/infer",
         {"json": {"inputs": [{"name": "a", "shape": [2, 10], "datatype": "FP32", "data": [0.0] * 20},
                              {"name": "b", "shape": [3, 10], "datatype": "FP32", "data": [0.0] * 30}]}},
         400, ["batch"]),
]


@pytest.fixture(scope="module")
def responses(tmp_path_factory):
    """Send every case to one server, in order, then a good request; return {case id: response}."""
    repo = RepoWriter(tmp_path_factory.mktemp("bad-input") / "models")
    repo.add("lin", 1, max_batch_size=8).add("pair", 1, "two_inputs")

    async def main():
        async with serving(repo.root, max_body_bytes=MAX_BODY) as (client, app):
            got = {}
            for p in CASES:
                method, path, kw, _, _ = p.values[0]
                got[p.id] = await client.request(method, path, **kw)
            got["good-after-everything"] = await client.post(INFER, json=GOOD)
            got["health-after-everything"] = await client.get("/v2/health/ready")
            return got

    with pytest.MonkeyPatch.context() as mp:
        for key in [k for k in os.environ if k.startswith("ZOOSERVE_")]:
            mp.delenv(key)
        got = asyncio.run(asyncio.wait_for(main(), 60))
    got["_reference"] = repo.reference("lin", 1, {"input": GOOD_X})["logits"]
    return got


@pytest.mark.parametrize("spec", CASES)
def test_bad_input_is_a_clear_client_error(responses, spec, request):
    method, path, kw, status, words = spec
    resp = responses[request.node.callspec.id]
    assert resp.status_code != 500, f"{method} {path} -> 500 {resp.text[:200]}"
    assert resp.status_code == status, resp.text[:300]
    doc = resp.json()
    assert set(doc) == {"error"} and isinstance(doc["error"], str) and doc["error"]
    for word in words:
        assert word in doc["error"], (word, doc["error"])


def test_server_still_serves_after_all_the_bad_input(responses):
    good = responses["good-after-everything"]
    assert good.status_code == 200
    out = good.json()["outputs"][0]
    np.testing.assert_allclose(np.asarray(out["data"], np.float32).reshape(out["shape"]), responses["_reference"],
                               rtol=1e-5, atol=1e-5)
    assert responses["health-after-everything"].status_code == 200


# -- 413: body size -----------------------------------------------------------------------------------------

def test_body_over_the_limit_is_413_with_content_length_and_chunked(make_repo, serve):
    repo = make_repo(("lin", 1))
    limit = 16 * 1024
    good = orjson.dumps(infer_json(images(1)))
    assert len(good) < limit

    async def chunks(n: int, size: int):
        for _ in range(n):
            yield b" " * size
            await asyncio.sleep(0)

    async def body(client, app):
        announced = await client.post(INFER, content=b" " * (limit + 1))
        chunked = await client.post(INFER, content=chunks(8, 4096))
        multipart = await client.post(CLASSIFY, files=[("files", ("big.png", b"\0" * (2 * limit), "image/png"))])
        at_limit = await client.post(INFER, content=b" " * limit)  # not over: parsed, and rejected as JSON
        return announced, chunked, multipart, at_limit, await client.post(INFER, content=good)

    announced, chunked, multipart, at_limit, after = serve(repo.root, body, max_body_bytes=limit)
    for resp in (announced, chunked, multipart):
        assert resp.status_code == 413, resp.text
        assert "limit" in resp.json()["error"] and str(limit) in resp.json()["error"]
    assert chunked.request.headers.get("transfer-encoding") == "chunked"  # really no Content-Length
    assert at_limit.status_code == 400
    assert after.status_code == 200


# -- 401: API key -----------------------------------------------------------------------------------------

def test_api_key(make_repo, serve):
    repo = make_repo(("lin", 1))
    key = "s3cret-key"

    async def body(client, app):
        def infer(headers):
            return client.post(INFER, json=GOOD, headers=headers)

        return {
            "none": await infer({}),
            "wrong-x-api-key": await infer({"X-API-Key": "nope"}),
            "wrong-bearer": await infer({"Authorization": "Bearer nope"}),
            "basic-scheme": await infer({"Authorization": f"Basic {key}"}),
            "prefix-of-key": await infer({"X-API-Key": key[:-1]}),
            "bearer": await infer({"Authorization": f"Bearer {key}"}),
            "bearer-lowercase": await infer({"Authorization": f"bearer {key}"}),
            "x-api-key": await infer({"X-API-Key": key}),
            "metadata-without-key": await client.get("/v2/models/lin"),
            "server-metadata-without-key": await client.get("/v2"),
            "live": await client.get("/v2/health/live"),
            "ready": await client.get("/v2/health/ready"),
            "metrics": await client.get("/metrics"),
        }

    got = serve(repo.root, body, api_key=key)
    for name in ("none", "wrong-x-api-key", "wrong-bearer", "basic-scheme", "prefix-of-key", "metadata-without-key",
                 "server-metadata-without-key"):
        assert got[name].status_code == 401, name
        assert "API key" in got[name].json()["error"]
        assert got[name].headers["www-authenticate"] == "Bearer"
    for name in ("bearer", "bearer-lowercase", "x-api-key", "live", "ready", "metrics"):
        assert got[name].status_code == 200, (name, got[name].text[:200])
    assert got["bearer"].json()["outputs"][0]["shape"] == [1, 10]


def test_cors_preflight_works_when_an_api_key_is_set(make_repo, serve):
    repo = make_repo(("lin", 1))
    origin = "http://ui.example"

    async def body(client, app):
        preflight = await client.options(INFER, headers={
            "Origin": origin, "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type"})
        denied = await client.post(INFER, json=GOOD, headers={"Origin": origin})
        return preflight, denied

    preflight, denied = serve(repo.root, body, api_key="k", cors_origins=[origin])
    assert preflight.status_code == 200, preflight.text
    assert preflight.headers.get("access-control-allow-origin") == origin
    assert denied.status_code == 401 and denied.headers.get("access-control-allow-origin") == origin



def test_compressed_bodies_are_inflated_under_the_size_limit(make_repo, serve):
    repo = make_repo(("lin", 1))
    good = json.dumps(GOOD).encode()
    headers = {"Content-Type": "application/json"}

    async def body(client, app):
        return {
            "gzip": await client.post(INFER, content=gzip.compress(good), headers={**headers, "Content-Encoding": "gzip"}),
            "deflate": await client.post(INFER, content=zlib.compress(good),
                                         headers={**headers, "Content-Encoding": "deflate"}),
            "bomb": await client.post(INFER, content=gzip.compress(b" " * 100_000),
                                      headers={**headers, "Content-Encoding": "gzip"}),
            "garbage": await client.post(INFER, content=b"not gzip", headers={**headers, "Content-Encoding": "gzip"}),
            "truncated": await client.post(INFER, content=gzip.compress(good)[:-12],
                                           headers={**headers, "Content-Encoding": "gzip"}),
            "brotli": await client.post(INFER, content=good, headers={**headers, "Content-Encoding": "br"}),
            "after": await client.post(INFER, json=GOOD),
        }

    got = serve(repo.root, body, max_body_bytes=len(good) + 1024)
    assert got["gzip"].status_code == 200 and got["deflate"].status_code == 200
    assert got["gzip"].json()["outputs"] == got["after"].json()["outputs"]
    assert got["bomb"].status_code == 413 and "inflates" in got["bomb"].json()["error"]
    assert got["garbage"].status_code == 400 and "gzip" in got["garbage"].json()["error"]
    assert got["truncated"].status_code == 400 and "truncated" in got["truncated"].json()["error"]
    assert got["brotli"].status_code == 400 and '\"br\"' in got["brotli"].json()["error"]
    assert got["after"].status_code == 200
