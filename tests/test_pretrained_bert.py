"""Starting the encoder from a BERT checkpoint: the weight mapping against an independent numpy BERT, the
checkpoint's tokenizer, clear errors, and the training script's --init-bert path end to end (dry run)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from scipy.special import erf

from tests.test_transformer import make_texts, write_csv
from training import pretrained_bert as pb
from training import text_tokenizer as subword
from training.zoo.transformer import TransformerConfig

HIDDEN, HEADS, LAYERS, FF, POSITIONS = 16, 4, 2, 32, 40


def bert_weights(vocab: int, prefix: str = "") -> dict[str, torch.Tensor]:
    """Random weights under Hugging Face BertModel's names (`prefix` "bert." as BertFor* models save them)."""
    g = torch.Generator().manual_seed(0)
    r = lambda *shape: torch.randn(*shape, generator=g) * 0.3  # noqa: E731
    w = {"embeddings.word_embeddings.weight": r(vocab, HIDDEN),
         "embeddings.position_embeddings.weight": r(POSITIONS, HIDDEN),
         "embeddings.token_type_embeddings.weight": r(2, HIDDEN),
         "embeddings.LayerNorm.weight": 1 + r(HIDDEN), "embeddings.LayerNorm.bias": r(HIDDEN)}
    for i in range(LAYERS):
        p = f"encoder.layer.{i}."
        for name, (o, n) in {"attention.self.query": (HIDDEN, HIDDEN), "attention.self.key": (HIDDEN, HIDDEN),
                             "attention.self.value": (HIDDEN, HIDDEN), "attention.output.dense": (HIDDEN, HIDDEN),
                             "intermediate.dense": (FF, HIDDEN), "output.dense": (HIDDEN, FF)}.items():
            w[p + name + ".weight"], w[p + name + ".bias"] = r(o, n), r(o)
        for ln in ("attention.output.LayerNorm", "output.LayerNorm"):
            w[p + ln + ".weight"], w[p + ln + ".bias"] = 1 + r(HIDDEN), r(HIDDEN)
    w["pooler.dense.weight"] = r(HIDDEN, HIDDEN)  # present in real checkpoints, unused by the encoder
    return {prefix + k: v for k, v in w.items()}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bert")
    tok = subword.train(make_texts(300, seed=3)[0], subword.TokenizerConfig(vocab_size=150, max_length=128,
                                                                             min_frequency=1))
    tok.save(str(folder / "tokenizer.json"))
    save_file(bert_weights(tok.get_vocab_size(), prefix="bert."), str(folder / "model.safetensors"))
    config = {"model_type": "bert", "hidden_act": "gelu", "hidden_size": HIDDEN, "num_attention_heads": HEADS,
              "num_hidden_layers": LAYERS, "intermediate_size": FF, "max_position_embeddings": POSITIONS,
              "layer_norm_eps": 1e-12, "vocab_size": tok.get_vocab_size(), "pad_token_id": 0,
              "type_vocab_size": 2, "position_embedding_type": "absolute"}
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def numpy_bert(w: dict[str, np.ndarray], ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """BERT's encoder as its paper and Hugging Face write it, separate q/k/v and segment embeddings: (B, T) -> (B, T, D)."""
    def ln(x, name):
        mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + 1e-12) * w[name + ".weight"] + w[name + ".bias"]

    def dense(x, name):
        return x @ w[name + ".weight"].T + w[name + ".bias"]

    B, T = ids.shape
    e = "bert.embeddings."
    x = w[e + "word_embeddings.weight"][ids] + w[e + "position_embeddings.weight"][:T] + w[e + "token_type_embeddings.weight"][0]
    x = ln(x, e + "LayerNorm")
    hs = HIDDEN // HEADS
    for i in range(LAYERS):
        p = f"bert.encoder.layer.{i}."
        q, k, v = (dense(x, p + f"attention.self.{n}").reshape(B, T, HEADS, hs).transpose(0, 2, 1, 3)
                   for n in ("query", "key", "value"))  # (B, h, T, hs)
        scores = q @ k.transpose(0, 1, 3, 2) / np.sqrt(hs) + np.where(mask[:, None, None, :] > 0, 0.0, -1e4)
        attn = np.exp(scores - scores.max(-1, keepdims=True))
        attn /= attn.sum(-1, keepdims=True)
        ctx = (attn @ v).transpose(0, 2, 1, 3).reshape(B, T, HIDDEN)
        x = ln(x + dense(ctx, p + "attention.output.dense"), p + "attention.output.LayerNorm")
        h = dense(x, p + "intermediate.dense")
        h = 0.5 * h * (1 + erf(h / np.sqrt(2)))  # exact (erf) GELU, as BERT's "gelu"
        x = ln(x + dense(h, p + "output.dense"), p + "output.LayerNorm")
    return x


