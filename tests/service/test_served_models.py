"""The served-model interface: the registry picks a class per card, a lease holds a version against a
reload or unload, and the HTTP layer announces requests to every batched endpoint (engine.arrivals)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from service.middleware import Announce
from service.runtime.engine.arrivals import Arrivals, arrived
from service.runtime.errors import BadInput, ModelLoadError
from service.runtime.tasks.base import ClassifyRequest
from service.runtime.tasks.classifiers import ImageClassifier, TextClassifier
from service.runtime.tasks.generative import Autoencoder, ImageGenerator
from service.runtime.tasks.language_model import NgramLanguageModel, RecurrentLanguageModel
from service.runtime.tasks.registry import served_class
from tests.service.conftest import RepoWriter, gate_model, images, infer_json
from tests.service.generative_models import add_generative
from zooserve.card import ModelCard, find_cards, load_card

ROOT = Path(__file__).resolve().parents[2]
EXPECTED = {"cnn": ImageClassifier, "mlp": ImageClassifier, "transformer": TextClassifier,
            "rnn": RecurrentLanguageModel, "ngram": NgramLanguageModel, "gan": ImageGenerator, "vae": Autoencoder,
            "autoencoder": Autoencoder}


@pytest.mark.parametrize("path", find_cards(ROOT / "models"), ids=lambda p: f"{p.parent.parent.name}/{p.parent.name}")
def test_every_shipped_card_gets_the_class_of_its_task_and_family(path):
    card = load_card(path)
    assert served_class(card) is EXPECTED[card.family.split("/")[0]]


@pytest.mark.parametrize("variant, family", [("gan", "gan/dcgan"), ("vae", "vae/conv"), ("ae", "autoencoder/conv")])
def test_generators_and_autoencoders_get_their_classes(tmp_path, variant, family):
    card = ModelCard.model_validate(add_generative(RepoWriter(tmp_path), "m", variant))
    assert card.family == family and served_class(card) is EXPECTED[family.split("/")[0]]


def test_a_task_default_serves_new_families_and_an_unknown_pair_is_a_load_error():
    # An image classifier (fashion-lenet, ...): models/ also holds autoencoders and generators.
    card = next(c for c in map(load_card, find_cards(ROOT / "models")) if c.task == "image-classification")
    assert served_class(card.model_copy(update={"family": "mlp/scratch"})) is ImageClassifier
    lm = card.model_copy(update={"task": "language-model", "family": "markov/chain"})
    with pytest.raises(ModelLoadError, match="no served-model class"):
        served_class(lm)


def test_a_model_answers_a_task_it_does_not_serve_with_a_400_naming_what_it_is(make_repo, serve):
    repo = make_repo(("lin", 1))

    async def body(client, app):
        model = app.state.repository.get("lin")
        with pytest.raises(BadInput, match='"lin" is an image classifier; /score serves'):
            await model.score("text", timeout_s=1)
        with pytest.raises(BadInput, match="is an image classifier: send"):
            await model.classify(ClassifyRequest(texts=["a"]), timeout_s=1)
        return await client.post("/v1/models/lin/score", json={"text": "hello"})

    resp = serve(repo.root, body)
    assert resp.status_code == 400 and "is an image classifier" in resp.json()["error"]


# -- leases ---------------------------------------------------------------------------------------------

def test_unload_waits_for_a_lease_and_a_leased_version_is_not_handed_out_again(make_repo, serve):
    repo = make_repo(("lin", 1))

    async def body(client, app):
        models = app.state.repository
        lease = models.acquire("lin")
        async with lease as held:
            unload = asyncio.create_task(client.post("/v2/repository/models/lin/unload"))
            await asyncio.sleep(0.2)
            waiting = not unload.done()
            # Meanwhile the version is UNLOADING: no new lease, 503
            refused = await client.post("/v2/models/lin/infer", json=infer_json(images(1)))
            # ... while the holder can still use it (its batcher is not stopped)
            out = await held.infer({"input": images(2)}, timeout_s=5)
        done = await asyncio.wait_for(unload, 5)
        return waiting, refused, out["logits"].shape, done, held.leases.count

    waiting, refused, shape, done, count = serve(repo.root, body)
    assert waiting, "the unload finished while a lease was held"
    assert refused.status_code == 503 and "UNLOADING" in refused.json()["error"]
    assert shape == (2, 10) and done.status_code == 200 and count == 0


def test_a_lease_is_released_when_the_request_fails(make_repo, serve):
    repo = make_repo(("lin", 1))

    async def body(client, app):
        bad = await client.post("/v2/models/lin/infer", json=infer_json(images(1), name="nope"))
        return bad, app.state.repository.get("lin").leases.count

    bad, count = serve(repo.root, body)
    assert bad.status_code == 400 and count == 0


# -- arrivals ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("path, model", [("/v2/models/m/infer", "m"), ("/v2/models/m/versions/3/infer", "m"),
                                         ("/v1/models/m2/classify", "m2"), ("/v1/models/m3/score", "m3"),
                                         ("/v1/completions", None), ("/v2/models/m/generate", None)])
def test_batched_endpoints_are_announced_until_queued(path, model):
    arrivals, seen = Arrivals(), []

    def counts():
        return {m: arrivals.on_the_way(m) for m in ("m", "m2", "m3") if arrivals.on_the_way(m)}

    async def app(scope, receive, send):
        seen.append(counts())
        arrived()  # what the batcher does when it queues the request
        arrived()  # twice: idempotent
        seen.append(counts())
        raise RuntimeError("the handler failed")

    async def go():
        with pytest.raises(RuntimeError):
            await Announce(app, arrivals)({"type": "http", "method": "POST", "path": path}, None, None)

    asyncio.run(go())
    assert seen == ([{model: 1}, {}] if model else [{}, {}])
    assert len(arrivals) == 0


def test_a_request_that_never_queues_ends_its_announcement_with_its_response():
    arrivals = Arrivals()

    async def app(scope, receive, send):
        assert arrivals.on_the_way("m") == 1

    asyncio.run(Announce(app, arrivals)({"type": "http", "method": "POST", "path": "/v1/models/m/score"}, None, None))
    assert arrivals.on_the_way("m") == 0


def test_a_classify_request_is_announced_while_its_body_is_read(make_repo, serve):
    """A batch of `lin` being formed sees the /classify request on its way before the body has arrived."""
    repo = make_repo(("lin", 1))

    async def body(client, app):
        arrivals = app.state.repository.arrivals
        gate, _ = gate_model(app.state.repository.get("lin"))
        gate.set()
        release = asyncio.Event()

        async def slow_body():
            yield b'{"arrays": '
            await release.wait()
            yield b"[" + str([[0] * 28] * 28).encode() + b"]}"

        task = asyncio.create_task(client.post("/v1/models/lin/classify", content=slow_body(),
                                               headers={"content-type": "application/json"}))
        for _ in range(200):
            if arrivals.on_the_way("lin"):
                break
            await asyncio.sleep(0.005)
        during = arrivals.on_the_way("lin")
        release.set()
        resp = await task
        return during, resp, arrivals.on_the_way("lin")

    during, resp, after = serve(repo.root, body)
    assert during == 1 and resp.status_code == 200 and after == 0
