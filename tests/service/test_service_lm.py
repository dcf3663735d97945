"""Language-model artifacts in the service: an n-gram graph and a recurrent stepping graph load next to
each other, answer V2 inference with the numbers the training side computed, and /classify refuses them."""

from __future__ import annotations

import numpy as np
import pytest

from tests.service.conftest import infer_json
from training import train_ngram, train_rnnlm
from training.data.vocab import Vocab
from training.export.onnx_export import session


@pytest.fixture(scope="module")
def lm_repo(fake_corpus, tmp_path_factory):
    root = tmp_path_factory.mktemp("lm-repo")
    assert train_ngram.main(["--corpus", str(fake_corpus), "--order", "3", "--name", "ngram", "--out", str(root),
                             "--discount-fallback", "0.5", "1.0", "1.5", "--no-arpa"]) == 0
    # Two layers: the state (2, B, 8) has no batch-first axis, so the model is served without batching.
    assert train_rnnlm.main(["--cell", "lstm", "--layers", "2", "--corpus", str(fake_corpus), "--dry-run",
                             "--hidden-size", "8", "--embedding-dim", "4", "--name", "lstm", "--out", str(root),
                             "--runs", str(root.parent / "runs"), "--no-progress", "--device", "cpu"]) == 0
    return root


def test_language_models_are_ready_and_infer(lm_repo, serve):
    vocab = Vocab.load(lm_repo / "ngram" / "1" / "vocab.json")
    context = np.array([[vocab.id("<s>"), vocab.index["T"]], [vocab.index["h"], vocab.index["e"]]], dtype=np.int64)

    async def body(client, app):
        ready = {m: (await client.get(f"/v2/models/{m}/ready")).status_code for m in ("ngram", "lstm")}
        ng = await client.post("/v2/models/ngram/infer", json=infer_json(context, name="context"))
        meta = (await client.get("/v2/models/lstm")).json()
        feeds = {"tokens": np.array([[1, 2, 3]] * 3, np.int64), "h0": np.zeros((2, 3, 8), np.float32),
                 "c0": np.zeros((2, 3, 8), np.float32)}
        lstm = await client.post("/v2/models/lstm/infer", json={"inputs": [
            {"name": k, "datatype": "INT64" if v.dtype == np.int64 else "FP32", "shape": list(v.shape),
             "data": v.ravel().tolist()} for k, v in feeds.items()]})
        refused = await client.post("/v1/models/ngram/classify", json={"arrays": [[[0]]]})
        return ready, ng, meta, feeds, lstm, refused

    ready, ng, meta, feeds, lstm, refused = serve(lm_repo, body)
    assert ready == {"ngram": 200, "lstm": 200}
    assert ng.status_code == 200, ng.text
    out = ng.json()["outputs"][0]
    got = np.array(out["data"], np.float32).reshape(out["shape"])
    want = session(lm_repo / "ngram" / "1" / "model.onnx").run(None, {"context": context})[0]
    np.testing.assert_allclose(got, want, rtol=1e-6)
    np.testing.assert_allclose(np.exp(got.astype(np.float64)).sum(axis=1), 1.0, atol=1e-4)
    assert {i["name"] for i in meta["inputs"]} == {"tokens", "h0", "c0"}
    assert lstm.status_code == 200, lstm.text
    outs = {o["name"]: o for o in lstm.json()["outputs"]}
    assert outs["logits"]["shape"][:2] == [3, 3] and outs["hn"]["shape"] == [2, 3, 8]
    ref = session(lm_repo / "lstm" / "1" / "model.onnx").run(None, feeds)
    np.testing.assert_allclose(np.array(outs["logits"]["data"]).reshape(ref[0].shape), ref[0], rtol=1e-5, atol=1e-6)
    assert refused.status_code == 400 and "a language model" in refused.json()["error"]


def test_a_recurrent_model_refuses_a_sequence_beyond_the_setting_and_a_token_past_its_vocabulary(lm_repo, serve):
    """A V2 infer of tokens [1, 1000000] made onnxruntime ask for 8 GB; now the length and the ids are
    checked before anything is queued."""
    vocab = len(Vocab.load(lm_repo / "lstm" / "1" / "vocab.json"))

    def doc(tokens: np.ndarray) -> dict:
        state = np.zeros((2, 1, 8), np.float32)
        return {"inputs": [{"name": "tokens", "datatype": "INT64", "shape": list(tokens.shape), "data": tokens.ravel().tolist()},
                           *({"name": n, "datatype": "FP32", "shape": [2, 1, 8], "data": state.ravel().tolist()}
                             for n in ("h0", "c0"))]}

    async def body(client, app):
        return [await client.post("/v2/models/lstm/infer", json=doc(t)) for t in
                (np.ones((1, 65), np.int64), np.array([[1, vocab]]), np.ones((1, 64), np.int64))]

    long, past, ok = serve(lm_repo, body, max_sequence_tokens=64)
    assert long.status_code == 400 and "at most 64 tokens" in long.json()["error"], long.text
    assert past.status_code == 400 and f"from 0 to {vocab - 1}, got {vocab}" in past.json()["error"], past.text
    assert ok.status_code == 200, ok.text


def test_an_ngram_model_answers_v2_infer_with_or_without_candidates(lm_repo, serve):
    """`candidates` is optional: without it the whole distribution (B, V), with it (B, K) of the given token
    ids, each a column of the former; ids outside the vocabulary, or rows that differ from the context's,
    are refused. The metadata lists it as optional."""
    vocab = Vocab.load(lm_repo / "ngram" / "1" / "vocab.json")
    V, bos = len(vocab), vocab.id("<s>")
    context = np.array([[bos, vocab.index["T"]], [vocab.index["h"], vocab.index["e"]], [bos, bos]], np.int64)
    cand = np.array([[vocab.index["h"], bos], [vocab.index[" "], vocab.index["h"]], [0, V - 1]], np.int64)

    def doc(**tensors):
        return {"inputs": [infer_json(x, name=n)["inputs"][0] for n, x in tensors.items()]}

    async def body(client, app):
        meta = (await client.get("/v2/models/ngram")).json()
        answers = [await client.post("/v2/models/ngram/infer", json=doc(**t)) for t in (
            {"context": context}, {"context": context, "candidates": cand},
            {"context": context, "candidates": np.array([[V]])}, {"context": context, "candidates": cand[:1]},
            {"candidates": cand})]
        return meta, answers

    meta, (full, picked, past, rows, alone) = serve(lm_repo, body)
    assert meta["inputs"] == [{"name": "context", "datatype": "INT64", "shape": [-1, 2]},
                              {"name": "candidates", "datatype": "INT64", "shape": [-1, -1], "optional": True}]
    assert full.status_code == 200 and picked.status_code == 200, (full.text, picked.text)
    dist = np.array(full.json()["outputs"][0]["data"], np.float32).reshape(3, V)
    out = picked.json()["outputs"][0]
    assert out["shape"] == [3, 2]
    np.testing.assert_allclose(np.array(out["data"], np.float32).reshape(3, 2), np.take_along_axis(dist, cand, 1),
                               rtol=1e-6, atol=1e-6)
    assert past.status_code == 400 and f"from 0 to {V - 1}, got {V}" in past.json()["error"], past.text
    assert rows.status_code == 400 and "disagree on the batch size" in rows.json()["error"], rows.text
    assert alone.status_code == 400 and 'takes inputs ["context"] and optionally ["candidates"]' in alone.json()["error"]
