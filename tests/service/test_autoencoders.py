"""POST /v1/models/{m}/reconstruct and /embed: images in as /classify takes them (base64 PNG, pixel arrays,
multipart files), reconstructions out as PNGs or pixel arrays, codes as lists of floats; checked against
onnxruntime run directly on the graph file with the card's preprocess done independently."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

from tests.service.conftest import RepoWriter, b64, png_bytes
from tests.service.generative_models import fashion_repo
from zooserve.card import load_card
from zooserve.latent import to_pixels

PIXELS = np.random.default_rng(4).integers(0, 256, (3, 28, 28), dtype=np.uint8)


@pytest.fixture
def repo(tmp_path) -> RepoWriter:
    return fashion_repo(RepoWriter(tmp_path / "repo"))


def reference(writer: RepoWriter, name: str) -> dict[str, np.ndarray]:
    """The main graph on PIXELS scaled as the card says (1/255, mean 0, std 1): code (3, d), image (3, 28, 28)."""
    out = writer.reference(name, 1, {"input": (PIXELS[:, None] / np.float32(255)).astype(np.float32)})
    return {"code": out["code"], "image": to_pixels(out["image"], load_card(writer.path(name)).postprocess)}


def decoded(doc: dict) -> np.ndarray:
    imgs = [Image.open(io.BytesIO(base64.b64decode(t))) for t in doc["images"]]
    assert all((i.format, i.mode, i.size) == ("PNG", "L", (28, 28)) for i in imgs)
    return np.stack([np.asarray(i) for i in imgs])


def calls(serve, root, requests):
    async def body(client, app):
        out = []
        for path, kw in requests:
            out.append(await client.post(path, **kw))
        return out
    return serve(root, body)


@pytest.mark.parametrize("name", ["ae", "vae"])
def test_reconstruct_and_embed_take_every_input_kind(repo, serve, name):
    arrays = {"arrays": PIXELS.tolist()}
    images = {"images": [b64(png_bytes(p)) for p in PIXELS]}
    files = [("files", (f"{i}.png", png_bytes(p), "image/png")) for i, p in enumerate(PIXELS)]
    url = f"/v1/models/{name}/"
    answers = calls(serve, repo.root, [
        (url + "reconstruct", {"json": arrays}), (url + "reconstruct", {"json": {**images, "format": "array"}}),
        (url + "reconstruct", {"files": files}), (url + "reconstruct?format=array", {"files": files}),
        (url + "embed", {"json": arrays}), (url + "embed", {"json": images}), (url + "embed", {"files": files})])
    assert [r.status_code for r in answers] == [200] * 7, [r.text for r in answers]
    want = reference(repo, name)
    png_arrays, array_images, png_files, array_files, *embeds = (r.json() for r in answers)
    for doc in (png_arrays, png_files):
        np.testing.assert_array_equal(decoded(doc), want["image"])
    for doc in (array_images, array_files):
        np.testing.assert_array_equal(np.asarray(doc["images"], np.uint8), want["image"])
    for doc in embeds:
        assert doc["model"] == name and len(doc["codes"]) == 3 and len(doc["codes"][0]) == 8
        np.testing.assert_allclose(np.asarray(doc["codes"], np.float32), want["code"], rtol=1e-5, atol=1e-6)


BAD = [  # (path, request, status, words the error names)
    ("/v1/models/vae/reconstruct", {"json": {"texts": ["a"]}}, 400, ['give exactly one of "images"', '"arrays"']),
    ("/v1/models/vae/reconstruct", {"json": {"arrays": [[[1, 2]]]}}, 400, ["arrays[0]: shape must be [28, 28]"]),
    ("/v1/models/vae/reconstruct", {"json": {"arrays": [[[0] * 28] * 28], "format": "jpeg"}}, 400, ['"format" must be']),
    ("/v1/models/vae/reconstruct", {"json": {"images": ["bm90IGFuIGltYWdl"]}}, 400, ["images[0]: not a decodable"]),
    ("/v1/models/vae/embed", {"json": {"arrays": [[[0] * 28] * 28], "top_k": 2}}, 400, ['"top_k" is not a known field']),
    ("/v1/models/vae/embed", {"json": {"arrays": [[[0] * 28] * 28] * 17}}, 400, ["max_batch_size 16"]),
    ("/v1/models/dcgan/reconstruct", {"json": {"arrays": [[[0] * 28] * 28]}}, 400, ["is an image generator", "autoencoders"]),
    ("/v1/models/lin/embed", {"json": {"arrays": [[[0] * 28] * 28]}}, 400, ["is an image classifier", "/embed serves"]),
    ("/v1/models/dcgan/classify", {"json": {"arrays": [[[0] * 28] * 28]}}, 400, ["is an image generator", "/classify"]),
    ("/v1/models/vae/classify", {"json": {"arrays": [[[0] * 28] * 28]}}, 400, ["is an autoencoder"]),
    ("/v1/models/vae.decoder/embed", {"json": {"arrays": [[[0] * 28] * 28]}}, 400, ['the decoder graph of "vae"']),
]


def test_bad_requests_and_wrong_tasks_get_a_400_naming_the_problem(repo, serve):
    answers = calls(serve, repo.root, [(path, kw) for path, kw, _, _ in BAD])
    for (path, kw, status, words), resp in zip(BAD, answers):
        assert resp.status_code == status, (path, resp.text)
        for w in words:
            assert w in resp.json()["error"], (w, resp.json())
