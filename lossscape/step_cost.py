"""What one training step of a staged model costs with its first k stages frozen (FreezeOut,
claims FO-1..3): FLOPs counted, and wall time measured.

FLOPs: Linear and Conv layers (2 per multiply-add), from hooks on a one-example forward. The
backward is taken as the weight gradients (1x the forward of each trained stage) plus the input
gradients (1x forward), the latter needed only above the first trained stage: with the first k
stages frozen a step costs F + sum_{i>=k} F_i + sum_{i>k} F_i, F = sum_i F_i. Summed over a
FreezeOut run's frozen prefixes this predicts the wall-time ratio a purely compute-bound step
would show (benchmarks/bench_freezeout.py prints it beside measured times).

Wall time: `frozen_step_times` times the engine's step (momentum and Nesterov included) with the
first k stages cut from the graph, in blocks interleaved over k (lossscape.throughput), and
`freezeout_time_ratio` sums those times over a FreezeOut run's schedule: the run's training time
as this session's machine would take it, whichever session trained the run.

Kept apart from lossscape.freezeout on purpose: that module decides what a run computes and is
part of the run cache's key; a cost model must not invalidate cached runs.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from .config import RunConfig
from .freezeout import frozen_prefix, stage_lrs
from .throughput import engine_step_times


def stage_forward_flops(model: nn.Module, input_shape) -> list[float]:
    """Forward FLOPs per example of each of the model's stages (Linear and Conv layers only)."""
    flops = [0.0] * len(model.stages)

    def count(stage):
        def hook(module, inputs, output):
            if isinstance(module, nn.Linear):
                flops[stage] += 2 * output.numel() * module.in_features
            else:  # a convolution: every output element costs one multiply-add per kernel weight
                flops[stage] += 2 * output.numel() * module.in_channels // module.groups * math.prod(module.kernel_size)
        return hook
    handles = [m.register_forward_hook(count(i)) for i, stage in enumerate(model.stages)
               for m in stage.modules() if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d))]
    was_training = model.training
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, *input_shape, dtype=next(model.parameters()).dtype))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return flops


def step_flops(flops: list[float], frozen: int) -> float:
    """FLOPs of one training step (forward + backward) with the first `frozen` stages frozen."""
    return sum(flops) + sum(flops[frozen:]) + sum(flops[frozen + 1:])


def freezeout_flop_ratio(cfg: RunConfig, flops: list[float], total_steps: int) -> float:
    """Compute of a FreezeOut run (cfg's schedule over `total_steps`) over the same run unfrozen."""
    frozen = sum(step_flops(flops, frozen_prefix(stage_lrs(cfg, len(flops), t, total_steps)))
                 for t in range(total_steps))
    return frozen / (total_steps * step_flops(flops, 0))


def frozen_step_times(cfg: RunConfig, frozen_levels, *, steps: int = 10, repeats: int = 5,
                      warmup: int = 3) -> dict[int, np.ndarray]:
    """k frozen stages -> seconds per step of each timed block (`repeats` values), for cfg's model,
    data, batch size, optimizer and device; `warmup` untimed steps per k come first."""
    levels = list(frozen_levels)
    return engine_step_times({k: cfg for k in levels}, frozen={k: k for k in levels}, steps=steps,
                             repeats=repeats, warmup=warmup).step


def freezeout_time_ratio(cfg: RunConfig, n_stages: int, total_steps: int, times: dict[int, np.ndarray]) -> np.ndarray:
    """Per timed block: a FreezeOut run's training time over the same run unfrozen, from step times
    measured at every frozen prefix (k -> seconds per step, one value per block): sum over the
    schedule's steps of the time at that step's frozen prefix, over total_steps x the time at k = 0."""
    counts = np.bincount([frozen_prefix(stage_lrs(cfg, n_stages, t, total_steps)) for t in range(total_steps)],
                         minlength=n_stages)
    frozen = sum(c * np.asarray(times[k]) for k, c in enumerate(counts) if c)
    return frozen / (total_steps * np.asarray(times[0]))
