"""Every endpoint in service/routers, in process, with results checked against onnxruntime run directly
on the same ONNX file."""

from __future__ import annotations

import sys

import numpy as np
import orjson
import pytest
from PIL import Image

from service import __version__
from tests.service.conftest import (LABELS, b64, binary_body, decode_binary_response, images, infer_json, png_bytes,
                                    preprocess_like_card, softmax)

TOL = {"rtol": 1e-5, "atol": 1e-5}


@pytest.fixture
def repo(make_repo):
    """lin v1 + v2 (both served), duo (two outputs), bad (corrupt)."""
    return make_repo(("lin", 1), ("lin", 2), ("duo", 1, "two_outputs"), ("bad", 1, "corrupt"))


@pytest.fixture
def call(repo, serve):
    """call(*requests) -> responses: each request is (method, path, httpx keywords), all sent to one server."""

    def go(*requests, **settings):
        settings.setdefault("model_versions", {"lin": [1, 2]})

        async def body(client, app):
            return [await client.request(method, path, **kw) for method, path, kw in requests]

        return serve(repo.root, body, **settings)

    return go


def logits_of(doc: dict, name: str = "logits") -> np.ndarray:
    out = next(o for o in doc["outputs"] if o["name"] == name)
    return np.asarray(out["data"], np.float32).reshape(out["shape"])


# -- health and server metadata ----------------------------------------------------------------------------

def test_health_live_and_ready(call):
    live, ready = call(("GET", "/v2/health/live", {}), ("GET", "/v2/health/ready", {}))
    assert live.status_code == 200 and live.json() == {"live": True}
    assert ready.status_code == 200 and ready.json() == {"ready": True}


def test_not_ready_before_startup_and_without_any_serving_model(make_repo, serve):
    import asyncio

    import httpx

    from service.app import create_app
    from tests.service.conftest import settings_for

    only_broken = make_repo(("bad", 1, "corrupt"))

    async def no_lifespan():  # the app exists but its start-up has not run yet
        app = create_app(settings_for(only_broken.root))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
            return await client.get("/v2/health/live"), await client.get("/v2/health/ready")

    live, ready = asyncio.run(no_lifespan())
    assert live.status_code == 200 and ready.status_code == 503 and "not ready" in ready.json()["error"]

    async def body(client, app):
        return await client.get("/v2/health/ready")

    assert serve(only_broken.root, body).status_code == 503  # started, but nothing serves


def test_server_metadata(call):
    (meta,) = call(("GET", "/v2", {}))
    doc = meta.json()
    assert doc["name"] == "zooserve" and doc["version"] == __version__
    assert {"binary_tensor_data", "model_repository"} <= set(doc["extensions"])


# -- model metadata and readiness --------------------------------------------------------------------------

def test_model_metadata_without_and_with_version(call, repo):
    latest, v1 = call(("GET", "/v2/models/lin", {}), ("GET", "/v2/models/lin/versions/1", {}))
    card = orjson.loads((repo.path("lin", 2) / "model.json").read_bytes())
    doc = latest.json()
    assert doc["name"] == "lin" and doc["versions"] == ["1", "2"] and doc["state"] == "READY"
    assert doc["platform"] == "onnxruntime_onnx"
    assert doc["inputs"] == card["inputs"] and doc["outputs"] == card["outputs"]
    params = doc["parameters"]
    assert params["task"] == "image-classification" and params["family"] == "test/linear"
    assert params["labels"] == LABELS
    assert params["max_batch_size"] == card["batching"]["max_batch_size"]
    assert params["max_delay_ms"] == pytest.approx(card["batching"]["max_delay_ms"])
    assert params["execution_provider"] == "CPUExecutionProvider"
    assert "reason" not in doc
    assert v1.status_code == 200 and v1.json()["versions"] == ["1"] and v1.json()["state"] == "READY"


def test_batching_settings_override_the_card(call):
    (meta,) = call(("GET", "/v2/models/lin", {}), max_delay_ms=7.5, batching={"lin": {"max_batch_size": 3}})
    assert meta.json()["parameters"]["max_batch_size"] == 3  # per-model override
    assert meta.json()["parameters"]["max_delay_ms"] == pytest.approx(7.5)  # global override


