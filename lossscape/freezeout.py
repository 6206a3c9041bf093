"""FreezeOut (Brock et al. 2017): per-stage cosine-annealed LRs; a stage whose LR reached zero is
frozen, which the model enacts by detaching its output (no backward pass below it) and the engine
by dropping its parameters from the update."""
from __future__ import annotations

from .config import RunConfig
from .schedules import freezeout_fractions, freezeout_lr


def stage_lrs(cfg: RunConfig, n_stages: int, step: int, total_steps: int) -> list[float]:
    """The LR of every stage at 0-based `step`."""
    return [freezeout_lr(i, n_stages, step, total_steps, cfg.lr, cfg.freeze_t0, cfg.freeze_spacing,
                         cfg.freeze_scale_lr) for i in range(n_stages)]


def frozen_prefix(lrs: list[float]) -> int:
    """How many leading stages are frozen: stages freeze in order, so count the leading zeros."""
    k = 0
    while k < len(lrs) and lrs[k] == 0.0:
        k += 1
    return k


def freeze_steps(cfg: RunConfig, n_stages: int, total_steps: int) -> list[float]:
    """The step at which each stage freezes (the last one trains to the end)."""
    return [f * total_steps for f in freezeout_fractions(n_stages, cfg.freeze_t0, cfg.freeze_spacing)]
