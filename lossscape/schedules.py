"""Learning rate (and batch size) as pure functions of the step.

Steps are counted from 0 by the engine; the snapshot and FreezeOut formulas of the sources use a
1-based iteration t, and the functions that implement them say so.
"""
from __future__ import annotations

import math

from .config import RunConfig


def snapshot_lr(t: int, T: int, M: int, lr0: float) -> float:
    """Huang et al.'s cyclic cosine: lr0/2 (cos(pi mod(t-1, ceil(T/M)) / ceil(T/M)) + 1), t 1-based."""
    cycle = math.ceil(T / M)
    return lr0 / 2 * (math.cos(math.pi * ((t - 1) % cycle) / cycle) + 1)


def snapshot_steps(T: int, M: int) -> list[int]:
    """The 1-based iterations that end a cycle, where a snapshot is taken (the last is T)."""
    cycle = math.ceil(T / M)
    return sorted({min(k * cycle, T) for k in range(1, M + 1)})


def freezeout_fractions(n_layers: int, t0: float = 0.5, spacing: str = "cubic") -> list[float]:
    """t_i / T for each layer: s(t0 + (1 - t0) i / (n - 1)), s the identity or the cube.

    With cubic spacing t0 is given before the cube (Brock et al.), so the first layer freezes at
    t0**3 of training. The last layer gets s(1) = 1: it trains to the end.
    """
    if n_layers == 1:
        return [1.0]
    s = (lambda v: v ** 3) if spacing == "cubic" else (lambda v: v)
    return [s(t0 + (1 - t0) * i / (n_layers - 1)) for i in range(n_layers)]


def freezeout_lr(layer: int, n_layers: int, t: int, T: int, lr0: float, t0: float = 0.5,
                 spacing: str = "cubic", scale_lr: bool = True) -> float:
    """Layer-wise cosine annealing lr_i(t) = lr_i(0)/2 (1 + cos(pi t / t_i)); 0 once t >= t_i.

    lr_i(0) = lr0 / (t_i / T) when scaled, so every layer takes about the same total step length.
    """
    frac = freezeout_fractions(n_layers, t0, spacing)[layer]
    t_i = frac * T
    if t >= t_i:
        return 0.0
    lr_i0 = lr0 / frac if scale_lr else lr0
    return lr_i0 / 2 * (1 + math.cos(math.pi * t / t_i))


def lr_at(cfg: RunConfig, step: int, total_steps: int, epoch: float) -> float:
    """The model-wide LR at 0-based `step`, `epoch` being the fractional epoch it falls in
    (FreezeOut's per-layer rates: `freezeout_lr`)."""
    if cfg.schedule == "cyclic_cosine":
        return snapshot_lr(step + 1, total_steps, cfg.snapshots, cfg.lr)
    if cfg.schedule == "step":
        if cfg.decay_target == "batch":
            return cfg.lr
        return cfg.lr * cfg.decay_factor ** sum(epoch >= e for e in cfg.decay_epochs)
    peak = cfg.effective_lr
    if cfg.warmup_epochs and epoch < cfg.warmup_epochs:
        # Goyal et al.'s gradual warmup: from the unscaled LR up to the scaled one, linearly.
        return cfg.lr + (peak - cfg.lr) * epoch / cfg.warmup_epochs
    return peak


def batch_size_at(cfg: RunConfig, epoch: int, n_train: int) -> int:
    """The batch in 0-based `epoch`: grows by 1/decay_factor at each decay epoch when the schedule
    decays the batch instead of the LR (Smith et al. 2018), capped at the training set."""
    if cfg.schedule != "step" or cfg.decay_target != "batch":
        return cfg.batch_size
    k = sum(epoch >= e for e in cfg.decay_epochs)
    return min(round(cfg.batch_size / cfg.decay_factor ** k), n_train)
