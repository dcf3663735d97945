"""POST /v1/models/{m}/score: n-gram figures equal the ARPA file's and the whole distribution's, recurrent
figures equal a direct onnxruntime pass, and bad requests are 4xx."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import onnx
import pytest

from service.runtime.tasks.language_model import score_rows
from zooserve.text import Vocab
from training import train_ngram, train_rnnlm
from training.export.onnx_export import file_digest, session
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


def sliding_rows(vocab: Vocab, n: int, text: str) -> tuple[np.ndarray, np.ndarray]:
    """Contexts (T, n) and targets (T,) built one segment at a time, as /score did before `score_rows`."""
    bos, eos, contexts, targets = vocab.id(vocab.bos), vocab.id(vocab.eos), [], []
    for seq in vocab.segments(text):
        full = np.concatenate(([bos] * n, seq, [eos]))
        contexts.append(np.lib.stride_tricks.sliding_window_view(full[:-1], n))  # (len + 1, n)
        targets.append(full[n:])
    return np.concatenate(contexts), np.concatenate(targets)


def test_score_rows_pairs_each_token_with_the_tokens_before_it_in_its_segment():
    a, b, c, bos, eos = 5, 6, 7, 1, 2
    ctx, tgt = score_rows([np.array([a, b]), np.array([c])], 2, bos, eos)  # the docstring's example
    assert tgt.tolist() == [a, b, eos, c, eos]
    assert ctx.tolist() == [[bos, bos], [bos, a], [a, b], [bos, bos], [bos, c]]
    vocab = Vocab("char", tuple("<s> </s> <unk>".split()) + tuple("abcdefgh ."), bos="<s>", eos="</s>")
    text = "abc deadbeef. a\n\nhead\n\nf"
    for n in (1, 3, 7):
        ctx, tgt = score_rows(vocab.segments(text), n, vocab.id("<s>"), vocab.id("</s>"))
        want_ctx, want_tgt = sliding_rows(vocab, n, text)
        assert np.array_equal(tgt, want_tgt) and np.array_equal(ctx, want_ctx)


@pytest.mark.parametrize("rows", [4096, 7, 1])
@pytest.mark.parametrize("unit", ["char", "word"])
def test_ngram_scores_equal_the_whole_distributions_columns(score_repo, serve, monkeypatch, unit, rows):
    """/score asks the graph for each target's log-probability only (`candidates`), in chunks of SCORE_ROWS
    rows: the figures are the target columns of the whole distribution (B, V) that the same graph gives
    without candidates (float32 in both; 1e-6 allows a last-bit difference of a vectorised Log)."""
    from service.runtime.tasks import language_model

    monkeypatch.setattr(language_model, "SCORE_ROWS", rows)
    (resp,) = score_all(serve, score_repo, [(f"ng-{unit}", {"text": TEXT})])
    assert resp.status_code == 200, resp.text
    d = score_repo / f"ng-{unit}" / "1"
    ctx, tgt = sliding_rows(Vocab.load(d / "vocab.json"), 3 if unit == "char" else 2, TEXT)
    full = session(d / "model.onnx").run(None, {"context": ctx})[0]  # (T, V)
    doc = resp.json()
    assert [t["id"] for t in doc["tokens"]] == tgt.tolist()
    np.testing.assert_allclose([t["logprob"] for t in doc["tokens"]], full[np.arange(len(tgt)), tgt], rtol=1e-6, atol=1e-6)


def test_an_ngram_graph_without_candidates_still_scores(score_repo, serve, tmp_path):
    """A graph exported before `candidates` existed (its default was a constant then) scores through the whole
    distribution, with the same figures."""
    root = tmp_path / "repo"
    shutil.copytree(score_repo / "ng-word", root / "old-word")
    d = root / "old-word" / "1"
    model = onnx.load(d / "model.onnx")
    (cand,) = [i for i in model.graph.input if i.name == "candidates"]
    model.graph.input.remove(cand)  # the initializer stays: a constant (1, V) row of every token
    V = len(Vocab.load(d / "vocab.json"))
    model.graph.output[0].type.tensor_type.shape.dim[1].dim_value = V  # log_probs (B, V)
    onnx.save(model, d / "model.onnx")
    card = json.loads((d / "model.json").read_text())
    card["name"], card["inputs"], card["outputs"][0]["shape"] = "old-word", card["inputs"][:1], [-1, V]
    card["artifact"] = file_digest(d / "model.onnx")
    (d / "model.json").write_text(json.dumps(card))
    shutil.copytree(score_repo / "ng-word", root / "ng-word")
    old, new = score_all(serve, root, [("old-word", {"text": TEXT}), ("ng-word", {"text": TEXT})])
    assert old.status_code == 200 and new.status_code == 200, (old.text, new.text)
    np.testing.assert_allclose([t["logprob"] for t in old.json()["tokens"]],
                               [t["logprob"] for t in new.json()["tokens"]], rtol=1e-6, atol=1e-6)


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
