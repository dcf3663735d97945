"""The training loop every family shares: epochs of optimiser steps, validation, early stopping,
gradient clipping, the max-norm constraint, checkpoints with resume, and DDP when torchrun asks for it.

What is specific to a task (how a batch becomes a loss) comes in as an `Objective`, so the loop never
branches on the model type.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Protocol

import torch
from torch import nn
from tqdm import tqdm

from training.engine import checkpoint
from training.engine.distributed import Dist
from training.engine.optim import OptimConfig, Schedule, apply_max_norm, make_optimizer


@dataclass
class StepResult:
    loss: torch.Tensor  # mean loss over the batch, for backward()
    count: int  # items the loss averages over (images, tokens, ...)
    sums: dict[str, float] = field(default_factory=dict)  # extra additive stats, e.g. {"correct": 57}


class Objective(Protocol):
    def __call__(self, model: nn.Module, batch) -> StepResult: ...


@dataclass
class TrainConfig:
    epochs: int = 10
    batch_size: int = 128
    seed: int = 0
    clip_grad: float = 0.0  # max global grad norm; 0 disables
    max_norm: float = 0.0  # max L2 norm of each unit's incoming weights; 0 disables
    patience: int = 0  # epochs without improvement of `monitor` before stopping; 0 disables
    monitor: str = "val_loss"  # history key that picks the best epoch; *_loss is minimised, others maximised
    max_batches: int = 0  # stop each epoch after this many batches (for --dry-run); 0 = all
    progress: bool = True


@dataclass
class FitResult:
    history: list[dict]
    best_epoch: int
    epochs_run: int
    wall_time_s: float
    stopped_early: bool


def _limit(batches: Iterable, n: int):
    for i, b in enumerate(batches):
        if n and i >= n:
            return
        yield b


def _to(batch, device):
    return tuple(t.to(device, non_blocking=True) for t in batch)


@torch.no_grad()
def evaluate(model: nn.Module, objective: Objective, batches: Iterable, device: torch.device,
             max_batches: int = 0) -> dict[str, float]:
    """Mean loss and every extra stat divided by the item count (e.g. correct/n = accuracy)."""
    model.eval()
    total, loss_sum, sums = 0, 0.0, {}
    for batch in _limit(batches, max_batches):
        r = objective(model, _to(batch, device))
        total += r.count
        loss_sum += r.loss.item() * r.count
        for k, v in r.sums.items():
            sums[k] = sums.get(k, 0.0) + v
    return {"loss": loss_sum / max(total, 1), **{k: v / max(total, 1) for k, v in sums.items()}}


def _rename(stats: dict[str, float], prefix: str) -> dict[str, float]:
    # "correct" summed then divided by count is accuracy: name it so in history and plots.
    return {f"{prefix}_{'accuracy' if k == 'correct' else k}": v for k, v in stats.items()}


def fit(
    model: nn.Module,
    objective: Objective,
    train_batches,
    val_batches,
    cfg: TrainConfig,
    optim_cfg: OptimConfig,
    *,
    device: torch.device,
    dist: Dist = Dist(),
    checkpoint_dir: Path | None = None,
    resume: bool = False,
    extra_state: dict | None = None,
    on_epoch: Callable[[dict], None] | None = None,
) -> FitResult:
    """Train `model` in place; on return it holds the weights of the best validation epoch."""
    wrapped = model
    if dist.enabled:
        ids = [device.index] if device.type == "cuda" else None
        wrapped = nn.parallel.DistributedDataParallel(model, device_ids=ids)
    opt = make_optimizer(model.parameters(), optim_cfg)
    steps = len(train_batches) if not cfg.max_batches else min(cfg.max_batches, len(train_batches))
    sched = Schedule(opt, optim_cfg, cfg.epochs, steps)

    history: list[dict] = []
    # Track the monitored value as a score to maximise, so losses and accuracies share one comparison.
    sign = -1.0 if cfg.monitor.endswith("loss") else 1.0
    start_epoch, best_score, best_epoch, best_state, elapsed = 1, -math.inf, 0, None, 0.0
    last_path = checkpoint_dir / "last.pt" if checkpoint_dir else None
    if resume and last_path and last_path.is_file():
        ck = checkpoint.load(last_path)
        if ck.get("monitor") != cfg.monitor:
            raise ValueError(f"{last_path} picked its best epoch by {ck.get('monitor', 'an older rule')!r}, "
                             f"this run by {cfg.monitor!r}: resume with the same --monitor or start afresh")
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        checkpoint.set_rng_state(ck["rng"])
        history, best_score, best_epoch = ck["history"], ck["best_score"], ck["best_epoch"]
        best_state, elapsed = ck["best_model"], ck["wall_time_s"]
        start_epoch = ck["epoch"] + 1

    stopped_early = False
    epoch = start_epoch - 1
    for epoch in range(start_epoch, cfg.epochs + 1):
        t0 = time.monotonic()
        wrapped.train()
        train_batches.set_epoch(epoch)
        total, loss_sum, sums = 0, 0.0, {}
        bar = tqdm(_limit(train_batches, cfg.max_batches), total=steps, desc=f"epoch {epoch}/{cfg.epochs}",
                   disable=not (cfg.progress and dist.is_main), leave=False, mininterval=2.0)
        for batch in bar:
            r = objective(wrapped, _to(batch, device))
            opt.zero_grad(set_to_none=True)
            r.loss.backward()
            if cfg.clip_grad:
                nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad)
            opt.step()
            if cfg.max_norm:
                apply_max_norm(model, cfg.max_norm)
            sched.after_batch()
            total += r.count
            loss_sum += r.loss.item() * r.count
            for k, v in r.sums.items():
                sums[k] = sums.get(k, 0.0) + v
            bar.set_postfix(loss=f"{loss_sum / total:.4f}", refresh=False)
        sched.after_epoch()
        row = {"epoch": epoch, "lr": opt.param_groups[0]["lr"]}
        row |= _rename({"loss": loss_sum / max(total, 1), **{k: v / max(total, 1) for k, v in sums.items()}}, "train")
        row |= _rename(evaluate(model, objective, val_batches, device), "val")
        elapsed += time.monotonic() - t0
        row["wall_time_s"] = round(elapsed, 2)
        history.append(row)
        if cfg.monitor not in row:
            raise KeyError(f"monitor {cfg.monitor!r} is not in the history; it has {sorted(row)}")
        if sign * row[cfg.monitor] > best_score:
            best_score, best_epoch = sign * row[cfg.monitor], epoch
            best_state = copy.deepcopy(model.state_dict())
        if dist.is_main:
            print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()), flush=True)
            if last_path:
                checkpoint.save(last_path, model=model.state_dict(), optimizer=opt.state_dict(),
                                scheduler=sched.state_dict(), rng=checkpoint.rng_state(), history=history,
                                best_score=best_score, monitor=cfg.monitor, best_epoch=best_epoch, best_model=best_state,
                                wall_time_s=elapsed, epoch=epoch, **(extra_state or {}))
        if on_epoch:
            on_epoch(row)
        if cfg.patience and epoch - best_epoch >= cfg.patience:
            stopped_early = True
            break

    if best_state is not None:
        model.load_state_dict(best_state)
    return FitResult(history, best_epoch, epoch, elapsed, stopped_early)
