"""One rank of a tiny DistributedDataParallel run, launched by tests/test_distributed.py through
`python -m torch.distributed.run --nproc_per_node=2 --standalone tests/ddp_worker.py OUT_DIR`.

Each rank starts from its *own* random LeNet (DDP must broadcast rank 0's weights), trains a few steps
on synthetic images with the distributed sampler, and writes to OUT_DIR:
    rank{R}_init.npy, rank{R}_final.npy   all parameters, flattened (float32)
    rank{R}.json                          world size, its shard of epoch 1, its history
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

from training.data.batches import TensorBatches
from training.engine import distributed
from training.engine.optim import OptimConfig
from training.engine.trainer import TrainConfig, fit
from training.tasks import image_classification as task
from training.zoo.lenet import LeNetConfig

N = 64


def flat(model: torch.nn.Module) -> np.ndarray:
    return torch.cat([p.detach().flatten() for p in model.parameters()]).numpy().copy()


def synthetic(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Noise plus a bright bar whose column depends on the class; identical on every rank."""
    g = torch.Generator().manual_seed(0)
    y = torch.arange(n) % 10
    x = torch.randn(n, 1, 28, 28, generator=g) * 0.3
    for i, label in enumerate(y.tolist()):
        x[i, 0, 4:24, 2 + 2 * label:5 + 2 * label] += 2.0
    return x, y


def main(out_dir: Path) -> int:
    torch.set_num_threads(1)
    device = torch.device("cpu")
    d = distributed.setup(device)
    try:
        torch.manual_seed(100 + d.rank)
        model = LeNetConfig().build()
        init = flat(model)

        x, y = synthetic(N)
        train = TensorBatches(x, y, 8, shuffle=True, seed=0)  # distributed sampler: the process group is up
        val = TensorBatches(x[:16], y[:16], 16, distributed=False)
        shard = TensorBatches(torch.zeros(N, 1), torch.arange(N), 8, shuffle=True, seed=0)
        shard.set_epoch(1)
        epoch1_ids = [i for _, yb in shard for i in yb.tolist()]

        result = fit(model, task.objective, train, val, TrainConfig(epochs=2, progress=False),
                     OptimConfig(name="sgd", lr=0.05, momentum=0.9), device=device, dist=d)

        np.save(out_dir / f"rank{d.rank}_init.npy", init)
        np.save(out_dir / f"rank{d.rank}_final.npy", flat(model))
        (out_dir / f"rank{d.rank}.json").write_text(json.dumps({
            "rank": d.rank, "world_size": d.world_size, "distributed": train.distributed,
            "batches_per_epoch": len(train), "epoch1_ids": epoch1_ids, "history": result.history,
        }))
    finally:
        distributed.teardown(d)
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
