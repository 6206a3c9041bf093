"""Which way to train: train(cfg) -> Run, and train_population(cfg, seeds) -> list[Run].

A single config trains on one Engine (lossscape.engine), or data-parallel over cfg.world_size
processes (lossscape.parallel). A population of seeds trains as stacked models, in chunks of
members, or as a loop of single runs, on a number of threads: which is measured once per step shape
and machine by a short probe and then reused (lossscape.path_choice). Either way member s equals
train(cfg.replace(seed=s)), exactly in a loop on the caller's thread count and up to float rounding
of batched vs plain matmuls when stacked.
"""
from __future__ import annotations

from typing import Callable

import torch

from .config import RunConfig
from .data import load_data
from .engine import EVAL_CHUNK, Engine
from .footprint import check_memory
from .parallel import train_ddp
from .path_choice import Record, choose_path, threads
from .run import Run


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
                     path: str | None = None, init: dict[int, dict] | None = None,
                     record: Record | None = None) -> list[Run]:
    """Train cfg once per seed: as stacked models (chunks of members) or as a loop of `train`.

    path=None takes the path recorded for this step shape and machine, or lets a short probe
    choose it and records it (lossscape.path_choice; `record` keeps it across processes, as
    RunStore.engine_path does, else it is kept for the process); the training runs on the path's
    thread count and the caller's is restored after. "stacked" (all members in one chunk) or "loop"
    force one, on the caller's threads. Data-parallel configs always loop; BatchNorm models stack
    like any other (their running statistics are stacked too: lossscape.strategies). Either way
    member s equals train(cfg.replace(seed=s)), exactly in a loop on the same thread count and up to
    float rounding when stacked; every Run records the path in `engine_path`. A population whose
    estimated memory exceeds the device's is refused before anything is built (lossscape.footprint).
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
        chosen = choose_path(cfg, len(seeds), record)
    with threads(chosen["threads"]):
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
