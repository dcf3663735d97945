"""The Transformer classifier: tokenizer contract, padding invariance, ONNX export and parity, the script."""

from __future__ import annotations

import csv
import json
import random

import numpy as np
import onnx
import pytest
import torch
from tokenizers import Tokenizer

from training import text_tokenizer as subword
from training.export.onnx_export import session
from training.tasks import text_classification as task
from training.zoo.transformer import TransformerConfig

WORDS = {"positive": ["great", "love", "happy", "awesome", "wonderful"],
         "negative": ["bad", "hate", "awful", "sad", "terrible"],
         "neutral": ["car", "road", "today", "news", "report"]}


def make_texts(n: int, seed: int = 0) -> tuple[list[str], list[str]]:
    rng = random.Random(seed)
    labels = [rng.choice(sorted(WORDS)) for _ in range(n)]
    texts = [" ".join(rng.choice(WORDS[lab] + WORDS["neutral"]) for _ in range(rng.randint(1, 20))) + f" #{i}"
             for i, lab in enumerate(labels)]
    return texts, labels


@pytest.fixture(scope="module")
def tok():
    return subword.train(make_texts(200)[0], subword.TokenizerConfig(vocab_size=120, max_length=16, min_frequency=1))


@pytest.fixture(scope="module")
def model(tok):
    torch.manual_seed(0)
    cfg = TransformerConfig(vocab_size=tok.get_vocab_size(), num_classes=3, max_length=16, d_model=32, heads=4,
                            layers=2, ff_dim=64, dropout=0.1)
    return cfg.build().eval()


@pytest.fixture(scope="module")
def exported(model, tmp_path_factory):
    path = tmp_path_factory.mktemp("onnx") / "model.onnx"
    return path, task.export(model, path)


def test_tokenizer_file_round_trip(tok, tmp_path):
    texts = ["Great CAR today!!", "unseenword xyz", "bad " * 30, ""]
    tok.save(str(tmp_path / subword.TOKENIZER_FILE))
    loaded = Tokenizer.from_file(str(tmp_path / subword.TOKENIZER_FILE))  # what the service does
    ids, mask = subword.encode(tok, texts)
    ids2, mask2 = subword.encode(loaded, texts)
    assert np.array_equal(ids, ids2) and np.array_equal(mask, mask2)
    assert ids.dtype == np.int64 and ids.shape == (4, 16)  # padded to the longest, truncated to max_length


def test_tokenizer_contract(tok):
    (ids,), (mask,) = subword.encode(tok, ["GREAT Car"])
    pieces = [tok.id_to_token(i) for i in ids]
    assert pieces[0] == "[CLS]" and pieces[-1] == "[SEP]" and "great" in pieces  # lowercased
    assert mask.tolist() == [1] * len(ids)
    long_ids, _ = subword.encode(tok, ["love " * 40])
    assert long_ids.shape[1] == 16 and tok.id_to_token(int(long_ids[0, -1])) == "[SEP]"
    assert tok.token_to_id("[PAD]") == 0
    assert tok.encode("zzqx").ids[1] == tok.token_to_id("[UNK]") or "zzqx" not in tok.get_vocab()
    card = subword.preprocess_card(tok, subword.TokenizerConfig(vocab_size=120, max_length=16))
    assert card["tokenizer_file"] == "tokenizer.json" and "vocab_file" not in card
    assert set(card["special_tokens"]) == {"pad", "unk", "cls", "sep", "mask"}


def padded_batches(tok, texts):
    """The same texts alone, in one batch, and in one batch padded to max_length."""
    ids, mask = subword.encode(tok, texts)
    full = np.zeros((len(texts), 16), np.int64)
    full_mask = np.zeros_like(full)
    full[:, :ids.shape[1]], full_mask[:, :ids.shape[1]] = ids, mask
    alone = [subword.encode(tok, [t]) for t in texts]
    return alone, (ids, mask), (full, full_mask)


TEXTS = ["love", "bad road today terrible awful sad", "car news " * 5, "happy"]