def test_the_server_sets_the_gil_switch_interval_from_its_settings(make_repo, serve):
    before = sys.getswitchinterval()

    async def body(client, app):
        return sys.getswitchinterval()

    try:
        seen = serve(make_repo(("lin", 1)).root, body, gil_switch_interval_us=250)
    finally:
        sys.setswitchinterval(before)
    assert seen == pytest.approx(250e-6)


def test_model_ready_without_and_with_version(call):
    latest, v1, bad = call(("GET", "/v2/models/lin/ready", {}), ("GET", "/v2/models/lin/versions/1/ready", {}),
                           ("GET", "/v2/models/bad/ready", {}))
    assert latest.status_code == 200 and latest.json() == {"name": "lin", "version": "2", "ready": True}
    assert v1.status_code == 200 and v1.json() == {"name": "lin", "version": "1", "ready": True}
    assert bad.status_code == 503 and "UNAVAILABLE" in bad.json()["error"]


def test_v1_models_lists_every_version(call):
    (listing,) = call(("GET", "/v1/models", {}))
    doc = listing.json()
    assert doc["object"] == "list"
    rows = {(m["id"], m["version"]): m for m in doc["data"]}
    assert set(rows) == {("bad", 1), ("duo", 1), ("lin", 1), ("lin", 2)}
    assert rows[("lin", 2)]["state"] == "READY" and rows[("lin", 2)]["task"] == "image-classification"
    assert rows[("bad", 1)]["state"] == "UNAVAILABLE" and "onnxruntime cannot load" in rows[("bad", 1)]["reason"]
    assert all(m["object"] == "model" for m in doc["data"])


# -- infer ------------------------------------------------------------------------------------------------

def test_fastapi_infer_routes_document_and_answer_like_the_asgi_fast_path(repo, serve, monkeypatch):
    """FastPath answers V2 infer ahead of FastAPI; the FastAPI routes (OpenAPI, fallback) must agree."""
    from service.fastpath import FastPath

    x = images(3, seed=7)
    body, n = binary_body([("input", "FP32", x)], parameters={"binary_data_output": True})

    async def go(client, app):
        return [await client.post("/v2/models/lin/versions/1/infer", json=infer_json(x)),
                await client.post("/v2/models/lin/infer", content=body, headers={"Inference-Header-Content-Length": str(n)}),
                (await client.get("/openapi.json")).json()]

    fast_json, fast_bin, schema = serve(repo.root, go, model_versions={"lin": [1, 2]})

    async def passthrough(self, scope, receive, send):
        await self.app(scope, receive, send)

    monkeypatch.setattr(FastPath, "__call__", passthrough)  # every request reaches FastAPI's routes
    slow_json, slow_bin, _ = serve(repo.root, go, model_versions={"lin": [1, 2]})
    assert fast_json.json() == slow_json.json()
    assert fast_bin.content == slow_bin.content and fast_bin.headers["inference-header-content-length"] == \
        slow_bin.headers["inference-header-content-length"]
    assert {"/v2/models/{model}/infer", "/v2/models/{model}/versions/{version}/infer"} <= set(schema["paths"])


def test_the_fast_path_and_the_service_middleware_run_outside_fastapi_own_layers(repo, serve, monkeypatch):
    """service.app.Service: a V2 infer request goes through the service's middleware and FastPath only;
    FastAPI's own layers (server errors, exceptions, body limit) see just what FastPath leaves to them."""
    from starlette.middleware.errors import ServerErrorMiddleware

    seen: list[str] = []
    inner = ServerErrorMiddleware.__call__

    async def spy(self, scope, receive, send):
        seen.append(scope.get("path", scope["type"]))
        await inner(self, scope, receive, send)

    monkeypatch.setattr(ServerErrorMiddleware, "__call__", spy)

    async def go(client, app):
        seen.clear()  # the lifespan's start-up passed through
        infer = await client.post("/v2/models/lin/infer", json=infer_json(images(2, seed=1)))
        ready = await client.get("/v2/models/lin/ready")
        metrics = (await client.get("/metrics")).text
        return infer, ready, metrics

    infer, ready, metrics = serve(repo.root, go)
    assert infer.status_code == 200 and ready.status_code == 200
    # the infer request never reached FastAPI's stack (the lifespan's shutdown may follow the two others)
    assert seen[:2] == ["/v2/models/lin/ready", "/metrics"] and "/v2/models/lin/infer" not in seen
    # and the metrics middleware, now outside FastAPI, still labels the request with its model
    assert 'zooserve_requests_total{code="200",endpoint="/v2/models/{model}/infer",model="lin"}' in metrics


