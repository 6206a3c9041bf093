"""Timing the engine's own training step in the session (claims BS-3, BS-4, BS-6, DP-2, FO-1,
FO-3, LR-2): nothing here is cached, since a time belongs to the machine and the moment it was
measured on, and every time a claim reads comes from here (issue 12: cached epoch times carried
the thread count and load of whichever session trained the run).

The timed step is the engine's (a single-model `lossscape.engine.Engine`, its `batch` and `step`): gather a
batch from the training tensors on the device, forward (with the first k stages cut from the graph
where a level freezes some), mean cross-entropy, backward, and the config's update: momentum,
Nesterov and weight decay included, over the stages that still train. Each level is its own
engine (its own config and weights); `warmup` untimed steps per level come first, then `repeats`
timed blocks of `steps` consecutive steps (epoch 0's batches), interleaved over the levels
(round-robin), so a change in the machine's load during the sweep falls on every level alike.
With `evaluate`, each block also times one evaluation pass over the splits the config evaluates
after every epoch (config.epoch_splits: what the engine does after each epoch; the passes over
the other splits at the run's end are not per-epoch costs).
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from .config import ConfigError, RunConfig
from .data import load_data
from .data_order import epoch_permutation
from .engine import Engine
from .path_choice import cpu_name
from .schedules import batch_size_at


@dataclass
class StepTimes:
    """Per level: seconds per step of each timed block; with evaluate, seconds of one evaluation
    pass per block; and each level's steps per epoch."""
    step: dict
    evaluation: dict
    steps_per_epoch: dict

    def epoch(self, level, with_evaluation: bool = False) -> np.ndarray:
        """Seconds per epoch of each block: steps per epoch x step time (+ one evaluation pass)."""
        t = self.steps_per_epoch[level] * self.step[level]
        return t + self.evaluation[level] if with_evaluation else t


def engine_step_times(configs: dict, *, steps: int, repeats: int, warmup: int = 3,
                      frozen: dict | None = None, evaluate: bool = False) -> StepTimes:
    """level -> RunConfig: time each config's engine step in interleaved blocks (module docstring).

    frozen: level -> number of leading stages frozen (their LR set to 0, so the engine leaves them
    out of the update and, under schedule "freezeout", out of the backward); none by default.
    """
    frozen = frozen or {}
    engines, batches, lrs = {}, {}, {}
    for level, cfg in configs.items():
        if cfg.world_size != 1:
            raise ConfigError(f"world_size: got {cfg.world_size}; allowed: 1 (a step of one process)")
        eng = Engine(cfg, [cfg.seed], stacked=False)
        k = frozen.get(level, 0)
        if not 0 <= k < eng.n_stages:
            raise ConfigError(f"frozen: got {k} for level {level!r}; allowed: 0..{eng.n_stages - 1} (at least one stage trains)")
        if k and cfg.schedule != "freezeout":
            raise ConfigError(f"frozen: got {k} with schedule {cfg.schedule!r}; allowed: 0 unless schedule='freezeout'")
        n = len(eng.y)
        bs = batch_size_at(cfg, 0, n)
        perm = epoch_permutation(cfg.seed, 0, n).to(eng.device)
        engines[level], lrs[level] = eng, [0.0 if s < k else lr for s, lr in enumerate(eng.stage_lrs(0, 1, 0.0))]
        batches[level] = (perm, bs, math.ceil(n / bs))
    counters = {level: 0 for level in configs}

    def run_steps(level, count):
        eng, (perm, bs, per_epoch) = engines[level], batches[level]
        with eng.step_mode():
            for _ in range(count):  # the gather is part of the step, as in the engine's epoch
                eng.step(*eng.batch(perm, counters[level] % per_epoch, bs), lrs[level], None)
                counters[level] += 1

    for level in configs:
        run_steps(level, warmup)
        if evaluate:
            _evaluate_epoch(engines[level])
    out = StepTimes({lv: np.empty(repeats) for lv in configs}, {lv: np.zeros(repeats) for lv in configs},
                    {lv: batches[lv][2] for lv in configs})
    for r in range(repeats):
        for level, eng in engines.items():
            timed = block_timer(eng.device)
            out.step[level][r] = timed(lambda: run_steps(level, steps)) / steps
            if evaluate:
                out.evaluation[level][r] = timed(lambda: _evaluate_epoch(eng))
    return out


def _evaluate_epoch(eng: Engine) -> None:
    for split in eng.epoch_splits:
        eng.evaluate(*eng.splits[split])


def timing_context(device: str = "cpu") -> str:
    """What a time was measured on: torch's thread count, the CPU (or GPU), the load average."""
    where = torch.cuda.get_device_name() if device == "cuda" and torch.cuda.is_available() else cpu_name()
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "unknown"
    return (f"timed in this session on {where} ({os.cpu_count()} logical CPUs), torch threads "
            f"{torch.get_num_threads()}, load average {load}")


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
    times = engine_step_times({bs: cfg.replace(batch_size=bs) for bs in batch_sizes}, steps=steps,
                              repeats=repeats, warmup=warmup).step
    return {bs: bs / t for bs, t in times.items()}


def throughput_knee(values: dict[int, np.ndarray], share: float = 0.9) -> int:
    """The smallest batch size whose median examples/s reaches `share` of the largest median: where
    the device saturates (claims BS-6 and LR-7)."""
    medians = {bs: float(np.median(v)) for bs, v in values.items()}
    top = max(medians.values())
    return min(bs for bs, m in medians.items() if m >= share * top)
