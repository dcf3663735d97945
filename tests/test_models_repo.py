"""The shipped model repository: every card is valid and describes the ONNX file next to it; with the real
dataset, each classifier reproduces the test accuracy its card claims."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import onnx
import pytest

from service.card import find_cards, load_card
from training.data import fashion_mnist
from training import text_tokenizer
from training.data import tweets
from training.data.vocab import Vocab
from training.export.onnx_export import run_onnx, session
from training.export.rnn_export import stream_nll
from training.ngram.arpa import ArpaLM, arpa_tokens
from training.tasks import language_model, text_classification

MODELS = Path(__file__).resolve().parents[1] / "models"
CARDS = find_cards(MODELS)
ONNX_TYPES = {"FP32": "tensor(float)", "FP16": "tensor(float16)", "INT64": "tensor(int64)", "INT32": "tensor(int32)",
              "INT8": "tensor(int8)", "UINT8": "tensor(uint8)", "BOOL": "tensor(bool)", "BYTES": "tensor(string)"}

needs_cards = pytest.mark.skipif(not CARDS, reason=f"no model cards in {MODELS} yet (models are still being "
                                                   "trained; a later run checks them)")
card_params = pytest.mark.parametrize("card_path", CARDS or [None], ids=lambda p: str(p.parent.relative_to(MODELS))
                                      if p else "none")


@needs_cards
@card_params
def test_card_describes_its_onnx_file(card_path):
    card = load_card(card_path)
    model_dir = card_path.parent
    assert card.name == model_dir.parent.name and card.version == int(model_dir.name)
    onnx_path = model_dir / card.artifact.file
    assert card.artifact.file == "model.onnx" and onnx_path.is_file()
    blob = onnx_path.read_bytes()
    assert len(blob) == card.artifact.bytes
    assert hashlib.sha256(blob).hexdigest() == card.artifact.sha256


@needs_cards
@card_params
def test_graph_matches_card_io(card_path):
    card = load_card(card_path)
    onnx.checker.check_model(str(card_path.parent / "model.onnx"))
    sess = session(card_path.parent / "model.onnx")
    for got, spec in ((sess.get_inputs(), card.inputs), (sess.get_outputs(), card.outputs)):
        assert [t.name for t in got] == [s.name for s in spec]
        for t, s in zip(got, spec):
            assert len(t.shape) == len(s.shape)
            assert t.type == ONNX_TYPES[s.datatype]
            for dim, want in zip(t.shape, s.shape):
                assert (not isinstance(dim, int)) if want == -1 else dim == want, (t.name, t.shape, s.shape)


@needs_cards
@card_params
def test_quantized_cards_point_at_their_source(card_path):
    card = load_card(card_path)
    if card.quantization is None:
        pytest.skip("not a quantized model")
    assert card.parity.reference == "onnx-fp32"  # compared with its float graph, not with torch
    source = MODELS / card.quantization.source_model / "model.json"
    assert source.is_file()
    src = load_card(source)
    src_test = next(m for m in src.metrics if m.split == "test")
    test = next(m for m in card.metrics if m.split == "test")
    if card.task == "language-model":
        assert card.quantization.cross_entropy_change == pytest.approx(test.cross_entropy - src_test.cross_entropy,
                                                                       abs=1e-9)
    else:
        assert card.quantization.accuracy_change == pytest.approx(test.accuracy - src_test.accuracy, abs=1e-9)


@pytest.fixture(scope="module")
def real_dataset():
    try:
        return fashion_mnist.load(allow_download=False)
    except fashion_mnist.DatasetUnavailable:
        pytest.skip("the real Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist, or set "
                    "ZOOSERVE_DATA); this test never downloads")


@pytest.mark.integration
def test_real_dataset_is_the_official_release(real_dataset):
    ds = real_dataset
    assert ds.train_images.shape == (60000, 28, 28) and ds.train_labels.shape == (60000,)
    assert ds.test_images.shape == (10000, 28, 28) and ds.test_labels.shape == (10000,)
    assert ds.official is True
    assert np.bincount(ds.test_labels).tolist() == [1000] * 10


@pytest.mark.integration
@needs_cards
@card_params
def test_shipped_model_reproduces_card_accuracy(card_path, real_dataset):
    card = load_card(card_path)
    if card.task != "image-classification":
        pytest.skip(f"{card.task} is not checked on Fashion-MNIST")
    test = next(m for m in card.metrics if m.split == "test")
    if card.dataset.official:
        assert card.dataset.sha256 == real_dataset.sha256
    assert test.examples == len(real_dataset.test_labels)
    p = card.preprocess
    mean = np.asarray(p.mean, np.float32).reshape(1, -1, 1, 1)
    std = np.asarray(p.std, np.float32).reshape(1, -1, 1, 1)
    x = (real_dataset.test_images[:, None].astype(np.float32) * np.float32(p.scale) - mean) / std
    logits = run_onnx(session(card_path.parent / "model.onnx"), x.astype(np.float32))
    assert logits.shape == (10000, len(card.labels))
    accuracy = float(np.mean(logits.argmax(1) == real_dataset.test_labels))
    assert accuracy == pytest.approx(test.accuracy, abs=1e-6)


# -- language models, on the real corpus ---------------------------------------------------------------

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "data" / "mysterious_island.txt"
LM_CARDS = [p for p in CARDS if load_card(p).task == "language-model"]


@pytest.mark.integration
@pytest.mark.skipif(not CORPUS.is_file(), reason=f"{CORPUS} is not here")
@pytest.mark.parametrize("card_path", LM_CARDS or [None], ids=lambda p: p.parent.parent.name if p else "none")
def test_shipped_language_model_reproduces_its_card(card_path):
    """Re-score the test split through the shipped graph, tokenised from its own vocab.json."""
    if card_path is None:
        pytest.skip("no language models shipped")
    card = load_card(card_path)
    test = next(m for m in card.metrics if m.split == "test")
    vocab = Vocab.load(card_path.parent / card.preprocess.vocab_file)
    unit = card.preprocess.tokenizer
    data = language_model.prepare(CORPUS, unit=unit, boundaries=vocab.bos is not None and unit == "char")
    assert data.vocab == vocab  # the vocabulary is rebuilt identically from the corpus
    sess = session(card_path.parent / "model.onnx")
    if card.family.startswith("ngram/"):
        n = card.preprocess.context_length
        bos, contexts, targets = vocab.id(vocab.bos), [], []
        for seq in data.sequences["test"]:
            full = np.concatenate(([bos] * n, seq, [vocab.id(vocab.eos)]))
            contexts.append(np.lib.stride_tricks.sliding_window_view(full[:-1], n))  # (len+1, n): each target's
            targets.append(full[n:])
        ctx, tgt = np.concatenate(contexts), np.concatenate(targets)
        assert len(tgt) == test.examples
        # The ARPA file scores the whole split (back-off rule, plain dictionaries) ...
        arpa = ArpaLM(card_path.parent / "model.arpa.gz")
        names = arpa_tokens(vocab.tokens)
        ref = np.array([lp for seq in data.sequences["test"] for lp in arpa.sentence_logp([names[i] for i in seq])])
        assert -ref.mean() == pytest.approx(test.cross_entropy, abs=1e-5)
        # ... and the graph agrees with it token by token. The graph costs V lookups per row and order, so a
        # large word vocabulary is checked on the first 1,024 targets only.
        rows = len(tgt) if len(vocab) < 1000 else 1024
        got = np.concatenate([sess.run(None, {"context": ctx[i:min(i + 2048, rows)]})[0][
            np.arange(min(2048, rows - i)), tgt[i:min(i + 2048, rows)]] for i in range(0, rows, 2048)])
        np.testing.assert_allclose(got, ref[:rows], atol=2e-5)
    else:
        stream = data.stream("test")
        assert len(stream) - 1 == test.examples
        assert stream_nll(sess, stream) / test.examples == pytest.approx(test.cross_entropy, abs=1e-6)


# -- the text classifier, on the real tweets -------------------------------------------------------------

TEXT_CARDS = [p for p in CARDS if load_card(p).task == "text-classification"]


@pytest.mark.integration
@pytest.mark.parametrize("card_path", TEXT_CARDS or [None], ids=lambda p: p.parent.parent.name if p else "none")
def test_shipped_text_classifier_reproduces_its_card(card_path):
    """Tokenise the test split with the shipped tokenizer.json, run the shipped graph, compare with the card."""
    if card_path is None:
        pytest.skip("no text classifiers shipped")
    try:
        split = tweets.prepare(None, seed=load_card(card_path).dataset.split_seed)
    except tweets.DataUnavailable as exc:
        pytest.skip(f"the tweets are not installed ({exc})")
    card = load_card(card_path)
    assert split.dataset["sha256"] == card.dataset.sha256 and split.labels == card.labels
    tok = text_tokenizer.load(card_path.parent / card.preprocess.tokenizer_file)
    ids, mask = text_tokenizer.encode(tok, split.texts["test"])
    figures = text_classification.figures("test", text_classification.onnx_logits(
        session(card_path.parent / "model.onnx"), ids, mask), split.y["test"])
    test = next(m for m in card.metrics if m.split == "test")
    assert figures["examples"] == test.examples
    assert figures["accuracy"] == pytest.approx(test.accuracy, abs=1e-9)
    assert figures["macro_f1"] == pytest.approx(test.macro_f1, abs=1e-9)
