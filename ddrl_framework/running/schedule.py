"""The RL learning rate at each iteration (``train.lr_schedule``, ``train.lr_warmup_iterations``).

A pure function of the iteration, so a resumed run takes the rates the straight run took, with
no scheduler state in the checkpoint.
"""

from __future__ import annotations

import math

from ddrl_framework.running.config import TrainConfig


def learning_rate(cfg: TrainConfig, iteration: int) -> float:
    """The rate of iteration ``iteration`` (0-based): ``(i + 1) / W`` of ``learning_rate`` over the
    first ``W = lr_warmup_iterations``, then constant, or a cosine from ``learning_rate`` at the end
    of the warm-up to 0 at ``train.iterations``."""
    peak, warmup = cfg.learning_rate, cfg.lr_warmup_iterations
    if iteration < warmup:
        return peak * (iteration + 1) / warmup
    if cfg.lr_schedule == "constant":
        return peak
    progress = (iteration - warmup) / max(cfg.iterations - warmup, 1)
    return peak * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def set_learning_rate(optimizer, rate: float) -> None:
    """Every parameter group of ``optimizer`` at ``rate``."""
    for group in optimizer.param_groups:
        group["lr"] = rate
