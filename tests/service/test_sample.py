"""POST /v1/models/{m}/sample: seeded images from a conditional GAN's generator and a VAE's decoder graph.

The images are checked against onnxruntime run directly on the graph files with the codes zooserve.latent
draws for the seed, so the served images are the seed's images, whoever shares their batch."""

from __future__ import annotations

import asyncio
import base64
import io
import uuid

import numpy as np
import onnxruntime as ort
import pytest
from PIL import Image

from tests.service.conftest import RepoWriter, gate_model
from tests.service.generative_models import FASHION, add_generative, fashion_repo
from tests.service.test_service_metrics import delta, scrape
from zooserve.card import load_card
from zooserve.latent import draw, to_pixels

SAMPLE = "/v1/models/{}/sample"


@pytest.fixture
def repo(tmp_path) -> RepoWriter:
    return fashion_repo(RepoWriter(tmp_path / "repo"))


def expected(writer: RepoWriter, name: str, n: int, seed: int, classes: int | None = None) -> np.ndarray:
    """The seed's images (n, 28, 28) uint8: zooserve.latent's codes through the graph file, on its own."""
    card = load_card(writer.path(name))
    feeds = draw(card.latent, n, seed, classes=classes, labels=len(card.labels or ()))
    if card.latent.graph:
        sess = ort.InferenceSession(str(writer.path(name) / "decoder.onnx"), providers=["CPUExecutionProvider"])
        images = sess.run(["image"], feeds)[0]
    else:
        images = writer.reference(name, 1, feeds)["image"]
    return to_pixels(images, card.postprocess)


def pngs(doc: dict) -> np.ndarray:
    """The answer's base64 PNGs, each checked to be an 8-bit grey 28x28 PNG, as (n, 28, 28) uint8."""
    out = []
    for text in doc["images"]:
        img = Image.open(io.BytesIO(base64.b64decode(text, validate=True)))
        assert (img.format, img.mode, img.size) == ("PNG", "L", (28, 28))
        out.append(np.asarray(img))
    return np.stack(out)


def post_all(serve, root, requests, **settings):
    async def body(client, app):
        return [await client.post(SAMPLE.format(m), json=doc) for m, doc in requests]
    return serve(root, body, **settings)


def test_png_and_array_answers_are_the_seeds_images(repo, serve):
    gan_png, gan_array, vae_png, vae_array = post_all(serve, repo.root, [
        ("dcgan", {"n": 5, "seed": 1, "class": "Bag"}), ("dcgan", {"n": 5, "seed": 1, "class": 8, "format": "array"}),
        ("vae", {"n": 4, "seed": 7}), ("vae", {"n": 4, "seed": 7, "format": "array"})])
    assert all(r.status_code == 200 for r in (gan_png, gan_array, vae_png, vae_array))
    want = expected(repo, "dcgan", 5, 1, classes=8)
    np.testing.assert_array_equal(pngs(gan_png.json()), want)
    np.testing.assert_array_equal(np.asarray(gan_array.json()["images"], np.uint8), want)
    assert gan_png.json()["classes"] == ["Bag"] * 5 and gan_png.json()["seed"] == 1
    want = expected(repo, "vae", 4, 7)
    np.testing.assert_array_equal(pngs(vae_png.json()), want)
    arrays = vae_array.json()["images"]
    assert np.asarray(arrays).shape == (4, 28, 28) and all(0 <= v <= 255 for v in np.ravel(arrays))
    np.testing.assert_array_equal(np.asarray(arrays, np.uint8), want)
    assert "classes" not in vae_png.json() and vae_png.json()["model"] == "vae"


def test_without_a_class_the_seed_draws_the_classes_and_without_a_seed_the_server_draws_one(repo, serve):
    drawn, again, fresh = post_all(serve, repo.root, [("dcgan", {"n": 64, "seed": 3}), ("dcgan", {"n": 10, "seed": 3}),
                                                      ("dcgan", {"n": 2})], max_batch_size=64)
    card = load_card(repo.path("dcgan"))
    classes = draw(card.latent, 64, 3, labels=10)["label"]
    assert drawn.json()["classes"] == [FASHION[i] for i in classes]
    assert len(set(drawn.json()["classes"])) > 5  # drawn over the labels, not one class
    assert again.json()["classes"] == drawn.json()["classes"][:10]  # n=10 is the first 10 of n=64
    assert again.json()["images"] == drawn.json()["images"][:10]
    seed = fresh.json()["seed"]
    assert isinstance(seed, int) and 0 <= seed < 2**63
    (replay,) = post_all(serve, repo.root, [("dcgan", {"n": 2, "seed": seed})])
    assert replay.json()["images"] == fresh.json()["images"]


