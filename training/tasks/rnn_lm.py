"""Recurrent LMs: truncated-BPTT batches over a token stream, the stateful objective, and stream scoring."""

from __future__ import annotations

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

from training.engine.trainer import StepResult


class StreamBatches:
    """A token stream cut into `rows` parallel rows, read in consecutive windows of `bptt` tokens.

    Row r holds the r-th contiguous slice of the stream, so window i+1 of a row continues window i: the
    objective carries the recurrent state across windows (truncated backpropagation through time). Each
    epoch starts at a random offset below `bptt`, so the truncation points move between epochs. Under
    torchrun every rank takes its own contiguous share of the rows.
    Yields (x (rows, T), y (rows, T), first (bool scalar: reset the state)).
    """

    def __init__(self, stream: np.ndarray, rows: int, bptt: int, *, shuffle_offset: bool = False, seed: int = 0):
        if len(stream) < rows * 2:
            raise ValueError(f"a stream of {len(stream)} tokens cannot fill {rows} rows")
        self.stream, self.rows, self.bptt = np.asarray(stream, dtype=np.int64), rows, bptt
        self.shuffle_offset, self.seed, self.epoch = shuffle_offset, seed, 0
        self.rank, self.world = (dist.get_rank(), dist.get_world_size()) if dist.is_available() and dist.is_initialized() else (0, 1)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _grid(self):
        offset = int(np.random.default_rng(self.seed * 100_003 + self.epoch).integers(self.bptt)) if self.shuffle_offset else 0
        data = self.stream[offset:]
        per_row = (len(data) - 1) // self.rows
        x = data[:per_row * self.rows].reshape(self.rows, per_row)  # (rows, per_row)
        y = data[1:per_row * self.rows + 1].reshape(self.rows, per_row)  # next tokens
        share = np.array_split(np.arange(self.rows), self.world)[self.rank]
        return torch.from_numpy(x[share]), torch.from_numpy(y[share])

    def __len__(self) -> int:
        per_row = (len(self.stream) - self.bptt - 1) // self.rows if self.shuffle_offset else (len(self.stream) - 1) // self.rows
        return max(1, -(-per_row // self.bptt))

    def __iter__(self):
        x, y = self._grid()
        for i, start in enumerate(range(0, x.shape[1], self.bptt)):
            if i >= len(self):
                return
            yield x[:, start:start + self.bptt], y[:, start:start + self.bptt], torch.tensor(i == 0)


class TBPTTObjective:
    """Next-token cross-entropy that carries the recurrent state from one window to the next.

    The state is detached after each window (the truncation), and reset to zeros when a batch says it is
    the first of a pass, so training and evaluation passes never leak state into each other.
    """

    def __init__(self):
        self.state = None

    def __call__(self, model, batch):
        x, y, first = batch  # x, y (B, T) int64
        if bool(first) or self.state is None or self.state[0].shape[1] != x.shape[0]:
            self.state = ()
        logits, *state = model(x, *self.state)  # logits (B, T, V); state tensors (L, B, H)
        self.state = tuple(s.detach() for s in state)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        return StepResult(loss, y.numel())
