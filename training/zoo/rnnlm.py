"""Recurrent language models: Embedding -> RNN (Elman tanh), LSTM or GRU -> Linear to the vocabulary.

    tokens (B, T) int64 -embed-> (B, T, E) -cell, state (L, B, H)-> (B, T, H) -dropout, linear-> logits (B, T, V)

The state goes in and comes out explicitly (`h`, plus `c` for the LSTM, each (L, B, H)), so one exported
graph serves the prompt (T = prompt length) and every decode step (T = 1), and a server can keep each
sequence's state between steps. With `tie_weights` the output layer reuses the embedding matrix (Press &
Wolf 2017), which needs `embedding_dim == hidden_size`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

CELLS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


@dataclass(frozen=True)
class RNNLMConfig:
    cell: str = "lstm"  # rnn | lstm | gru
    vocab_size: int = 0  # set from the vocabulary at training time
    embedding_dim: int = 256
    hidden_size: int = 512
    layers: int = 1
    dropout: float = 0.0  # on the embeddings, between layers, and before the output layer
    tie_weights: bool = False

    @property
    def family(self) -> str:
        return f"rnn/{self.cell}"

    @property
    def state_names(self) -> tuple[str, ...]:
        return ("h", "c") if self.cell == "lstm" else ("h",)

    def build(self) -> "RNNLM":
        if self.cell not in CELLS:
            raise ValueError(f"unknown cell {self.cell!r}; choose from {sorted(CELLS)}")
        if self.vocab_size < 2:
            raise ValueError("vocab_size must be set (>= 2) before building")
        if self.tie_weights and self.embedding_dim != self.hidden_size:
            raise ValueError(f"tie_weights needs embedding_dim == hidden_size, got {self.embedding_dim} "
                             f"and {self.hidden_size}")
        return RNNLM(self)


class RNNLM(nn.Module):
    def __init__(self, cfg: RNNLMConfig):
        super().__init__()
        self.cfg = cfg
        self.embedding = nn.Embedding(cfg.vocab_size, cfg.embedding_dim)
        extra = {"nonlinearity": "tanh"} if cfg.cell == "rnn" else {}
        self.rnn = CELLS[cfg.cell](cfg.embedding_dim, cfg.hidden_size, num_layers=cfg.layers, batch_first=True,
                                   dropout=cfg.dropout if cfg.layers > 1 else 0.0, **extra)
        self.drop = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(cfg.hidden_size, cfg.vocab_size)
        if cfg.tie_weights:
            self.head.weight = self.embedding.weight

    def initial_state(self, batch: int, device=None) -> tuple[torch.Tensor, ...]:
        """Zeros, one (L, B, H) tensor per state name."""
        shape = (self.cfg.layers, batch, self.cfg.hidden_size)
        return tuple(torch.zeros(shape, device=device) for _ in self.cfg.state_names)

    def forward(self, tokens: torch.Tensor, *state: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """tokens (B, T), state as from `initial_state` -> (logits (B, T, V), *new state)."""
        if not state:
            state = self.initial_state(tokens.shape[0], tokens.device)
        x = self.drop(self.embedding(tokens))  # (B, T, E)
        if self.cfg.cell == "lstm":
            y, (h, c) = self.rnn(x, (state[0], state[1]))  # y (B, T, H)
            new_state = (h, c)
        else:
            y, h = self.rnn(x, state[0])
            new_state = (h,)
        return (self.head(self.drop(y)), *new_state)