def test_infer_json_without_and_with_version_matches_onnxruntime(call, repo):
    x = images(5, seed=3)
    latest, v1 = call(("POST", "/v2/models/lin/infer", {"json": infer_json(x)}),
                      ("POST", "/v2/models/lin/versions/1/infer", {"json": infer_json(x)}))
    assert latest.status_code == 200 and latest.headers["content-type"].startswith("application/json")
    doc = latest.json()
    assert doc["model_name"] == "lin" and doc["model_version"] == "2"
    assert doc["outputs"][0]["datatype"] == "FP32" and doc["outputs"][0]["shape"] == [5, 10]
    np.testing.assert_allclose(logits_of(doc), repo.reference("lin", 2, {"input": x})["logits"], **TOL)
    assert v1.json()["model_version"] == "1"
    np.testing.assert_allclose(logits_of(v1.json()), repo.reference("lin", 1, {"input": x})["logits"], **TOL)
    assert "id" not in doc


def test_infer_echoes_the_request_id(call):
    resp, numeric = call(("POST", "/v2/models/lin/infer", {"json": infer_json(images(1), id="req-42")}),
                         ("POST", "/v2/models/lin/infer", {"json": infer_json(images(1), id=7)}))
    assert resp.json()["id"] == "req-42"
    assert numeric.json()["id"] == "7"


def test_infer_requested_outputs_subset(call, repo):
    x = images(3, seed=5)
    only_probs, both, default = call(
        ("POST", "/v2/models/duo/infer", {"json": infer_json(x, outputs=[{"name": "probabilities"}])}),
        ("POST", "/v2/models/duo/infer", {"json": infer_json(x, outputs=[{"name": "probabilities"},
                                                                          {"name": "logits"}])}),
        ("POST", "/v2/models/duo/infer", {"json": infer_json(x)}))
    ref = repo.reference("duo", 1, {"input": x})
    assert [o["name"] for o in only_probs.json()["outputs"]] == ["probabilities"]
    np.testing.assert_allclose(logits_of(only_probs.json(), "probabilities"), ref["probabilities"], **TOL)
    assert [o["name"] for o in both.json()["outputs"]] == ["probabilities", "logits"]  # in the order asked
    np.testing.assert_allclose(logits_of(both.json(), "logits"), ref["logits"], **TOL)
    assert {o["name"] for o in default.json()["outputs"]} == {"logits", "probabilities"}


def test_infer_binary_input_and_binary_output(call, repo):
    x = images(4, seed=9)
    body, head_len = binary_body([("input", "FP32", x)], id="bin-1",
                                 outputs=[{"name": "logits", "parameters": {"binary_data": True}}])
    (resp,) = call(("POST", "/v2/models/lin/infer",
                    {"content": body, "headers": {"Inference-Header-Content-Length": str(head_len),
                                                  "Content-Type": "application/octet-stream"}}))
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "application/octet-stream"
    n = int(resp.headers["inference-header-content-length"])
    head, arrays = decode_binary_response(resp.content, n)
    assert head["id"] == "bin-1" and head["model_version"] == "2"
    out = head["outputs"][0]
    assert out["parameters"]["binary_data_size"] == 4 * 10 * 4 and "data" not in out
    assert arrays["logits"].dtype == np.dtype("<f4") and arrays["logits"].shape == (4, 10)
    np.testing.assert_allclose(arrays["logits"], repo.reference("lin", 2, {"input": x})["logits"], **TOL)


