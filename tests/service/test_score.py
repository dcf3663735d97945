"""POST /v1/models/{m}/score: n-gram figures equal the ARPA file's, recurrent figures equal a direct
onnxruntime pass, and bad requests are 4xx."""

from __future__ import annotations

import math

import numpy as np
import pytest

from zooserve.text import Vocab
from training import train_ngram, train_rnnlm
from training.export.onnx_export import session
from training.ngram.arpa import ArpaLM, arpa_tokens

TEXT = "The engineer and the sailor\nwalked to the coast.\n\nA storm! The boy ran to the cave, zqx."


@pytest.fixture(scope="module")
def score_repo(fake_corpus, tmp_path_factory):
    root = tmp_path_factory.mktemp("score-repo")
    fb = ["--discount-fallback", "0.5", "1.0", "1.5"]
    for unit, order in (("char", 4), ("word", 3)):
        assert train_ngram.main(["--corpus", str(fake_corpus), "--unit", unit, "--order", str(order),
                                 "--name", f"ng-{unit}", "--out", str(root), *fb]) == 0
    assert train_rnnlm.main(["--cell", "gru", "--layers", "2", "--corpus", str(fake_corpus), "--dry-run",
                             "--hidden-size", "8", "--embedding-dim", "4", "--name", "gru", "--out", str(root),
                             "--runs", str(root.parent / "runs"), "--no-progress", "--device", "cpu"]) == 0
    return root


def score_all(serve, root, requests):
    async def body(client, app):
        return [await client.post(f"/v1/models/{m}/score", json=doc) for m, doc in requests]
    return serve(root, body)


@pytest.mark.parametrize("unit", ["char", "word"])
def test_ngram_scores_equal_the_arpa_file(score_repo, serve, unit):
    (resp,) = score_all(serve, score_repo, [(f"ng-{unit}", {"text": TEXT})])
    assert resp.status_code == 200, resp.text
    doc = resp.json()
    d = score_repo / f"ng-{unit}" / "1"
    vocab = Vocab.load(d / "vocab.json")
    arpa, names = ArpaLM(d / "model.arpa.gz"), arpa_tokens(vocab.tokens)
    want = [lp for seq in vocab.segments(TEXT) for lp in arpa.sentence_logp([names[i] for i in seq])]
    got = [t["logprob"] for t in doc["tokens"]]
    np.testing.assert_allclose(got, want, atol=2e-5)
    assert doc["token_count"] == len(want) and doc["logprob"] == pytest.approx(sum(want), abs=1e-3)
    assert doc["perplexity"] == pytest.approx(math.exp(-sum(want) / len(want)), rel=1e-4)
    assert doc["tokens"][-1]["token"] == "\n"  # </s> reads as the end of a line
    if unit == "word":
        assert "<unk>" in [t["token"] for t in doc["tokens"]]  # "zqx" was never seen


@pytest.mark.parametrize("chunk", [1024, 7, 1])
def test_recurrent_scores_equal_a_direct_pass(score_repo, serve, monkeypatch, chunk):
    """Whatever the chunk a long text is scored in (carrying the state from chunk to chunk), the figures are
    those of one pass over the whole text."""
    from service.runtime.tasks import language_model

    monkeypatch.setattr(language_model, "SCORE_CHUNK", chunk)
    (resp,) = score_all(serve, score_repo, [("gru", {"text": TEXT})])
    assert resp.status_code == 200, resp.text
    doc = resp.json()
    d = score_repo / "gru" / "1"
    vocab = Vocab.load(d / "vocab.json")
    ids = vocab.stream(TEXT)
    tokens = np.concatenate(([vocab.index["\n"]], ids))[None, :-1]
    logits = session(d / "model.onnx").run(None, {"tokens": tokens, "h0": np.zeros((2, 1, 8), np.float32)})[0][0]
    z = logits.astype(np.float64)
    want = z[np.arange(len(ids)), ids] - np.log(np.exp(z).sum(1))
    np.testing.assert_allclose([t["logprob"] for t in doc["tokens"]], want, atol=1e-5)
    assert "".join(t["token"] for t in doc["tokens"]).startswith("The engineer and the sailor walked")


def test_bad_score_requests(score_repo, serve, make_repo):
    got = score_all(serve, score_repo, [("ng-char", {"text": ""}), ("ng-char", {"text": 5}), ("ng-char", {"txt": "a"}),
                                        ("nope", {"text": "a"}), ("ng-char", {"text": "x" * 100_001})])
    assert [r.status_code for r in got] == [400, 400, 400, 404, 400]
    assert "non-empty string" in got[0].json()["error"] and "limit" in got[4].json()["error"]
    image_repo = make_repo(("lin", 1))
    (refused,) = score_all(serve, image_repo.root, [("lin", {"text": "a"})])
    assert refused.status_code == 400 and "an image classifier" in refused.json()["error"]
