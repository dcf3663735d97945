"""Optimisers and learning-rate schedules, chosen by name from a config dataclass."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class OptimConfig:
    name: str = "adamw"  # sgd | rmsprop | adam | adamw | adadelta | adamax
    lr: float = 1e-3
    momentum: float = 0.9  # sgd and rmsprop
    nesterov: bool = False  # sgd
    weight_decay: float = 0.0  # L2 penalty (decoupled for adamw)
    schedule: str = "none"  # none | step | cosine | onecycle
    step_size: int = 10  # epochs between decays, for "step"
    gamma: float = 0.1  # decay factor, for "step"
    pct_start: float = 0.25  # warm-up fraction, for "onecycle"
    betas: tuple[float, float] = (0.9, 0.999)  # adam, adamw, adamax (DCGAN uses 0.5, 0.999)


OPTIMIZERS = ("sgd", "rmsprop", "adam", "adamw", "adadelta", "adamax")
SCHEDULES = ("none", "step", "cosine", "onecycle")


def make_optimizer(params, cfg: OptimConfig) -> torch.optim.Optimizer:
    o = torch.optim
    wd = cfg.weight_decay
    factories = {
        "sgd": lambda: o.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov, weight_decay=wd),
        "rmsprop": lambda: o.RMSprop(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=wd),
        "adam": lambda: o.Adam(params, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=wd),
        "adamw": lambda: o.AdamW(params, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=wd),
        "adadelta": lambda: o.Adadelta(params, lr=cfg.lr, weight_decay=wd),
        "adamax": lambda: o.Adamax(params, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=wd),
    }
    if cfg.name not in factories:
        raise ValueError(f"unknown optimizer {cfg.name!r}; choose from {OPTIMIZERS}")
    return factories[cfg.name]()


class Schedule:
    """Wraps a torch LR scheduler and knows whether it steps per batch (one-cycle) or per epoch."""

    def __init__(self, opt: torch.optim.Optimizer, cfg: OptimConfig, epochs: int, steps_per_epoch: int):
        s = torch.optim.lr_scheduler
        self.per_batch = cfg.schedule == "onecycle"
        if cfg.schedule == "none":
            self.sched = s.LambdaLR(opt, lambda _: 1.0)
        elif cfg.schedule == "step":
            self.sched = s.StepLR(opt, step_size=cfg.step_size, gamma=cfg.gamma)
        elif cfg.schedule == "cosine":
            self.sched = s.CosineAnnealingLR(opt, T_max=max(1, epochs))
        elif cfg.schedule == "onecycle":
            # torch divides by (warm-up steps - 1), so exactly one warm-up step would divide by zero.
            if abs(cfg.pct_start * epochs * steps_per_epoch - 1) < 1e-9:
                raise ValueError(f"one-cycle with pct_start {cfg.pct_start} x {epochs} epochs x {steps_per_epoch} "
                                 "steps has exactly one warm-up step, which torch cannot schedule; change pct_start")
            self.sched = s.OneCycleLR(opt, max_lr=cfg.lr, epochs=epochs, steps_per_epoch=steps_per_epoch,
                                      pct_start=cfg.pct_start)
        else:
            raise ValueError(f"unknown schedule {cfg.schedule!r}; choose from {SCHEDULES}")

    def after_batch(self) -> None:
        if self.per_batch:
            self.sched.step()

    def after_epoch(self) -> None:
        if not self.per_batch:
            self.sched.step()

    def state_dict(self) -> dict:
        return self.sched.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.sched.load_state_dict(state)


@torch.no_grad()
def apply_max_norm(model: torch.nn.Module, max_norm: float) -> None:
    """Clamp each unit's incoming weight vector to L2 norm <= max_norm (Srivastava et al.'s c, e.g. 4).

    A Linear weight is (out, in) and a Conv weight (out, in/groups, kh, kw): dim 0 indexes the unit.
    """
    for m in model.modules():
        if isinstance(m, (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d)):
            m.weight.copy_(torch.renorm(m.weight, p=2, dim=0, maxnorm=max_norm))
