"""Generation through the service, on the shipped island language models: greedy text equals a reference
stepped directly with onnxruntime, the SSE wire format of both stream endpoints, stop sequences, the same
seed giving the same text alone or in a crowd, and bad requests."""

from __future__ import annotations

import asyncio
import threading
import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from prometheus_client import REGISTRY

from zooserve.text import Vocab
from tests.service.conftest import RepoWriter

ROOT = Path(__file__).resolve().parents[2]
LMS = ("island-lstm", "island-ngram-word3")
PROMPT = "The engineer and the sailor"


@pytest.fixture(scope="module")
def gen_repo(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("gen-repo")
    for name in LMS:
        (root / name).symlink_to(ROOT / "models" / name)
    RepoWriter(root).add("lin")  # a classifier: cannot generate
    return root


def sse_events(body: str) -> list:
    """Parse a text/event-stream body strictly: only `data: ...` events, each ended by a blank line."""
    assert body.endswith("\n\n")
    out = []
    for block in body[:-2].split("\n\n"):
        assert block.startswith("data: ") and "\n" not in block, block
        data = block[len("data: "):]
        out.append(data if data == "[DONE]" else json.loads(data))
    return out


def greedy_lstm(prompt: str, n: int) -> tuple[list[int], str]:
    """Reference: the prompt (after "\\n") through the graph in one go, then one token at a time."""
    folder = ROOT / "models" / "island-lstm" / "1"
    sess = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    vocab = Vocab.load(folder / "vocab.json")
    tokens = np.array([[vocab.index["\n"]] + [vocab.index[c] for c in prompt]], np.int64)
    h = c = np.zeros((1, 1, 512), np.float32)
    out = []
    for _ in range(n):
        logits, h, c = sess.run(None, {"tokens": tokens, "h0": h, "c0": c})
        out.append(int(logits[0, -1].argmax()))
        tokens = np.array([[out[-1]]], np.int64)
    return out, "".join(vocab.tokens[t] for t in out)


def greedy_word3(words: list[str], n: int) -> list[int]:
    folder = ROOT / "models" / "island-ngram-word3" / "1"
    sess = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    vocab = Vocab.load(folder / "vocab.json")
    ctx, out = [vocab.id("<s>")] * 2 + [vocab.index[w] for w in words], []
    while len(out) < n and (not out or out[-1] != vocab.id("</s>")):
        out.append(int(sess.run(None, {"context": np.array([ctx[-2:]], np.int64)})[0][0].argmax()))
        ctx.append(out[-1])
    return out


def post_all(serve, root, requests, **settings):
    async def body(client, app):
        return [await client.post(path, json=doc) for path, doc in requests]
    return serve(root, body, **settings)


def test_greedy_generation_equals_direct_onnxruntime_stepping(gen_repo, serve):
    greedy = {"temperature": 0, "max_tokens": 80, "logprobs": 0}
    lstm, word = post_all(serve, gen_repo, [
        ("/v2/models/island-lstm/generate", {"text_input": PROMPT, "parameters": greedy}),
        ("/v2/models/island-ngram-word3/generate", {"text_input": PROMPT, "parameters": greedy})])
    assert lstm.status_code == 200 and word.status_code == 200, (lstm.text, word.text)
    want_ids, want_text = greedy_lstm(PROMPT, 80)
    doc = lstm.json()
    assert [t["id"] for t in doc["details"]["logprobs"]] == want_ids
    assert doc["text_output"] == want_text and len(want_text) == 80
    assert doc["details"] | {"logprobs": None} == {"finish_reason": "length", "generated_tokens": 80,
                                                   "prompt_tokens": len(PROMPT), "seed": doc["details"]["seed"],
                                                   "logprobs": None}
    want_words = greedy_word3(PROMPT.lower().split(), 80)
    details = word.json()["details"]
    assert [t["id"] for t in details["logprobs"]] == want_words
    # The word model stops at its end-of-sentence token, or at max_tokens.
    assert details["finish_reason"] == ("stop" if len(want_words) < 80 else "length")


def test_sse_wire_format_and_stream_equals_non_stream(gen_repo, serve):
    params = {"temperature": 0.8, "top_k": 20, "seed": 11, "max_tokens": 40}
    completion = {"model": "island-lstm", "prompt": PROMPT, "max_tokens": 40, "temperature": 0.8, "top_k": 20,
                  "seed": 11, "logprobs": 2}

    async def body(client, app):
        plain = await client.post("/v2/models/island-lstm/generate", json={"text_input": PROMPT, "parameters": params})
        stream = await client.post("/v2/models/island-lstm/generate_stream",
                                   json={"text_input": PROMPT, "parameters": params})
        oa = await client.post("/v1/completions", json=completion)
        oa_stream = await client.post("/v1/completions", json={**completion, "stream": True,
                                                                "stream_options": {"include_usage": True}})
        return plain, stream, oa, oa_stream

    plain, stream, oa, oa_stream = serve(gen_repo, body)
    assert stream.headers["content-type"].startswith("text/event-stream")
    events = sse_events(stream.text)
    assert [e["index"] for e in events] == list(range(40))
    assert "".join(e["text_output"] for e in events) == plain.json()["text_output"]
    assert all("details" not in e for e in events[:-1])
    assert events[-1]["details"] == {k: v for k, v in plain.json()["details"].items()}
    assert events[-1]["model_name"] == "island-lstm" and events[-1]["model_version"] == "1"

    full = oa.json()
    assert full["object"] == "text_completion" and full["usage"] == {
        "prompt_tokens": len(PROMPT), "completion_tokens": 40, "total_tokens": len(PROMPT) + 40}
    assert full["choices"][0]["text"] == plain.json()["text_output"]  # same seed, same parameters
    lp = full["choices"][0]["logprobs"]
    assert len(lp["tokens"]) == 40 and all(len(top) <= 2 for top in lp["top_logprobs"])
    assert all(max(top.values()) >= chosen - 1e-9 for top, chosen in zip(lp["top_logprobs"], lp["token_logprobs"]))
    chunks = sse_events(oa_stream.text)
    assert chunks[-1] == "[DONE]"
    usage, tokens = chunks[-2], chunks[:-2]
    assert usage["choices"] == [] and usage["usage"] == full["usage"]
    assert all(c["usage"] is None and c["id"] == usage["id"] for c in tokens)
    assert "".join(c["choices"][0]["text"] for c in tokens) == full["choices"][0]["text"]
    assert [c["choices"][0]["finish_reason"] for c in tokens] == [None] * 39 + ["length"]


def test_fastapi_generation_routes_answer_like_the_asgi_fast_path(gen_repo, serve, monkeypatch):
    """service.fastpath answers generate, generate_stream and /v1/completions ahead of FastAPI; the FastAPI
    routes (OpenAPI, and the same functions behind them) must give the same answers, errors included."""
    from service.fastpath import FastPath

    params = {"temperature": 0.8, "seed": 5, "max_tokens": 12, "logprobs": 1}
    completion = {"model": "island-lstm", "prompt": PROMPT, "max_tokens": 12, "seed": 5}
    requests = [("/v2/models/island-lstm/generate", {"text_input": PROMPT, "parameters": params}),
                ("/v2/models/island-lstm/generate_stream", {"text_input": PROMPT, "parameters": params}),
                ("/v1/completions", completion),
                ("/v1/completions", {**completion, "stream": True}),
                ("/v2/models/nope/generate_stream", {"text_input": "a"}),
                ("/v2/models/island-lstm/generate", {"text_input": ""}),
                ("/v1/completions", {**completion, "n": 2})]
    fast = post_all(serve, gen_repo, requests)

    async def passthrough(self, scope, receive, send):
        await self.app(scope, receive, send)

    monkeypatch.setattr(FastPath, "__call__", passthrough)  # every request reaches FastAPI's routes
    slow = post_all(serve, gen_repo, requests)

    def comparable(resp):  # a completion's id and creation time differ from one answer to the next
        text = resp.text
        if resp.headers["content-type"].startswith("text/event-stream"):
            events = sse_events(text)
        else:
            events = [resp.json()]
        return resp.status_code, resp.headers["content-type"], [
            {k: v for k, v in e.items() if k not in ("id", "created")} if isinstance(e, dict) else e for e in events]

    assert [r.status_code for r in fast] == [200, 200, 200, 200, 404, 400, 400]
    for (path, _), a, b in zip(requests, fast, slow):
        assert comparable(a) == comparable(b), path


def test_stop_sequences_cut_the_text_in_both_modes(gen_repo, serve):
    greedy = {"temperature": 0, "max_tokens": 120}
    (free,) = post_all(serve, gen_repo, [("/v2/models/island-lstm/generate",
                                          {"text_input": PROMPT, "parameters": greedy})])
    text = free.json()["text_output"]
    stop = text[30:33]  # a 3-character piece of the greedy text: it may first occur earlier than at 30
    stopped = {"text_input": PROMPT, "parameters": {**greedy, "stop": [stop, "never-seen-zz"]}}
    plain, stream = post_all(serve, gen_repo, [("/v2/models/island-lstm/generate", stopped),
                                               ("/v2/models/island-lstm/generate_stream", stopped)])
    assert plain.json()["text_output"] == text[:text.index(stop)]
    assert plain.json()["details"]["finish_reason"] == "stop"
    assert "".join(e["text_output"] for e in sse_events(stream.text)) == text[:text.index(stop)]


@pytest.mark.parametrize("model", LMS)
def test_same_seed_same_text_alone_or_among_many(gen_repo, serve, model):
    target = {"text_input": PROMPT, "parameters": {"temperature": 0.9, "top_k": 30, "top_p": 0.95, "seed": 1234,
                                                   "repetition_penalty": 1.1, "max_tokens": 60}}
    others = [{"text_input": f"Pencroft {i} and Herbert" + " went" * (i % 4),
               "parameters": {"temperature": [0, 0.7, 1.3][i % 3], "seed": i, "max_tokens": 20 + 3 * i}}
              for i in range(31)]
    path = f"/v2/models/{model}/generate"

    def batch_sizes():
        labels = {"model": model}
        return (REGISTRY.get_sample_value("zooserve_generation_step_batch_size_count", labels) or 0,
                REGISTRY.get_sample_value("zooserve_generation_step_batch_size_bucket", labels | {"le": "1.0"}) or 0)

    async def body(client, app):
        alone = await client.post(path, json=target)
        steps, singles = batch_sizes()
        crowd = await asyncio.gather(*(client.post(path, json=d) for d in [*others[:15], target, *others[15:]]))
        steps2, singles2 = batch_sizes()
        return alone, crowd, (steps2 - steps) - (singles2 - singles)

    alone, crowd, shared_steps = serve(gen_repo, body)
    assert alone.status_code == 200 and all(r.status_code == 200 for r in crowd)
    assert crowd[15].json()["text_output"] == alone.json()["text_output"]
    assert crowd[15].json()["details"]["seed"] == 1234
    assert shared_steps > 0  # the crowd really shared steps (batches of more than one sequence)
    texts = {r.json()["text_output"] for r in crowd}
    assert len(texts) > 10  # different prompts and seeds gave different texts


def test_bad_generation_requests_get_4xx_naming_the_field(gen_repo, serve):
    gen = "/v2/models/island-lstm/generate"
    cases = [
        (gen, {"text_input": "", "parameters": {}}, 400, "text_input"),
        (gen, {"parameters": {}}, 400, "text_input"),
        (gen, {"text_input": None}, 400, "got null"),  # the request's own terms, not Python's None
        (gen, {"text_input": "a", "parameters": {"temperature": "hot"}}, 400, 'got "hot"'),
        (gen, {"text_input": "a" * 8001}, 400, "limit is 8000"),
        (gen, {"text_input": "a", "parameters": {"max_tokens": 0}}, 400, "max_tokens"),
        (gen, {"text_input": "a", "parameters": {"max_tokens": 513}}, 400, "max_tokens"),
        (gen, {"text_input": "a", "parameters": {"temperature": -0.1}}, 400, "temperature"),
        (gen, {"text_input": "a", "parameters": {"top_p": 0}}, 400, "top_p"),
        (gen, {"text_input": "a", "parameters": {"top_p": 1.5}}, 400, "top_p"),
        (gen, {"text_input": "a", "parameters": {"stop": ["a", "b", "c", "d", "e"]}}, 400, "stop"),
        (gen, {"text_input": "a", "parameters": {"stop": ["x" * 101]}}, 400, "stop"),
        (gen, {"text_input": "a", "parameters": {"stop": [""]}}, 400, "stop"),
        (gen, {"text_input": "a", "parameters": {"temprature": 1}}, 400, "temprature"),
        # A divisor this close to 0 overflowed to NaN logits, and every token drawn was the vocabulary's last.
        (gen, {"text_input": "a", "parameters": {"repetition_penalty": 5e-324}}, 400, "repetition_penalty"),
        (gen, {"text_input": "a", "parameters": {"temperature": 5e-324}}, 400, "0 (greedy) or at least"),
        ("/v2/models/island-lstm/generate_stream", {"text_input": "a", "parameters": {"seed": -1}}, 400, "seed"),
        ("/v2/models/nope/generate", {"text_input": "a"}, 404, "nope"),
        ("/v2/models/lin/generate", {"text_input": "a"}, 400, "an image classifier"),
        ("/v1/completions", {"prompt": "a"}, 400, '"model"'),
        ("/v1/completions", {"model": "island-lstm", "prompt": "a", "n": 2}, 400, '"n"'),
        ("/v1/completions", {"model": "island-lstm", "prompt": "  "}, 400, '"prompt"'),
        ("/v1/completions", {"model": "island-lstm", "prompt": "a", "max_tokens": -5, "stream": True}, 400,
         "max_tokens"),
        ("/v1/completions", {"model": "lin", "prompt": "a"}, 400, "an image classifier"),
    ]
    got = post_all(serve, gen_repo, [(p, d) for p, d, _, _ in cases]
                   + [(gen, {"text_input": "\u20ac\u20ac q\u00e6", "parameters": {"max_tokens": 3}})])
    for (path, doc, status, word), resp in zip(cases, got):
        assert resp.status_code == status, (doc, resp.text)
        error = resp.json()["error"]
        if path == "/v1/completions":  # OpenAI's shape, which its client reads the message from
            assert error["type"] == "invalid_request_error" and error["code"] is None, error
            if word.startswith('"'):
                assert error["param"] == word.strip('"'), error
            error = error["message"]
        assert word in error, (doc, resp.json())
    # Characters outside the vocabulary read as <unk>; the server carries on after all the errors above.
    assert got[-1].status_code == 200 and got[-1].json()["details"]["generated_tokens"] == 3


@pytest.mark.parametrize("model", ["island-lstm", "island-ngram-char", "island-ngram-word3"])
def test_prompt_rules_and_unknown_characters_become_unk(model):
    from zooserve.card import load_card, model_folder
    from service.runtime.tasks.registry import served_class

    folder = model_folder([ROOT / "models", ROOT / "models-extra"], model) / "1"
    vocab = Vocab.load(folder / "vocab.json")
    card = load_card(folder)
    stepper = served_class(card).stepper_class(card, vocab, run=None)
    ids, count = stepper.encode("First  paragraph.\n\nThe \u20acngineer ")
    unk = vocab.id("<unk>")
    if vocab.kind == "char":
        text = "".join(vocab.tokens[i] for i in ids)
        # The last paragraph stays open with its trailing space; "\u20ac" is not in the vocabulary.
        assert text.endswith("The <unk>ngineer ") and list(ids).count(unk) == 1
    else:  # the sentence "the <unk> ..." continues; the finished first sentence is not in the context
        assert vocab.decode(ids) == ["the", "<unk>", "<unk>"] and count == 6  # "€" and "ngineer" are unseen
    finished, _ = stepper.encode("It rained.")
    assert (len(finished) == 0) == (vocab.kind == "word")  # a finished sentence: a new one starts


def test_unload_and_reload_stop_and_restart_the_scheduler(gen_repo, serve):
    gen, body = "/v2/models/island-lstm/generate", {"text_input": PROMPT, "parameters": {"max_tokens": 5}}

    async def run(client, app):
        repo = app.state.repository
        first = repo.get("island-lstm").scheduler
        before = await client.post(gen, json=body)
        unloaded = await client.post("/v2/repository/models/island-lstm/unload")
        during = await client.post(gen, json=body)
        refused = None
        try:
            first.submit(None)  # the old scheduler refuses work once drained
        except Exception as exc:  # noqa: BLE001 - the type is what the test checks
            refused = exc
        loaded = await client.post("/v2/repository/models/island-lstm/load")
        after = await client.post(gen, json=body)
        second = repo.get("island-lstm").scheduler
        return before, unloaded, during, refused, loaded, after, first, second, second.running

    before, unloaded, during, refused, loaded, after, first, second, second_ran = serve(gen_repo, run)
    assert before.status_code == 200 and unloaded.status_code == 200 and loaded.status_code == 200
    assert during.status_code == 503 and "island-lstm" in during.json()["error"]
    assert type(refused).__name__ == "ModelNotReady" and not first.running and second_ran
    assert after.status_code == 200 and second is not first and not second.running  # stopped at shutdown


def test_beyond_the_queue_bound_requests_get_503_with_retry_after(gen_repo, serve):
    long = {"text_input": PROMPT, "parameters": {"max_tokens": 400}}

    async def run(client, app):
        sched = app.state.repository.get("island-lstm").scheduler
        # Hold the first sequence's steps until the second request has its answer: it must still be active.
        gate, real = threading.Event(), sched.stepper.step
        sched.stepper.step = lambda *a: (gate.wait(10), real(*a))[1]
        first = asyncio.ensure_future(client.post("/v2/models/island-lstm/generate", json=long))
        while sched.active == 0:  # prefilled and stepping (held at its first step)
            await asyncio.sleep(0.001)
        refused = await client.post("/v1/completions", json={"model": "island-lstm", "prompt": "a"})
        gate.set()
        return await first, refused

    first, refused = serve(gen_repo, run, generation_max_active=1, generation_max_waiting=0)
    assert first.status_code == 200 and first.json()["details"]["generated_tokens"] == 400
    assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
    error = refused.json()["error"]
    assert error["type"] == "server_error" and error["code"] == "overloaded" and "retry later" in error["message"]
