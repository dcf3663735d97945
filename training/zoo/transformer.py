"""A Transformer encoder text classifier (post-LN, as in BERT), with padding masked everywhere.

    input_ids (B, T) int64 -embed + learned positions-> (B, T, D) -N x [MHA -> add & LayerNorm -> MLP ->
    add & LayerNorm]-> (B, T, D) -masked mean over real tokens, or the [CLS] row-> (B, D) -linear-> logits (B, C)

Attention is written out rather than taken from nn.TransformerEncoder: its fused fast path and nested
tensors do not export, and writing it here keeps the masking visible. Padding keys get a large negative
score, so their softmax weight is exactly 0 in float32, and the pooling ignores padded rows: a text's
logits do not depend on how much padding its batch adds (tests check this in PyTorch and ONNX).
The same `Encoder`, with `MLMHead`, is what masked-LM pretraining (`training/pretrain_mlm.py`) trains.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

POOLINGS = ("mean", "cls")
NEG = -1e9  # added to padded keys' scores; exp(NEG - max) is exactly 0 in float32


@dataclass(frozen=True)
class TransformerConfig:
    vocab_size: int = 0  # set from the tokenizer at training time
    num_classes: int = 0  # set from the labels at training time
    max_length: int = 64  # positions, [CLS] and [SEP] included
    d_model: int = 128
    heads: int = 4
    layers: int = 2
    ff_dim: int = 256
    dropout: float = 0.1
    pooling: str = "mean"  # mean | cls
    pad_id: int = 0
    norm_eps: float = 1e-5  # LayerNorm epsilon; BERT checkpoints use 1e-12

    @property
    def family(self) -> str:
        return "transformer/encoder"

    def build(self) -> "TransformerClassifier":
        if self.vocab_size < 2 or self.num_classes < 2:
            raise ValueError("vocab_size and num_classes must be set (>= 2) before building")
        if self.d_model % self.heads:
            raise ValueError(f"d_model {self.d_model} is not divisible by heads {self.heads}")
        if self.pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {self.pooling!r}; choose from {POOLINGS}")
        return TransformerClassifier(self)


class SelfAttention(nn.Module):
    def __init__(self, d: int, heads: int, dropout: float):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(d, 3 * d)
        self.out = nn.Linear(d, d)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, key_bias: torch.Tensor) -> torch.Tensor:
        """x (B, T, D), key_bias (B, 1, 1, T): 0 for real tokens, NEG for padding."""
        B, T, D = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)  # each (B, h, T, hs)
        scores = q @ k.transpose(-2, -1) / math.sqrt(D // self.heads) + key_bias  # (B, h, T, T)
        weights = self.drop(scores.softmax(-1))
        y = (weights @ v).transpose(1, 2).reshape(B, T, D)  # (B, T, h * hs)
        return self.out(y)


class EncoderBlock(nn.Module):
    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.attn = SelfAttention(cfg.d_model, cfg.heads, cfg.dropout)
        self.norm1 = nn.LayerNorm(cfg.d_model, eps=cfg.norm_eps)
        self.mlp = nn.Sequential(nn.Linear(cfg.d_model, cfg.ff_dim), nn.GELU(), nn.Dropout(cfg.dropout),
                                 nn.Linear(cfg.ff_dim, cfg.d_model))
        self.norm2 = nn.LayerNorm(cfg.d_model, eps=cfg.norm_eps)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, key_bias: torch.Tensor) -> torch.Tensor:
        x = self.norm1(x + self.drop(self.attn(x, key_bias)))  # (B, T, D)
        return self.norm2(x + self.drop(self.mlp(x)))


class Encoder(nn.Module):
    """Token + position embeddings and the encoder blocks: (ids, mask) (B, T) -> hidden states (B, T, D)."""

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.tokens = nn.Embedding(cfg.vocab_size, cfg.d_model, padding_idx=cfg.pad_id)
        self.positions = nn.Embedding(cfg.max_length, cfg.d_model)
        self.norm = nn.LayerNorm(cfg.d_model, eps=cfg.norm_eps)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(EncoderBlock(cfg) for _ in range(cfg.layers))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        T = input_ids.shape[1]
        x = self.tokens(input_ids) + self.positions.weight[:T]  # (B, T, D) + (T, D)
        x = self.drop(self.norm(x))
        key_bias = (1.0 - attention_mask.to(x.dtype))[:, None, None, :] * NEG  # (B, 1, 1, T)
        for block in self.blocks:
            x = block(x, key_bias)
        return x


class TransformerClassifier(nn.Module):
    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.drop = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(cfg.d_model, cfg.num_classes)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """input_ids, attention_mask (B, T) int64 (mask 1 = real token) -> logits (B, C)."""
        h = self.encoder(input_ids, attention_mask)  # (B, T, D)
        if self.cfg.pooling == "cls":
            pooled = h[:, 0]  # (B, D): the [CLS] position
        else:
            m = attention_mask.to(h.dtype).unsqueeze(-1)  # (B, T, 1)
            pooled = (h * m).sum(1) / m.sum(1).clamp(min=1.0)  # (B, D)
        return self.head(self.drop(pooled))


class MLMHead(nn.Module):
    """Masked-LM pretraining head tied to the token embeddings: hidden (B, T, D) -> vocabulary logits (B, T, V)."""

    def __init__(self, embedding: nn.Embedding):
        super().__init__()
        d = embedding.embedding_dim
        self.transform = nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.LayerNorm(d))
        self.embedding = embedding
        self.bias = nn.Parameter(torch.zeros(embedding.num_embeddings))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return F.linear(self.transform(h), self.embedding.weight, self.bias)