def test_infer_binary_input_with_json_output(call, repo):
    x = images(2, seed=1)
    body, head_len = binary_body([("input", "FP32", x)])
    (resp,) = call(("POST", "/v2/models/lin/infer",
                    {"content": body, "headers": {"Inference-Header-Content-Length": str(head_len)}}))
    assert resp.status_code == 200 and "inference-header-content-length" not in resp.headers
    np.testing.assert_allclose(logits_of(resp.json()), repo.reference("lin", 2, {"input": x})["logits"], **TOL)


def test_infer_json_input_with_all_outputs_binary(call, repo):
    x = images(2, seed=2)
    (resp,) = call(("POST", "/v2/models/duo/infer",
                    {"json": infer_json(x, parameters={"binary_data_output": True})}))
    head, arrays = decode_binary_response(resp.content, int(resp.headers["inference-header-content-length"]))
    assert {o["name"] for o in head["outputs"]} == {"logits", "probabilities"}
    ref = repo.reference("duo", 1, {"input": x})
    for name in ("logits", "probabilities"):
        np.testing.assert_allclose(arrays[name], ref[name], **TOL)


def test_infer_hand_built_little_endian_binary_body(call, repo):
    """The extension's bytes are little-endian whatever the client's machine: built here without helpers."""
    x = images(1, seed=4)
    raw = x.astype("<f4").tobytes()
    head = orjson.dumps({"inputs": [{"name": "input", "shape": [1, 1, 28, 28], "datatype": "FP32",
                                     "parameters": {"binary_data_size": len(raw)}}]})
    (resp,) = call(("POST", "/v2/models/lin/infer",
                    {"content": head + raw, "headers": {"Inference-Header-Content-Length": str(len(head))}}))
    np.testing.assert_allclose(logits_of(resp.json()), repo.reference("lin", 2, {"input": x})["logits"], **TOL)


# -- repository extension -----------------------------------------------------------------------------------

def test_repository_index_all_and_ready_only(call):
    everything, empty_body, ready_only = call(("POST", "/v2/repository/index", {}),
                                              ("POST", "/v2/repository/index", {"json": {}}),
                                              ("POST", "/v2/repository/index", {"json": {"ready": True}}))
    rows = {(r["name"], r["version"]): r for r in everything.json()}
    assert set(rows) == {("bad", "1"), ("duo", "1"), ("lin", "1"), ("lin", "2")}
    assert rows[("bad", "1")]["state"] == "UNAVAILABLE" and "onnxruntime" in rows[("bad", "1")]["reason"]
    assert rows[("lin", "2")] == {"name": "lin", "version": "2", "state": "READY", "reason": ""}
    assert empty_body.json() == everything.json()
    assert {(r["name"], r["version"]) for r in ready_only.json()} == {("duo", "1"), ("lin", "1"), ("lin", "2")}
    assert all(r["state"] == "READY" for r in ready_only.json())


def test_repository_load_and_unload(call):
    unload, ready, load, infer = call(("POST", "/v2/repository/models/duo/unload", {}),
                                      ("GET", "/v2/models/duo/ready", {}),
                                      ("POST", "/v2/repository/models/duo/load", {}),
                                      ("POST", "/v2/models/duo/infer", {"json": infer_json(images(1))}))
    assert unload.status_code == 200 and unload.json() == {"name": "duo", "state": "UNAVAILABLE"}
    assert ready.status_code != 200
    assert load.status_code == 200 and load.json() == {"name": "duo", "versions": {"1": {"state": "READY",
                                                                                          "reason": ""}}}
    assert infer.status_code == 200


# -- classify ----------------------------------------------------------------------------------------------

def _expected_top(repo, version: int, imgs: list[Image.Image], k: int) -> list[list[tuple[str, float]]]:
    x = np.stack([preprocess_like_card(img) for img in imgs])
    probs = softmax(repo.reference("lin", version, {"input": x})["logits"])
    return [[(LABELS[j], float(p[j])) for j in np.argsort(-p)[:k]] for p in probs]


def _got_top(resp) -> list[list[tuple[str, float]]]:
    return [[(e["label"], e["probability"]) for e in pred] for pred in resp.json()["predictions"]]


def _assert_top(got, want):
    assert [[label for label, _ in row] for row in got] == [[label for label, _ in row] for row in want]
    np.testing.assert_allclose([[p for _, p in row] for row in got], [[p for _, p in row] for row in want],
                               rtol=1e-4, atol=1e-6)


