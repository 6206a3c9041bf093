"""Which way to train: train(cfg) -> Run, and train_population(cfg, seeds) -> list[Run].

A single config trains on one Engine (lossscape.engine), or data-parallel over cfg.world_size
processes (lossscape.parallel). A population of seeds trains as stacked models, in chunks of
members, or as a loop of single runs: which is measured per step shape by a short probe
(`choose_path`). Either way member s equals train(cfg.replace(seed=s)), exactly in a loop and up to
float rounding of batched vs plain matmuls when stacked.
"""
from __future__ import annotations

import math
from typing import Callable

import torch

from .config import RunConfig
from .data import load_data
from .engine import EVAL_CHUNK, Engine
from .footprint import check_memory
from .parallel import train_ddp
from .run import Run
from .schedules import batch_size_at


def train(cfg: RunConfig, *, progress: Callable[[int, dict], None] | None = None,
          init: dict[int, dict] | None = None) -> Run:
    """Train one configuration; a world_size > 1 config runs data-parallel (lossscape.parallel).

    `init` ({seed: state dict}) is given exactly when cfg.init_from names a parent run: the run
    starts from init[cfg.seed] instead of its seeded initialization (a continuation).
    A config whose estimated memory exceeds the device's is refused first (lossscape.footprint)."""
    _check_init(cfg, init, [cfg.seed])
    check_memory(cfg, 1, load_data(cfg), EVAL_CHUNK)
    if cfg.world_size > 1:
        return train_ddp(cfg, progress=progress)
    run = Engine(cfg, [cfg.seed], stacked=False, progress=progress, init=init).run()[0]
    run.engine_path = {"kind": "single", "members_per_chunk": 1, "threads": torch.get_num_threads()}
    return run


def train_population(cfg: RunConfig, seeds, *, progress: Callable[[int, dict], None] | None = None,
                     path: str | None = None, init: dict[int, dict] | None = None) -> list[Run]:
    """Train cfg once per seed: as stacked models (chunks of members) or as a loop of `train`.

    path=None lets a short probe choose (`choose_path`); "stacked" (all members in one chunk) or
    "loop" force one. Data-parallel configs always loop; BatchNorm models stack like any other
    (their running statistics are stacked too: lossscape.strategies). Either way member s equals train(cfg.replace(seed=s)), exactly in a loop
    and up to float rounding when stacked; every Run records the path in `engine_path`. A
    population whose estimated memory exceeds the device's is refused before anything is built
    (lossscape.footprint).
    """
    if path not in PATHS:
        raise ValueError(f"path: got {path!r}; allowed: {', '.join(map(repr, PATHS))}")
    seeds = [int(s) for s in seeds]
    _check_init(cfg, init, seeds)
    ds = load_data(cfg)
    check_memory(cfg, len(seeds), ds, EVAL_CHUNK)
    if cfg.world_size > 1 or len(seeds) == 1 or path == "loop":
        chosen = {"kind": "loop", "members_per_chunk": 1, "threads": torch.get_num_threads()}
    elif path == "stacked":
        chosen = {"kind": "stacked", "members_per_chunk": len(seeds), "threads": torch.get_num_threads()}
    else:
        chosen = choose_path(cfg, len(seeds))
    if chosen["kind"] == "loop":
        runs = [train(cfg.replace(seed=s), progress=progress, init=init) for s in seeds]
    else:
        k = chosen["members_per_chunk"]
        runs = [run for i in range(0, len(seeds), k)
                for run in Engine(cfg, seeds[i:i + k], stacked=True, progress=progress, init=init).run()]
    for run in runs:
        run.engine_path = dict(chosen)
    return runs


def _check_init(cfg: RunConfig, init, seeds) -> None:
    """A continuation's weights come with it, and only with it: the cache key (cfg.init_from) must
    say where every stored run's weights came from."""
    if (cfg.init_from is None) != (init is None):
        raise ValueError("init: give the parent runs' final states exactly when cfg.init_from names the parent")
    if init is not None and any(s not in init for s in seeds):
        raise ValueError(f"init: no state for seeds {[s for s in seeds if s not in init]}")


PATHS = (None, "stacked", "loop")
PROBE_STEPS, PROBE_ROUNDS = 3, 3
# Stacking must beat the loop by this factor per member-step to be chosen: where it pays it pays
# 1.3-3x, and where the two were within noise on a shared machine the probe picked either, so a
# close call goes to the loop (which is also exact).
STACK_MARGIN = 0.9
# One probe per step shape and thread count in a process; clear it to probe again.
CHOSEN_PATHS: dict[tuple, dict] = {}


def choose_path(cfg: RunConfig, members: int) -> dict:
    """The fastest way to train `members` seeds of cfg: a loop of single runs or stacked chunks.

    Measured, not modelled: whether stacking pays depends on how overhead-bound a step is (a
    population of 8 was 1.7-1.95x the loop at mlp w64 bs16 but 0.79-1.09x at w128-256 bs64 on one
    CPU thread) and on the device. The probe times training steps of a single run and of stacked
    chunks of half and all the members, round-robin (the fastest of each candidate's steps, as
    the machine may be shared), and takes the least time per member-step; stacking must beat the
    loop by STACK_MARGIN, so a population is not planned slower than the loop. Costs a few dozen
    steps, once per step shape in a process.
    """
    n = len(load_data(cfg).y_train)
    key = (cfg.dataset, cfg.n_samples, cfg.model, cfg.width, batch_size_at(cfg, 0, n), cfg.schedule,
           cfg.momentum, cfg.dtype, cfg.device, members, torch.get_num_threads())
    if key not in CHOSEN_PATHS:
        sizes = sorted({1, math.ceil(members / 2), members})
        engines = {k: Engine(cfg, list(range(k)), stacked=k > 1) for k in sizes}
        per_member = {k: math.inf for k in sizes}
        for _ in range(PROBE_ROUNDS):
            for k, engine in engines.items():
                per_member[k] = min(per_member[k], engine.seconds_per_step(PROBE_STEPS) / k)
        stacked = min(sizes[1:], key=lambda k: (per_member[k], k), default=1)  # ties: the smaller chunk
        best = stacked if per_member[stacked] < STACK_MARGIN * per_member[1] else 1
        CHOSEN_PATHS[key] = {"kind": "loop" if best == 1 else "stacked", "members_per_chunk": best,
                              "threads": torch.get_num_threads(),
                              "probe_s_per_member_step": {str(k): t for k, t in per_member.items()}}
    return CHOSEN_PATHS[key]