def test_padding_does_not_change_logits_in_torch(model, tok):
    alone, batch, full = padded_batches(tok, TEXTS)
    with torch.no_grad():
        ref = np.concatenate([model(torch.from_numpy(i), torch.from_numpy(m)).numpy() for i, m in alone])
        for ids, mask in (batch, full):
            got = model(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()
            np.testing.assert_allclose(got, ref, atol=1e-5)


def test_cls_pooling_is_padding_invariant_too(tok):
    torch.manual_seed(1)
    m = TransformerConfig(vocab_size=tok.get_vocab_size(), num_classes=3, max_length=16, d_model=16, heads=2,
                          layers=1, ff_dim=32, pooling="cls").build().eval()
    alone, _, (ids, mask) = padded_batches(tok, TEXTS)
    with torch.no_grad():
        ref = np.concatenate([m(torch.from_numpy(i), torch.from_numpy(k)).numpy() for i, k in alone])
        np.testing.assert_allclose(m(torch.from_numpy(ids), torch.from_numpy(mask)).numpy(), ref, atol=1e-5)


def test_export_has_dynamic_batch_and_sequence(exported):
    path, opset = exported
    proto = onnx.load(str(path))
    assert [i.name for i in proto.graph.input] == ["input_ids", "attention_mask"]
    assert [o.name for o in proto.graph.output] == ["logits"]
    for inp in proto.graph.input:
        assert inp.type.tensor_type.elem_type == onnx.TensorProto.INT64
        assert all(d.dim_param and not d.HasField("dim_value") for d in inp.type.tensor_type.shape.dim)
    assert opset >= 18


def test_padding_does_not_change_logits_in_onnx(exported, tok):
    sess = session(exported[0])
    run = lambda ids, mask: sess.run(["logits"], {"input_ids": ids, "attention_mask": mask})[0]  # noqa: E731
    alone, batch, full = padded_batches(tok, TEXTS)
    ref = np.concatenate([run(i, m) for i, m in alone])
    for ids, mask in (batch, full):
        np.testing.assert_allclose(run(ids, mask), ref, atol=1e-5)


@pytest.mark.parametrize("batch,length", [(1, 1), (1, 16), (5, 3), (9, 12), (33, 7)])
def test_onnx_parity_at_several_shapes(model, exported, batch, length):
    g = torch.Generator().manual_seed(batch * 100 + length)
    ids = torch.randint(5, model.cfg.vocab_size, (batch, length), generator=g)
    lengths = torch.randint(1, length + 1, (batch,), generator=g)
    mask = (torch.arange(length)[None] < lengths[:, None]).long()  # (B, T), every row has >= 1 token
    ids = ids * mask
    with torch.no_grad():
        expected = model(ids, mask).numpy()
    got = session(exported[0]).run(["logits"], {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})[0]
    assert got.shape == (batch, 3) and got.dtype == np.float32
    assert np.abs(got - expected).max() <= 1e-4
    assert (got.argmax(1) == expected.argmax(1)).all()


def test_check_parity_report(model, exported, tok):
    texts = make_texts(90, seed=5)[0]
    ids, mask = (torch.from_numpy(a) for a in subword.encode(tok, texts))
    report = task.check_parity(model, exported[0], ids, mask, opset=exported[1])
    assert report.reference == "torch" and report.max_abs_diff <= 1e-4 and report.argmax_agreement == 1.0
    assert report.inputs == 2 * sum(task.PARITY_BATCH_SIZES)


def test_length_batches_cover_every_row_once(tok):
    texts, _ = make_texts(150)
    enc = task.Encoded.of(tok, texts, np.arange(150))
    batches = enc.batches(16, shuffle=True, seed=2)
    batches.set_epoch(3)
    seen = torch.cat([y for _, _, y in batches])
    assert len(batches) == 10 and sorted(seen.tolist()) == list(range(150))


def write_csv(path, n=240):
    texts, labels = make_texts(n, seed=9)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["body", "label"])
        w.writerows(zip(texts, labels))
    return path


