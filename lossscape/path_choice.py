"""Which way a population of seeds trains: `choose_path(cfg, members, record)` -> the engine path.

A path is a loop of single runs or stacked chunks of members, and the number of torch threads the
training runs on. It is measured, not modelled: whether stacking pays depends on how overhead-bound
a step is (a population of 8 was 1.7-1.95x the loop at mlp w64 bs16 but 0.79-1.09x at w128-256
bs64 on one CPU thread of one machine) and on the device, and whether more threads pay depends on
the step's size and on what else the machine runs. The probe times training steps of a single run
and of stacked chunks of half and all the members, at one thread and at the caller's thread count
(and half of it, from 4 up), in blocks of consecutive steps taken as an epoch takes them,
round-robin, and takes the fastest of each candidate's blocks (the machine may be shared).
Within a chunk size, more threads must beat fewer by THREAD_MARGIN; then
the stacked chunk with the least time per member-step must beat the loop's by STACK_MARGIN, so a
population is not planned slower than the loop.

The choice decides the float rounding of stacked members (batched matmuls over a chunk) and may
decide it on any path (a reduction split over threads sums in another order), so it is measured
once per step shape and machine and then reused: a rerun on the same machine trains the same
weights. `record(key, choose)` keeps it across processes (lossscape.cache.RunStore.engine_path:
`engine_paths.json` in the cache folder); without one it is kept for the process (CHOSEN_PATHS).
A recorded entry may be edited to force a path (see README, "Populations").
"""
from __future__ import annotations

import contextlib
import math
import os
import platform
from typing import Callable

import torch

from .config import RunConfig
from .data import load_data
from .engine import Engine
from .schedules import batch_size_at

# Each candidate times blocks of PROBE_STEPS consecutive steps (Engine.seconds_per_step), round-robin
# with the others, PROBE_ROUNDS times; its fastest block counts.
PROBE_STEPS, PROBE_ROUNDS = 4, 3
# Stacking must beat the loop by this factor per member-step to be chosen: where it pays it pays
# 1.3-3x, and where the two were within noise on a shared machine the probe picked either, so a
# close call goes to the loop (which is also exact).
STACK_MARGIN = 0.9
# More threads must beat fewer by this factor: a close call goes to fewer threads, which leave
# the machine's other cores to other work and do not slow down when those cores get busy.
THREAD_MARGIN = 0.9
KINDS = ("loop", "stacked")
# Chosen paths by key (`path_key`), for the process; clear it to probe again.
CHOSEN_PATHS: dict[str, dict] = {}

Record = Callable[[str, Callable[[], dict]], dict]


def choose_path(cfg: RunConfig, members: int, record: Record | None = None) -> dict:
    """The path for `members` seeds of cfg: {"kind": "loop" | "stacked", "members_per_chunk",
    "threads", "probe_s_per_member_step": {threads: {chunk: seconds}}}, probed once per key and
    reused; `record(key, choose)` returns the recorded path of key, recording choose()'s if none."""
    key = path_key(cfg, members)

    def choose() -> dict:
        if key not in CHOSEN_PATHS:
            CHOSEN_PATHS[key] = probe(cfg, members)
        return CHOSEN_PATHS[key]
    return check_path(record(key, choose) if record else choose(), key, members)


def path_key(cfg: RunConfig, members: int) -> str:
    """What a path is chosen for: the step's shape and cost, the population, the machine."""
    bs = batch_size_at(cfg, 0, len(load_data(cfg).y_train))
    return (f"{cfg.dataset} {cfg.model} width={cfg.width} batch={bs} {cfg.dtype} schedule={cfg.schedule} "
            f"momentum={cfg.momentum}; {members} members, up to {torch.get_num_threads()} threads; "
            f"{machine(cfg.device)}")


def machine(device: str = "cpu") -> str:
    """The processor (or GPU) and torch version a path was measured with."""
    if device == "cuda" and torch.cuda.is_available():
        return f"{torch.cuda.get_device_name()}, torch {torch.__version__}"
    return f"{cpu_name()} ({os.cpu_count()} logical CPUs), torch {torch.__version__}"


def cpu_name() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            return next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        return cpu


def thread_counts() -> list[int]:
    """The thread counts a probe tries: 1, the caller's count, and half of it from 4 threads up."""
    n = torch.get_num_threads()
    return sorted({1, n // 2 if n >= 4 else 1, n})


def probe(cfg: RunConfig, members: int) -> dict:
    """Time the candidates (module docstring) and choose; costs a few dozen steps per thread count."""
    sizes = sorted({1, math.ceil(members / 2), members})
    counts = thread_counts()
    engines = {k: Engine(cfg, list(range(k)), stacked=k > 1) for k in sizes}
    per_member = {t: {k: math.inf for k in sizes} for t in counts}
    for _ in range(PROBE_ROUNDS):
        for t in counts:
            with threads(t):
                for k, engine in engines.items():
                    per_member[t][k] = min(per_member[t][k], engine.seconds_per_step(PROBE_STEPS) / k)
    fastest = {}  # chunk size -> (seconds per member-step, threads)
    for k in sizes:
        t_best = counts[0]
        for t in counts[1:]:
            if per_member[t][k] < THREAD_MARGIN * per_member[t_best][k]:
                t_best = t
        fastest[k] = (per_member[t_best][k], t_best)
    stacked = min(sizes[1:], key=lambda k: (fastest[k][0], k), default=1)  # ties: the smaller chunk
    best = stacked if fastest[stacked][0] < STACK_MARGIN * fastest[1][0] else 1
    return {"kind": "loop" if best == 1 else "stacked", "members_per_chunk": best, "threads": fastest[best][1],
            "probe_s_per_member_step": {str(t): {str(k): s for k, s in v.items()} for t, v in per_member.items()}}


def check_path(path: dict, key: str, members: int) -> dict:
    """A recorded (perhaps hand-edited) path, or a one-line ValueError naming the wrong field."""
    where = f"engine path {key!r}"
    if not isinstance(path, dict):
        raise ValueError(f"{where}: got {type(path).__name__}; allowed: an object with kind, members_per_chunk, threads")
    if path.get("kind") not in KINDS:
        raise ValueError(f"{where}: kind: got {path.get('kind')!r}; allowed: 'loop', 'stacked'")
    chunk, n = path.get("members_per_chunk"), path.get("threads")
    low = 2 if path["kind"] == "stacked" else 1
    high = members if path["kind"] == "stacked" else 1
    if type(chunk) is not int or not low <= chunk <= high:
        raise ValueError(f"{where}: members_per_chunk: got {chunk!r}; allowed: {low}..{high} for kind {path['kind']!r}")
    if type(n) is not int or n < 1:
        raise ValueError(f"{where}: threads: got {n!r}; allowed: an integer >= 1")
    return path


@contextlib.contextmanager
def threads(n: int):
    """torch runs on n threads inside, on the caller's count again after."""
    caller = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(caller)
