"""What one training step of a staged model costs with its first k stages frozen (FreezeOut,
claims FO-1..3): FLOPs counted, and wall time measured.

FLOPs: Linear and Conv layers (2 per multiply-add), from hooks on a one-example forward. The
backward is taken as the weight gradients (1x the forward of each trained stage) plus the input
gradients (1x forward), the latter needed only above the first trained stage: with the first k
stages frozen a step costs F + sum_{i>=k} F_i + sum_{i>k} F_i, F = sum_i F_i. Summed over a
FreezeOut run's frozen prefixes this predicts the wall-time ratio a purely compute-bound step
would show (benchmarks/bench_freezeout.py prints it beside measured times).

Wall time: `frozen_step_times` times the engine's step with the first k stages cut from the
graph, in blocks interleaved over k (lossscape.throughput.interleaved_step_times).

Kept apart from lossscape.freezeout on purpose: that module decides what a run computes and is
part of the run cache's key; a cost model must not invalidate cached runs.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from .config import ConfigError, RunConfig
from .data import load_data
from .freezeout import frozen_prefix, stage_lrs
from .models import init_model
from .throughput import interleaved_step_times


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
    data, batch size, LR and device; `warmup` untimed steps per k come first."""
    ds, bs = load_data(cfg), cfg.batch_size
    if bs > len(ds.y_train):
        raise ConfigError(f"batch_size: got {bs}; allowed: 1..{len(ds.y_train)} (the {cfg.dataset} training set)")
    n_stages = len(init_model(cfg, cfg.seed, ds.input_shape, ds.n_classes).stages)
    levels = list(frozen_levels)
    if any(not 0 <= k < n_stages for k in levels):
        raise ConfigError(f"frozen_levels: got {levels}; allowed: 0..{n_stages - 1} (at least one stage trains)")
    return interleaved_step_times(cfg, levels, lambda k: (bs, k), steps=steps, repeats=repeats, warmup=warmup)