def test_dry_run_writes_only_under_runs(tmp_path, monkeypatch):
    from zooserve.card import load_card
    from training import train_transformer

    monkeypatch.chdir(tmp_path)
    data = write_csv(tmp_path / "tiny.csv")
    rc = train_transformer.main(["--dry-run", "--data", str(data), "--text-column", "body", "--label-column",
                                 "label", "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "out"),
                                 "--int8", "--no-progress", "--threads", "1", "--d-model", "32", "--ff-dim", "64"])
    assert rc == 0
    assert not (tmp_path / "out").exists() and not (tmp_path / "models").exists()
    root = tmp_path / "runs" / "dry-run" / "models"
    card = load_card(root / "tweets-transformer" / "1")
    assert card.task == "text-classification" and card.family == "transformer/encoder"
    assert card.labels == ["negative", "neutral", "positive"]
    assert [i.shape for i in card.inputs] == [[-1, -1], [-1, -1]] and card.outputs[0].shape == [-1, 3]
    assert card.preprocess.tokenizer_file == "tokenizer.json" and card.preprocess.vocab_file is None
    assert {m.split for m in card.metrics} == {"validation", "test"}
    assert all(m.macro_f1 is not None for m in card.metrics)
    assert card.training.train_config["baseline"]["test_accuracy"] > 0
    assert card.extra_files[0].file == "tokenizer.json"
    qcard = json.loads((root / "tweets-transformer-int8" / "1" / "model.json").read_text())
    assert qcard["quantization"]["accuracy_change"] is not None and qcard["parity"]["reference"] == "onnx-fp32"
    tok = Tokenizer.from_file(str(root / "tweets-transformer-int8" / "1" / "tokenizer.json"))
    assert tok.get_vocab_size() == card.preprocess.vocab_size


def test_mlm_masking_never_touches_special_tokens_or_padding(tok):
    from training.pretrain_mlm import IGNORE, MLMObjective

    torch.manual_seed(0)
    ids, mask = (torch.from_numpy(a) for a in subword.encode(tok, make_texts(200)[0]))
    obj = MLMObjective(tok.get_vocab_size(), tok.token_to_id("[MASK]"), first_ordinary_id=5)
    inputs, targets = obj.mask(ids, mask)
    picked = targets != IGNORE
    assert (ids[picked] >= 5).all() and mask[picked].bool().all()
    assert torch.equal(targets[picked], ids[picked]) and torch.equal(inputs[~picked], ids[~picked])
    rate = picked.sum() / ((ids >= 5) & mask.bool()).sum()
    assert 0.10 < rate < 0.20
    assert 0.7 < (inputs[picked] == obj.mask_id).float().mean() < 0.9


def test_pretrain_then_fine_tune_dry_run(tmp_path):
    from training import pretrain_mlm, train_transformer

    data = write_csv(tmp_path / "tiny.csv")
    common = ["--data", str(data), "--text-column", "body", "--label-column", "label", "--runs", str(tmp_path),
              "--no-progress", "--threads", "1", "--dry-run"]
    assert pretrain_mlm.main([*common, "--d-model", "32", "--ff-dim", "64", "--layers", "1"]) == 0
    init = tmp_path / "dry-run" / "tweets-mlm" / "pretrained"
    assert {p.name for p in init.iterdir()} >= {"tokenizer.json", "encoder.pt", "config.json"}
    assert train_transformer.main([*common, "--init", str(init), "--no-baseline"]) == 0
    card = json.loads((tmp_path / "dry-run" / "models" / "tweets-transformer" / "1" / "model.json").read_text())
    assert card["training"]["model_config"]["layers"] == 1  # the shape came from the pretrained encoder
    assert card["training"]["train_config"]["pretrained"]["unlabelled_texts"] > 0
    other = write_csv(tmp_path / "other.csv", n=150)
    with pytest.raises(ValueError, match="different data set"):
        train_transformer.main([*common[2:], "--data", str(other), "--init", str(init), "--no-baseline"])


def test_book_pieces_are_tweet_sized(tmp_path):
    from training.pretrain_mlm import PIECE_WORDS, book_pieces

    body = "\n\n".join(" ".join(f"word{i}_{j}" for j in range(30)) + "." for i in range(50))
    path = tmp_path / "book.txt"
    path.write_text(f"THE MYSTERIOUS ISLAND\n\n{body}\n\nEnd of the Project Gutenberg\n")
    pieces = book_pieces(str(path))
    assert pieces and all(1 <= len(p.split()) <= PIECE_WORDS for p in pieces)
    assert book_pieces(None) == []
