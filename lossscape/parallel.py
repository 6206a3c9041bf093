"""Data-parallel training: `train_ddp(cfg)` returns the same Run as a single-process run.

Each of the world_size ranks takes every world_size-th example of each global batch (the shard
`DistributedSampler(seed=data_seed(seed), shuffle=True)` with `set_epoch` gives) and runs its
forward through DistributedDataParallel, whose all-reduce averages the ranks' gradients: the step
is the one SGD step on the global batch (claim DP-1). `train(cfg)` dispatches here when
cfg.world_size > 1; rank 0 alone logs (the engine's `progress`) and writes results.

Two launches:
- Under torchrun (RANK / WORLD_SIZE set, or a process group already initialized) this process
  runs as its rank: nccl with device cuda:LOCAL_RANK when cfg.device == "cuda", gloo otherwise.
  Every rank returns the Run (the ranks hold identical weights); callers print and store on rank 0
  only (`is_main_process`).
- Otherwise world_size processes are spawned on this machine (torch.multiprocessing, start method
  spawn; gloo on CPU, nccl with GPU r for rank r) meeting at 127.0.0.1 on a free port; rank 0
  stores its Run in a temporary run store that this process reads back, and forwards its progress
  rows to the caller's callback. As with any spawn, a script that calls it needs the
  `if __name__ == "__main__":` guard (the ranks re-import the main module).

On one node with 4 GPUs:
    torchrun --standalone --nproc_per_node=4 -m lossscape.cli run --device cuda --model resnet_small \
        --batch-size 256 --world-size 4
On two nodes with 8 GPUs each (the first node at 10.0.0.1; add NCCL_IB_DISABLE=1 without Infiniband):
    torchrun --nnodes=2 --node_rank=0 --nproc_per_node=8 --master_addr=10.0.0.1 --master_port=29500 \
        -m lossscape.cli run --device cuda --batch-size 256 --world-size 16
    torchrun --nnodes=2 --node_rank=1 --nproc_per_node=8 --master_addr=10.0.0.1 --master_port=29500 \
        -m lossscape.cli run --device cuda --batch-size 256 --world-size 16
Several CPU processes on this machine (gloo; no torchrun needed):
    lossscape run --batch-size 256 --world-size 4
"""
from __future__ import annotations

import os
import socket
import tempfile
from typing import Callable

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel

from .config import ConfigError, RunConfig
from .train import Run, _Engine


def train_ddp(cfg: RunConfig, progress: Callable[[int, dict], None] | None = None) -> Run:
    if under_launcher():
        return _train_launched(cfg, progress)
    return _train_spawned(cfg, progress)


def is_main_process() -> bool:
    """True on rank 0 of a launched job, and in any process that is not part of one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return int(os.environ.get("RANK", 0)) == 0


def under_launcher() -> bool:
    """True inside a torchrun job (or any initialized process group)."""
    return (dist.is_available() and dist.is_initialized()) or ("RANK" in os.environ and "WORLD_SIZE" in os.environ)


def _backend(cfg: RunConfig) -> str:
    return "nccl" if cfg.device == "cuda" else "gloo"


def _use_device(cfg: RunConfig, local_rank: int) -> None:
    """Before the group starts: nccl binds this rank to its GPU, and the engine's "cuda" means it."""
    if cfg.device == "cuda":
        torch.cuda.set_device(local_rank)


def _train_rank(cfg: RunConfig, rank: int, world: int, local_rank: int, progress) -> Run:
    """One rank's share of the run, inside an initialized process group."""
    device_ids = [local_rank] if cfg.device == "cuda" else None
    # FreezeOut stops the gradients of a growing prefix of stages: DDP must be told that some
    # parameters go unused, or it waits for their gradients forever. static_graph cannot serve
    # (the unused set changes at each freeze) and the graph walk it costs is small next to the
    # backward, so the other schedules keep the default.
    unused = cfg.schedule == "freezeout"

    def wrap(module):
        return DistributedDataParallel(module, device_ids=device_ids, find_unused_parameters=unused)
    engine = _Engine(cfg, [cfg.seed], stacked=False, progress=progress, rank=rank, world=world, wrap=wrap)
    return engine.run()[0]


# -- torchrun ------------------------------------------------------------------------------------
def _train_launched(cfg: RunConfig, progress) -> Run:
    world = dist.get_world_size() if dist.is_initialized() else int(os.environ["WORLD_SIZE"])
    if world != cfg.world_size:
        raise ConfigError(f"world_size: got {cfg.world_size}; allowed here: {world} (the launcher's world size)")
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    _use_device(cfg, local_rank)
    owns_group = not dist.is_initialized()
    if owns_group:
        dist.init_process_group(_backend(cfg))
    try:
        return _train_rank(cfg, dist.get_rank(), world, local_rank, progress)
    finally:
        if owns_group:
            dist.destroy_process_group()


# -- spawn ---------------------------------------------------------------------------------------
def _train_spawned(cfg: RunConfig, progress) -> Run:
    from .cache import RunStore  # cache imports train, which imports this module lazily

    ctx = mp.get_context("spawn")
    rows = ctx.SimpleQueue() if progress else None
    with tempfile.TemporaryDirectory(prefix="lossscape-ddp-") as out:
        procs = mp.start_processes(_spawned_rank, args=(cfg, _free_port(), out, rows), nprocs=cfg.world_size,
                                   join=False, start_method="spawn")
        while True:
            done = procs.join(timeout=0.2)  # raises, with the rank's traceback, if a rank failed
            while rows is not None and not rows.empty():
                progress(*rows.get())
            if done:
                break
        run = RunStore(out).load(cfg)
    if run is None:
        raise RuntimeError(f"data-parallel run of {cfg.to_json()}: rank 0 finished but its result is unreadable")
    return run


def _spawned_rank(rank: int, cfg: RunConfig, port: int, out: str, rows) -> None:
    from .cache import RunStore

    # k ranks share this machine's cores: k processes each using them all would thrash.
    torch.set_num_threads(max(1, torch.get_num_threads() // cfg.world_size))
    _use_device(cfg, rank)
    dist.init_process_group(_backend(cfg), init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=cfg.world_size)
    try:
        progress = (lambda seed, row: rows.put((seed, row))) if rows is not None and rank == 0 else None
        run = _train_rank(cfg, rank, cfg.world_size, rank, progress)
        if rank == 0:
            RunStore(out).save(run)
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
