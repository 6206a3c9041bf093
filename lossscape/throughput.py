"""Timing one SGD step in the session (claims BS-6, FO-3): nothing here is cached, since a time
belongs to the machine and the moment it was measured on.

The timed step is the engine's, on a single model (a population's stacked step would time several
models at once): gather a batch from the training tensors on the device, forward (with the first
k stages cut from the graph where a level freezes some), mean cross-entropy, backward, the plain
SGD update with foreach ops (torch.optim's first use imports torch._dynamo, seconds that would
land in the first timed block). Per level, `warmup` untimed steps come first; then `repeats`
timed blocks of `steps` steps each, interleaved over the levels (round-robin), so a change in the
machine's load during the sweep falls on every level alike.
"""
from __future__ import annotations

import time
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from .config import ConfigError, RunConfig
from .data import load_data
from .models import init_model, stage_of


def interleaved_step_times(cfg: RunConfig, levels, setting: Callable[[int], tuple[int, int]], *,
                           steps: int, repeats: int, warmup: int) -> dict[int, np.ndarray]:
    """level -> seconds per step of each timed block (`repeats` values).

    `setting(level)` gives (batch size, number of leading stages frozen) for that level.
    """
    ds = load_data(cfg)
    device = torch.device(cfg.device)
    X = ds.X_train.to(device, getattr(torch, cfg.dtype))
    y = ds.y_train.to(device)
    n = len(y)
    model = init_model(cfg, cfg.seed, ds.input_shape, ds.n_classes).to(device).train()
    named = list(model.named_parameters())
    order = torch.randperm(n, generator=torch.Generator().manual_seed(cfg.seed)).to(device)
    starts = torch.Generator().manual_seed(cfg.seed + 1)

    def offsets(bs: int, count: int) -> list[int]:
        return torch.randint(0, n - bs + 1, (count,), generator=starts).tolist()

    def run_steps(level: int, batch_starts: list[int]) -> None:
        bs, frozen = setting(level)
        model.frozen_stages = frozen
        trained = [p for name, p in named if stage_of(name) >= frozen]
        for start in batch_starts:
            idx = order[start:start + bs]  # the gather is part of the step, as in the engine
            grads = torch.autograd.grad(F.cross_entropy(model(X[idx]), y[idx]), trained)
            with torch.no_grad():
                torch._foreach_add_(trained, grads, alpha=-cfg.lr)

    levels = list(levels)
    for level in levels:
        run_steps(level, offsets(setting(level)[0], warmup))
    out = {level: np.empty(repeats) for level in levels}
    timed = block_timer(device)
    for r in range(repeats):
        for level in levels:
            batch_starts = offsets(setting(level)[0], steps)  # drawn before the clock starts
            out[level][r] = timed(lambda: run_steps(level, batch_starts)) / steps
    return out


def block_timer(device: torch.device) -> Callable[[Callable[[], None]], float]:
    """timed(fn) -> seconds the device spent on fn's work.

    On CUDA the host returns as soon as the kernels are queued, so the host's clock would time
    the queueing: events recorded on the stream around fn time the kernels themselves, read
    after the end event has completed (and after a synchronize that drains earlier work, which
    must not land in this block). On the CPU the work is done when fn returns.
    """
    if device.type == "cuda":
        def timed(fn):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            torch.cuda.synchronize(device)
            start.record()
            fn()
            end.record()
            end.synchronize()
            return start.elapsed_time(end) / 1e3  # milliseconds
        return timed

    def timed(fn):
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0
    return timed


def training_throughput(cfg: RunConfig, batch_sizes, *, steps: int = 20, repeats: int = 5,
                        warmup: int = 5) -> dict[int, np.ndarray]:
    """batch size -> examples/s of each timed block (`repeats` values), for cfg's model, data, LR and device."""
    n = len(load_data(cfg).y_train)
    if any(b > n for b in batch_sizes):
        raise ConfigError(f"batch_sizes: got {sorted(batch_sizes)}; allowed: 1..{n} (the {cfg.dataset} training set)")
    times = interleaved_step_times(cfg, batch_sizes, lambda bs: (bs, 0), steps=steps, repeats=repeats, warmup=warmup)
    return {bs: bs / t for bs, t in times.items()}


def throughput_knee(values: dict[int, np.ndarray], share: float = 0.9) -> int:
    """The smallest batch size whose median examples/s reaches `share` of the largest median: where
    the device saturates (claims BS-6 and LR-7)."""
    medians = {bs: float(np.median(v)) for bs, v in values.items()}
    top = max(medians.values())
    return min(bs for bs, m in medians.items() if m >= share * top)