@pytest.mark.parametrize("model", ["dcgan", "vae"])
def test_the_same_seed_gives_the_same_bytes_whatever_shares_the_batch(repo, serve, model):
    """Requests of different n and seeds queue while the model is held, run as one batch, and each gets the
    images it gets alone."""
    asks = [{"n": 5, "seed": 1}, {"n": 12, "seed": 2}, {"n": 3, "seed": 1}, {"n": 9, "seed": 99}]

    async def body(client, app):
        batcher = app.state.repository.get(model).decoder.batcher
        real, rows = batcher.run_fn, []
        gate, entered = gate_model(app.state.repository.get(model).decoder)
        gated = batcher.run_fn
        batcher.run_fn = lambda feeds: rows.append(len(next(iter(feeds.values())))) or gated(feeds)
        first = asyncio.ensure_future(client.post(SAMPLE.format(model), json={"n": 1, "seed": 5}))
        while not entered.is_set():  # the first batch holds the model
            await asyncio.sleep(0.005)
        together = [asyncio.ensure_future(client.post(SAMPLE.format(model), json=a)) for a in asks]
        while batcher.depth < len(asks):
            await asyncio.sleep(0.005)
        gate.set()
        answers = [r.json() for r in await asyncio.gather(first, *together)]
        batcher.run_fn = real
        alone = [(await client.post(SAMPLE.format(model), json=a)).json() for a in asks]
        return rows, answers[1:], alone

    rows, together, alone = serve(repo.root, body, max_batch_size=32, max_delay_ms=50)
    assert rows == [1, 29]  # the four shared one batch
    for a, t, s in zip(asks, together, alone):
        assert t["images"] == s["images"], a
        np.testing.assert_array_equal(pngs(t), expected(repo, model, a["n"], a["seed"]))
    assert together[2]["images"] == together[0]["images"][:3]  # seed 1: n=3 is the first 3 of n=5


BAD = [  # (model, body, status, words the error names)
    ("dcgan", {"n": 0}, 400, ['"n" must be at least 1']),
    ("dcgan", {"n": 17}, 400, ['"n" must be an integer from 1 to 16', "max_batch_size"]),
    ("dcgan", {"n": 5000}, 400, ['"n" must be at most 1024']),
    ("dcgan", {"n": 2.5}, 400, ['"n" must be an integer']),
    ("dcgan", {"seed": "1"}, 400, ['"seed" must be an integer, got "1"']),
    ("dcgan", {"seed": -1}, 400, ['"seed" must be at least 0']),
    ("dcgan", {"seed": 2**63}, 400, ['"seed" must be less than']),
    ("dcgan", {"class": "Hat"}, 400, ['"class" must be one of the labels', '"Ankle boot"', '"Hat"']),
    ("dcgan", {"class": 10}, 400, ['"class" must be a label or an index from 0 to 9, got 10']),
    ("dcgan", {"class": True}, 400, ['"class" must be a label (a string) or its index']),
    ("dcgan", {"format": "gif"}, 400, ['"format" must be']),
    ("dcgan", {"count": 3}, 400, ['"count" is not a known field']),
    ("vae", {"class": "Bag"}, 400, ["unconditional autoencoder", 'leave out "class"']),
    ("ae", {"n": 2}, 400, ["without a prior", "/reconstruct and /embed"]),
    ("lin", {"n": 2}, 400, ["is an image classifier", "/sample serves"]),
    ("vae.decoder", {"n": 2}, 400, ['the decoder graph of "vae"', "V2 inference only"]),
    ("nope", {"n": 2}, 404, ['unknown model "nope"']),
]


def test_bad_requests_get_a_4xx_naming_the_problem(repo, serve):
    answers = post_all(serve, repo.root, [(model, doc) for model, doc, _, _ in BAD])
    for (model, doc, status, words), resp in zip(BAD, answers):
        assert resp.status_code == status, (model, doc, resp.text)
        for w in words:
            assert w in resp.json()["error"], (w, resp.json())


def test_an_empty_body_samples_one_image(repo, serve):
    async def body(client, app):
        return await client.post(SAMPLE.format("dcgan"), content=b"")
    resp = serve(repo.root, body)
    assert resp.status_code == 200 and len(resp.json()["images"]) == 1 and len(resp.json()["classes"]) == 1


def test_image_requests_are_counted_and_batched_under_the_graph_that_ran(tmp_path, serve):
    vae = f"vae-{uuid.uuid4().hex[:6]}"
    writer = RepoWriter(tmp_path / "repo")
    add_generative(writer, vae, "vae")
    pixels = {"arrays": [[[0] * 28] * 28] * 2}

    async def body(client, app):
        before = await scrape(client)
        for n in (1, 3):
            assert (await client.post(SAMPLE.format(vae), json={"n": n})).status_code == 200
        assert (await client.post(SAMPLE.format(vae), json={"n": 0})).status_code == 400
        for task in ("reconstruct", "embed"):
            assert (await client.post(f"/v1/models/{vae}/{task}", json=pixels)).status_code == 200
        return before, await scrape(client)

    before, after = serve(writer.root, body)
    endpoint = "/v1/models/{model}/sample"
    assert delta(before, after, "zooserve_requests_total", model=vae, endpoint=endpoint, code="200") == 2
    assert delta(before, after, "zooserve_requests_total", model=vae, endpoint=endpoint, code="400") == 1
    assert delta(before, after, "zooserve_request_duration_seconds_count", model=vae, endpoint=endpoint) == 3
    for task in ("reconstruct", "embed"):
        assert delta(before, after, "zooserve_requests_total", model=vae, endpoint=f"/v1/models/{{model}}/{task}",
                     code="200") == 1
    assert delta(before, after, "zooserve_batch_size_sum", model=f"{vae}.decoder") == 4  # the samples
    assert delta(before, after, "zooserve_batch_size_sum", model=vae) == 4  # the images reconstructed, embedded
    assert after[("zooserve_model_ready", (("model", f"{vae}.decoder"), ("version", "1")))] == 1


def test_the_image_routes_need_the_api_key_when_one_is_set(repo, serve):
    async def body(client, app):
        return [(await client.post(f"/v1/models/vae/{task}", json=doc, headers=headers)).status_code
                for headers in ({}, {"X-API-Key": "k"})
                for task, doc in (("sample", {}), ("embed", {"arrays": [[[0] * 28] * 28]}))]

    assert serve(repo.root, body, api_key="k") == [401, 401, 200, 200]