def _pixels(seed: int, shape=(28, 28)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def test_classify_base64_png(call, repo):
    pix = [_pixels(0), _pixels(1)]
    (resp,) = call(("POST", "/v1/models/lin/classify", {"json": {"images": [b64(png_bytes(p)) for p in pix]}}))
    assert resp.status_code == 200
    doc = resp.json()
    assert doc["model"] == "lin" and doc["version"] == "2" and len(doc["predictions"]) == 2
    assert all(len(p) == 3 for p in doc["predictions"])  # default top_k
    for pred in doc["predictions"]:
        probs = [e["probability"] for e in pred]
        assert probs == sorted(probs, reverse=True) and all(0 <= q <= 1 for q in probs)
        assert all(LABELS[e["index"]] == e["label"] for e in pred)
    _assert_top(_got_top(resp), _expected_top(repo, 2, [Image.fromarray(p) for p in pix], 3))


def test_classify_jpeg_of_another_size_and_a_data_url(call, repo):
    rgb = np.random.default_rng(3).integers(0, 256, (30, 40, 3), dtype=np.uint8)  # RGB, 40x30: resized to 28x28
    jpeg = png_bytes(rgb, "JPEG")
    (resp,) = call(("POST", "/v1/models/lin/classify",
                    {"json": {"images": [b64(jpeg), "data:image/jpeg;base64," + b64(jpeg)]}}))
    assert resp.status_code == 200
    import io
    decoded = Image.open(io.BytesIO(jpeg))
    want = _expected_top(repo, 2, [decoded, decoded], 3)
    _assert_top(_got_top(resp), want)


def test_classify_arrays(call, repo):
    hw, chw = _pixels(5), _pixels(6)[None]
    (resp,) = call(("POST", "/v1/models/lin/classify", {"json": {"arrays": [hw.tolist(), chw.tolist()]}}))
    assert resp.status_code == 200
    _assert_top(_got_top(resp), _expected_top(repo, 2, [Image.fromarray(hw), Image.fromarray(chw[0])], 3))


def test_classify_multipart_files(call, repo):
    pix = [_pixels(7), _pixels(8), _pixels(9)]
    files = [("files", (f"img{i}.png", png_bytes(p), "image/png")) for i, p in enumerate(pix)]
    (resp,) = call(("POST", "/v1/models/lin/classify", {"files": files}))
    assert resp.status_code == 200 and len(resp.json()["predictions"]) == 3
    _assert_top(_got_top(resp), _expected_top(repo, 2, [Image.fromarray(p) for p in pix], 3))


def test_classify_top_k(call, repo):
    pix = _pixels(11)
    arrays = {"arrays": [pix.tolist()]}
    query, body_k, both, too_many = call(
        ("POST", "/v1/models/lin/classify?top_k=5", {"json": arrays}),
        ("POST", "/v1/models/lin/classify", {"json": {**arrays, "top_k": 2}}),
        ("POST", "/v1/models/lin/classify?top_k=1", {"json": {**arrays, "top_k": 4}}),
        ("POST", "/v1/models/lin/classify?top_k=50", {"json": arrays}))
    _assert_top(_got_top(query), _expected_top(repo, 2, [Image.fromarray(pix)], 5))
    assert len(body_k.json()["predictions"][0]) == 2
    assert len(both.json()["predictions"][0]) == 1  # the query parameter wins
    ten = too_many.json()["predictions"][0]
    assert len(ten) == 10 and sum(e["probability"] for e in ten) == pytest.approx(1.0, abs=1e-5)


# -- metrics ------------------------------------------------------------------------------------------------

def test_metrics_endpoint(call):
    _, metrics = call(("POST", "/v2/models/lin/infer", {"json": infer_json(images(1))}), ("GET", "/metrics", {}))
    assert metrics.status_code == 200 and metrics.headers["content-type"].startswith("text/plain")
    text = metrics.text
    for name in ("zooserve_requests_total", "zooserve_batch_size", "zooserve_model_ready"):
        assert f"# TYPE {name}" in text
