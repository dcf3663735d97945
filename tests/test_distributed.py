"""DistributedDataParallel under torchrun on CPU (gloo): two ranks, one model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from training.engine.distributed import Dist, resolve_device, setup

ROOT = Path(__file__).resolve().parents[1]
WORKER = Path(__file__).with_name("ddp_worker.py")


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    """Launch tests/ddp_worker.py on two CPU ranks; return the folder the ranks wrote to."""
    out = tmp_path_factory.mktemp("ddp")
    env = {k: v for k, v in os.environ.items()
           if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    env |= {"OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "CUDA_VISIBLE_DEVICES": ""}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone", str(WORKER), str(out)]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"torchrun failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return out


def rank_files(out: Path, rank: int) -> tuple[np.ndarray, np.ndarray, dict]:
    return (np.load(out / f"rank{rank}_init.npy"), np.load(out / f"rank{rank}_final.npy"),
            json.loads((out / f"rank{rank}.json").read_text()))


def test_ranks_end_with_identical_trained_weights(ddp_run):
    init0, final0, info0 = rank_files(ddp_run, 0)
    init1, final1, info1 = rank_files(ddp_run, 1)
    assert info0["world_size"] == info1["world_size"] == 2
    assert info0["distributed"] and info1["distributed"]
    assert not np.array_equal(init0, init1)  # each rank started from its own random weights...
    np.testing.assert_array_equal(final0, final1)  # ...DDP broadcast rank 0's and kept them in sync
    assert final0.shape == (61706,)
    assert np.abs(final0 - init0).max() > 1e-3  # and training moved them


def test_each_rank_trains_on_its_own_shard(ddp_run):
    _, _, info0 = rank_files(ddp_run, 0)
    _, _, info1 = rank_files(ddp_run, 1)
    ids0, ids1 = info0["epoch1_ids"], info1["epoch1_ids"]
    assert len(ids0) == len(ids1) == 32
    assert not set(ids0) & set(ids1)
    assert sorted(ids0 + ids1) == list(range(64))
    assert info0["batches_per_epoch"] == info1["batches_per_epoch"] == 4


def test_ranks_agree_on_validation(ddp_run):
    _, _, info0 = rank_files(ddp_run, 0)
    _, _, info1 = rank_files(ddp_run, 1)
    h0, h1 = info0["history"], info1["history"]
    assert [r["epoch"] for r in h0] == [r["epoch"] for r in h1] == [1, 2]
    # same weights and the same (undistributed) validation set: the same validation figures
    assert [r["val_loss"] for r in h0] == [r["val_loss"] for r in h1]
    # but training statistics come from each rank's own shard
    assert [r["train_loss"] for r in h0] != [r["train_loss"] for r in h1]


def test_single_process_is_world_size_one(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    d = setup(resolve_device("cpu"))
    assert d == Dist() and d.is_main and not d.enabled


def test_resolve_device():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type in ("cpu", "cuda")


def test_resolve_device_refuses_missing_cuda(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="no CUDA device"):
        resolve_device("cuda")
    assert resolve_device("auto").type == "cpu"