def our_encoder(folder, max_length: int):
    cfg = pb.read_config(folder)
    model_cfg = TransformerConfig(num_classes=3, max_length=max_length, dropout=0.0, **pb.model_overrides(cfg, max_length))
    model = model_cfg.build().eval()
    model.encoder.load_state_dict(pb.encoder_state(folder, cfg, max_length))
    return model


def test_mapped_weights_reproduce_an_independent_bert(checkpoint):
    from safetensors.numpy import load_file

    model = our_encoder(checkpoint, 24)
    tok = pb.load_tokenizer(checkpoint, 24)
    enc = tok.encode_batch(["great car today", "bad awful sad terrible road news report " * 2, "love"])
    ids = np.array([e.ids for e in enc], dtype=np.int64)  # (3, T), padded to the longest
    mask = np.array([e.attention_mask for e in enc], dtype=np.int64)
    with torch.no_grad():
        ours = model.encoder(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()
    ref = numpy_bert(load_file(str(checkpoint / "model.safetensors")), ids, mask)
    real = mask.astype(bool)
    assert np.abs(ours[real] - ref[real]).max() < 1e-4  # padded positions differ by design (masked out later)
    assert np.abs(ours[real]).max() > 0.1  # the comparison is between real activations, not zeros


def test_checkpoint_tokenizer_truncates_and_pads_to_the_longest(checkpoint):
    tok = pb.load_tokenizer(checkpoint, 10)
    a, b = tok.encode_batch(["great", "bad " * 50])
    assert len(a.ids) == len(b.ids) == 10 and sum(a.attention_mask) == 3  # [CLS] great [SEP], then padding
    assert b.tokens[0] == "[CLS]" and b.tokens[-1] == "[SEP]" and sum(b.attention_mask) == 10
    assert a.ids[-1] == tok.token_to_id("[PAD]")


def test_positions_table_is_cut_and_segment_zero_folded_in(checkpoint):
    state = pb.encoder_state(checkpoint, pb.read_config(checkpoint), 12)
    raw = bert_weights(state["tokens.weight"].shape[0])
    assert state["positions.weight"].shape == (12, HIDDEN)
    expect = raw["embeddings.position_embeddings.weight"][:12] + raw["embeddings.token_type_embeddings.weight"][0]
    assert torch.allclose(state["positions.weight"], expect)


def test_clear_errors(checkpoint, tmp_path):
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        pb.read_config(tmp_path)
    with pytest.raises(ValueError, match="exceeds the checkpoint's 40 positions"):
        pb.model_overrides(pb.read_config(checkpoint), 64)
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        (tmp_path / name).write_bytes((checkpoint / name).read_bytes())
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "roberta"}))
    with pytest.raises(ValueError, match="only BERT encoders"):
        pb.read_config(tmp_path)


def test_fine_tune_from_checkpoint_dry_run(checkpoint, tmp_path):
    from zooserve.card import load_card
    from training import train_transformer

    data = write_csv(tmp_path / "tiny.csv")
    rc = train_transformer.main(["--dry-run", "--data", str(data), "--text-column", "body", "--label-column", "label",
                                 "--runs", str(tmp_path), "--no-progress", "--threads", "1", "--no-baseline",
                                 "--init-bert", str(checkpoint), "--max-length", "32", "--freeze-embeddings"])
    assert rc == 0
    folder = tmp_path / "dry-run" / "models" / "tweets-transformer" / "1"
    card = load_card(folder)
    pre = card.training.train_config["pretrained"]
    assert pre["kind"] == "bert-checkpoint" and pre["source"] == str(checkpoint)
    assert pre["weights_sha256"] == pb.hashlib.sha256((checkpoint / "model.safetensors").read_bytes()).hexdigest()
    assert card.training.model_config_["d_model"] == HIDDEN and card.training.model_config_["norm_eps"] == 1e-12
    assert "fine-tuned from" in card.description
    assert card.preprocess.max_length == 32
    served = subword.load(folder / "tokenizer.json")  # the file the service reads: the checkpoint's vocabulary
    assert served.get_vocab() == subword.load(checkpoint / "tokenizer.json").get_vocab()
    assert len(served.encode("bad " * 100).ids) == 32


def test_init_and_init_bert_are_alternatives(checkpoint, tmp_path):
    from training import train_transformer

    with pytest.raises(SystemExit, match="alternatives"):
        train_transformer.main(["--dry-run", "--data", str(write_csv(tmp_path / "t.csv")), "--text-column", "body",
                                "--label-column", "label", "--runs", str(tmp_path), "--init", str(tmp_path),
                                "--init-bert", str(checkpoint), "--no-baseline"])
