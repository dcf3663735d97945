"""Mini-batches straight from in-memory tensors, with an optional distributed sampler.

Fashion-MNIST fits in memory many times over, so indexing whole tensors with a batch of indices beats a
DataLoader that fetches and collates one sample at a time. Under `torchrun`, a DistributedSampler gives
every rank its own disjoint shard of each epoch's permutation.
"""

from __future__ import annotations

from typing import Callable, Iterator

import torch
import torch.distributed as dist
from torch.utils.data import BatchSampler, DistributedSampler, RandomSampler, SequentialSampler

BatchTransform = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


class TensorBatches:
    """Iterate over `(x[idx], y[idx])` batches. `set_epoch` reseeds shuffling and augmentation."""

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        batch_size: int,
        *,
        shuffle: bool = False,
        seed: int = 0,
        transform: BatchTransform | None = None,
        distributed: bool | None = None,
    ):
        if len(x) != len(y):
            raise ValueError(f"x has {len(x)} rows but y has {len(y)}")
        self.x, self.y, self.batch_size = x, y, batch_size
        self.shuffle, self.seed, self.transform = shuffle, seed, transform
        self.epoch = 0
        if distributed is None:
            distributed = dist.is_available() and dist.is_initialized()
        self.distributed = distributed

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _sampler(self):
        n = range(len(self.x))
        if self.distributed:
            s = DistributedSampler(n, shuffle=self.shuffle, seed=self.seed, drop_last=self.shuffle)
            s.set_epoch(self.epoch)
            return s
        if self.shuffle:
            gen = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            return RandomSampler(n, generator=gen)
        return SequentialSampler(n)

    def __len__(self) -> int:
        return len(BatchSampler(self._sampler(), self.batch_size, drop_last=False))

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        rank = dist.get_rank() if self.distributed else 0
        gen = torch.Generator().manual_seed((self.seed * 100_003 + self.epoch) * 1_009 + rank)
        for idx in BatchSampler(self._sampler(), self.batch_size, drop_last=False):
            idx = torch.as_tensor(idx)
            xb = self.x[idx]
            if self.transform is not None:
                xb = self.transform(xb, gen)
            yield xb, self.y[idx]
