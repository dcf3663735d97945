"""The language-model scripts end to end on a small generated book: --dry-run and a real tiny run each
write a card that validates, an ONNX graph the service loads, the vocabulary and (n-grams) the ARPA file."""

from __future__ import annotations

import json

import numpy as np
import pytest

from zooserve.card import load_card
from service.runtime.engine.session import OnnxModel, session_options
from training import lm_report, train_ngram, train_rnnlm
from training.data.vocab import Vocab
from training.export.onnx_export import file_digest, session
from training.export.rnn_export import stream_nll
from training.ngram.arpa import ArpaLM
from training.recipes import LM_RECIPES
from training.tasks.language_model import prepare

FALLBACK = ["--discount-fallback", "0.5", "1.0", "1.5"]


def served(model_dir):
    """Load the graph exactly as the service does, which checks it against its card, and warm it up."""
    card = load_card(model_dir)
    m = OnnxModel(model_dir / "model.onnx", card, providers=["CPUExecutionProvider"], options=session_options())
    m.warmup()
    return card


@pytest.mark.parametrize("unit,order", [("char", 5), ("word", 3)])
def test_ngram_script_writes_a_servable_model(fake_corpus, tmp_path, unit, order):
    out = tmp_path / "models"
    assert train_ngram.main(["--corpus", str(fake_corpus), "--unit", unit, "--order", str(order), "--name", "ng",
                             "--out", str(out), *FALLBACK]) == 0
    d = out / "ng" / "1"
    card = served(d)
    assert (card.task, card.family) == ("language-model", "ngram/kn")
    assert [(i.name, i.shape, i.optional) for i in card.inputs] == [("context", [-1, order - 1], False),
                                                                     ("candidates", [-1, -1], True)]
    assert card.outputs[0].shape == [-1, -1]  # (B, V) without candidates, (B, K) with K of them
    assert card.parity.reference == "numpy" and card.parity.max_abs_diff <= 1e-5
    test = next(m for m in card.metrics if m.split == "test")
    assert test.perplexity == pytest.approx(np.exp(test.cross_entropy)) and test.examples == card.dataset.splits["test"]
    vocab = Vocab.load(d / "vocab.json")
    assert len(vocab) == card.preprocess.vocab_size and vocab.kind == unit
    assert {f.file for f in card.extra_files} == {"vocab.json", "model.arpa.gz"}
    assert all(file_digest(d / f.file) == f.model_dump() for f in card.extra_files)
    assert ArpaLM(d / "model.arpa.gz").order == order


def test_ngram_dry_run_writes_only_under_runs(fake_corpus, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert train_ngram.main(["--corpus", str(fake_corpus), "--order", "3", "--dry-run", *FALLBACK]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs"]
    assert load_card(tmp_path / "runs" / "dry-run" / "models" / "ngram-char-3" / "1").task == "language-model"


def test_ngram_add_k_and_order_checks(fake_corpus, tmp_path):
    out = tmp_path / "m"
    assert train_ngram.main(["--corpus", str(fake_corpus), "--order", "2", "--smoothing", "add-k", "--add-k", "0.1",
                             "--out", str(out), "--no-arpa"]) == 0
    card = load_card(out / "ngram-char-2" / "1")
    assert card.family == "ngram/add-k" and [f.file for f in card.extra_files] == ["vocab.json"]
    with pytest.raises(SystemExit, match="at least 2"):
        train_ngram.main(["--corpus", str(fake_corpus), "--order", "1", "--out", str(out)])


@pytest.mark.parametrize("recipe", sorted(LM_RECIPES))
def test_rnn_recipes_dry_run(fake_corpus, tmp_path, recipe):
    out, runs = tmp_path / "models", tmp_path / "runs"
    assert train_rnnlm.main(["--recipe", recipe, "--corpus", str(fake_corpus), "--dry-run", "--no-progress",
                             "--hidden-size", "16", "--embedding-dim", "8", "--out", str(out), "--runs", str(runs),
                             "--device", "cpu"]) == 0
    card = served(out / recipe / "1")
    assert card.family == f"rnn/{LM_RECIPES[recipe].model['cell']}"
    assert (runs / "dry-run" / recipe / "last.pt").is_file()
    assert json.loads((runs / "dry-run" / recipe / "history.json").read_text())[0]["epoch"] == 1


def test_rnn_training_learns_and_int8_is_recorded(fake_corpus, tmp_path):
    out, runs = tmp_path / "models", tmp_path / "runs"
    args = ["--cell", "gru", "--corpus", str(fake_corpus), "--hidden-size", "64", "--embedding-dim", "16",
            "--epochs", "3", "--batch-size", "8", "--bptt", "32", "--lr", "0.01", "--name", "tiny-gru",
            "--out", str(out), "--runs", str(runs), "--device", "cpu", "--no-progress", "--int8"]
    assert train_rnnlm.main(args) == 0
    card = served(out / "tiny-gru" / "1")
    test = next(m for m in card.metrics if m.split == "test")
    # The generated book uses ~30 characters; a model that learned nothing scores log(V) nats per char.
    assert test.cross_entropy < 0.8 * np.log(card.preprocess.vocab_size)
    assert card.inputs[1].shape == [1, -1, 64] and card.outputs[0].shape == [-1, -1, card.preprocess.vocab_size]
    history = json.loads((runs / "tiny-gru" / "history.json").read_text())
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    q = served(out / "tiny-gru-int8" / "1")
    q_test = next(m for m in q.metrics if m.split == "test")
    assert q.quantization.cross_entropy_change == pytest.approx(q_test.cross_entropy - test.cross_entropy)
    assert q.parity.reference == "onnx-fp32"
    # The card's figure is the graph's own: rescore the test stream here.
    stream = prepare(fake_corpus, unit="char").stream("test")
    nats = stream_nll(session(out / "tiny-gru" / "1" / "model.onnx"), stream)
    assert nats / (len(stream) - 1) == pytest.approx(test.cross_entropy, rel=1e-6)


def test_lm_report_tables(fake_corpus, tmp_path, capsys):
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- lm-results:begin -->\nold\n<!-- lm-results:end -->\nrest\n")
    assert lm_report.main(["--corpus", str(fake_corpus), "--models", str(tmp_path / "none"),
                           "--char-orders", "3", "--word-orders", "2", "--readme", str(readme), *FALLBACK]) == 0
    text = readme.read_text()
    assert "old" not in text and text.startswith("intro\n") and text.endswith("rest\n")
    for label in ("| 1-gram KN |", "| 3-gram KN |", "| 3-gram add-one |", "| 2-gram KN |"):
        assert label in text
    # Higher orders fit the generated book better than a unigram model.
    char_table = text.split("**Words**")[0]
    rows = {line.split("|")[1].strip(): float(line.split("|")[2]) for line in char_table.splitlines()
            if line.startswith("| ") and "gram" in line}
    assert rows["3-gram KN"] < rows["1-gram KN"]


def test_lm_report_dry_run_leaves_the_readme_alone(fake_corpus, tmp_path, capsys):
    readme = tmp_path / "README.md"
    readme.write_text("<!-- lm-results:begin -->\nold\n<!-- lm-results:end -->\n")
    assert lm_report.main(["--corpus", str(fake_corpus), "--models", str(tmp_path), "--dry-run",
                           "--readme", str(readme), *FALLBACK]) == 0
    assert "| 3-gram KN |" in capsys.readouterr().out and "old" in readme.read_text()
