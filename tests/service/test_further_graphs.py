"""A card's further graphs (a VAE's decoder): served over V2 as `<name>.<role>` (metadata, ready, infer,
listed), loaded, unloaded and drained with their version, and a broken one fails only its own model."""

from __future__ import annotations

import asyncio

import numpy as np
import onnxruntime as ort
import pytest

from service.runtime.errors import ModelNotReady
from tests.service.conftest import RepoWriter, images, infer_json
from tests.service.generative_models import add_generative, fashion_repo


@pytest.fixture
def repo(tmp_path) -> RepoWriter:
    return fashion_repo(RepoWriter(tmp_path / "repo"))


def outputs(resp) -> dict[str, np.ndarray]:
    assert resp.status_code == 200, resp.text
    return {o["name"]: np.asarray(o["data"], np.float32).reshape(o["shape"]) for o in resp.json()["outputs"]}


def test_v2_serves_the_main_graph_and_the_decoder_as_its_own_model(repo, serve):
    x = images(2) * 0.1 + 0.5
    code = np.random.default_rng(1).normal(0, 1, (3, 8)).astype(np.float32)

    async def body(client, app):
        return {
            "main": await client.post("/v2/models/vae/infer", json=infer_json(x)),
            "decoder": await client.post("/v2/models/vae.decoder/infer", json=infer_json(code, name="code")),
            "versioned": await client.post("/v2/models/vae.decoder/versions/1/infer", json=infer_json(code, name="code")),
            "wrong": await client.post("/v2/models/vae.decoder/infer", json=infer_json(x)),
            "meta": await client.get("/v2/models/vae.decoder"),
            "ready": await client.get("/v2/models/vae.decoder/versions/1/ready"),
            "no_role": await client.get("/v2/models/vae.encoder"),
            "index": await client.post("/v2/repository/index"),
            "models": await client.get("/v1/models"),
            "gan": await client.post("/v2/models/dcgan/infer", json={"inputs": [
                {"name": "z", "datatype": "FP32", "shape": [1, 8], "data": [0.0] * 8},
                {"name": "label", "datatype": "INT64", "shape": [1], "data": [8]}]}),
        }

    r = serve(repo.root, body)
    want = repo.reference("vae", 1, {"input": x})
    got = outputs(r["main"])
    assert sorted(got) == ["code", "image", "log_var"]
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-5, atol=1e-6)
    dec = ort.InferenceSession(str(repo.path("vae") / "decoder.onnx"), providers=["CPUExecutionProvider"])
    for k in ("decoder", "versioned"):
        np.testing.assert_allclose(outputs(r[k])["image"], dec.run(["image"], {"code": code})[0], rtol=1e-5, atol=1e-6)
    assert r["decoder"].json()["model_name"] == "vae.decoder"
    assert r["wrong"].status_code == 400 and 'takes inputs ["code"]' in r["wrong"].json()["error"]
    meta = r["meta"].json()
    assert (meta["name"], meta["versions"], meta["state"]) == ("vae.decoder", ["1"], "READY")
    assert meta["inputs"] == [{"name": "code", "datatype": "FP32", "shape": [-1, 8]}]
    assert meta["outputs"] == [{"name": "image", "datatype": "FP32", "shape": [-1, 1, 28, 28]}]
    assert r["ready"].json()["ready"] is True
    assert r["no_role"].status_code == 404
    names = [row["name"] for row in r["index"].json()]
    assert names == ["ae", "ae.decoder", "dcgan", "lin", "vae", "vae.decoder"]
    # /v1/models lists what the task endpoints take: models, not their graphs
    assert {m["id"] for m in r["models"].json()["data"]} == {"ae", "dcgan", "lin", "vae"}
    assert outputs(r["gan"])["image"].shape == (1, 1, 28, 28)


@pytest.mark.parametrize("broken, words", [("corrupt", "decoder.onnx: onnxruntime cannot load it"),
                                           ("missing", "decoder.onnx is missing"),
                                           ("tampered", "decoder.onnx does not match its card")])
def test_a_broken_decoder_fails_only_its_own_model(tmp_path, serve, broken, words):
    writer = fashion_repo(RepoWriter(tmp_path / "repo"))
    add_generative(writer, "vae", "vae", broken=broken)

    async def body(client, app):
        return {p: await client.get(p) for p in ("/v2/models/vae/ready", "/v2/models/vae.decoder/ready",
                                                  "/v2/models/ae/ready", "/v2/models/ae.decoder/ready",
                                                  "/v2/models/dcgan/ready", "/v2/models/vae")}, \
            await client.post("/v1/models/vae/sample", json={"n": 1})

    ready, sampled = serve(writer.root, body)
    assert ready["/v2/models/vae/ready"].status_code == 503
    assert words in ready["/v2/models/vae/ready"].json()["error"]
    assert ready["/v2/models/vae.decoder/ready"].status_code == 503  # its version's state and reason
    assert words in ready["/v2/models/vae.decoder/ready"].json()["error"]
    assert ready["/v2/models/vae"].json()["state"] == "UNAVAILABLE" and words in ready["/v2/models/vae"].json()["reason"]
    assert all(ready[f"/v2/models/{m}/ready"].status_code == 200 for m in ("ae", "ae.decoder", "dcgan"))
    assert sampled.status_code == 503


def test_graphs_share_their_versions_lifetime_and_leases(repo, serve):
    async def body(client, app):
        models = app.state.repository
        old = models.get("vae").graphs["decoder"]
        lease = models.acquire("vae.decoder")  # holds the version "vae/1", not only its decoder
        unloading = asyncio.create_task(models.unload("vae"))
        await asyncio.sleep(0.1)
        held = unloading.done()
        lease.release()
        await unloading
        after_unload = await client.get("/v2/models/vae.decoder/ready")
        with pytest.raises(ModelNotReady):  # the drained decoder's batcher takes nothing more
            await old.infer({"code": np.zeros((1, 8), np.float32)}, timeout_s=1)
        assert (await client.post("/v2/repository/models/vae/load")).status_code == 200
        reloaded = await client.get("/v2/models/vae.decoder/ready")
        add_generative(RepoWriter(repo.root), "vae", "vae", version=2, seed=5)
        assert (await client.post("/v2/repository/models/vae/load")).status_code == 200
        meta = (await client.get("/v2/models/vae.decoder")).json()
        return held, after_unload, reloaded, meta

    held, after_unload, reloaded, meta = serve(repo.root, body)
    assert not held, "the unload did not wait for the lease on the decoder"
    assert after_unload.status_code == 503 and "unloaded by request" in after_unload.json()["error"]
    assert reloaded.status_code == 200
    assert (meta["versions"], meta["state"]) == (["2"], "READY")


def test_a_graph_opens_with_the_thread_policy_of_its_model(repo, serve):
    async def body(client, app):
        vae = app.state.repository.get("vae")
        return vae.session.intra_op_threads, vae.graphs["decoder"].session.intra_op_threads

    main, decoder = serve(repo.root, body, intra_op_threads=0)
    assert decoder == main >= 1
