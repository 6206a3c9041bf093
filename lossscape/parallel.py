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
  spawn; gloo on CPU, nccl with GPU r for rank r) meeting through a file store in the run's
  temporary folder (no port to choose, so none to collide on); rank 0 saves its Run there for this
  process to read back, and forwards its progress rows to the caller's callback. A rank that fails
  is reported once, as a DataParallelError with that rank's traceback and a command that
  reproduces the run. As with any spawn, a script that calls it needs the
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

import faulthandler
import os
import shlex
import sys
import tempfile
import time
from datetime import timedelta
from typing import Callable

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.multiprocessing.spawn import ProcessException
from torch.nn.parallel import DistributedDataParallel

from .config import ConfigError, RunConfig
from .engine import Engine
from .run import Run

# How long a spawned rank waits on its peers in the rendezvous or in one collective before it fails
# (the ranks start together and take the same steps, so a longer wait means a peer is stuck or
# gone): a run never hangs. torchrun jobs keep torch's default, as their nodes may start apart.
PEER_TIMEOUT = timedelta(minutes=5)
# Once one spawned rank has exited cleanly, the others have passed the same final barrier and only
# their teardown is left: one still alive after this long is stuck, and the run fails.
LEAVE_TIMEOUT_S = 60.0


class DataParallelError(RuntimeError):
    """A rank of a spawned data-parallel run failed; the message holds its traceback."""


def train_ddp(cfg: RunConfig, progress: Callable[[int, dict], None] | None = None) -> Run:
    if under_launcher():
        return _train_launched(cfg, progress)
    return train_spawned(cfg, progress)


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


def _start_group(cfg: RunConfig, **init) -> None:
    # Why torch._dynamo is imported first (the cause of issue 16, ranks dying with SIGABRT,
    # "terminate called without an active exception"): DistributedDataParallel imports
    # torch._dynamo on first use, and that import takes ten lasting references to the live WORLD
    # group (sys.getrefcount of the group: 10 before, 20 after, and still 20 once the DDP module
    # is deleted). destroy_process_group() then drops torch.distributed's own references but
    # cannot free the group: gloo's worker and socket threads (pt_gloo_runloop x2,
    # gloo_tcp_loop) were seen alive on both ranks after destroy_process_group() and
    # gc.collect(). The group is then destructed only while the exiting interpreter clears its
    # modules, with those threads running and the peer's end of the sockets open or closing: the
    # teardown that aborts with this very message (pytorch/pytorch#65231, a SIGABRT from
    # _PyModule_ClearDict, cured there by an explicit destroy_process_group(),
    # pytorch/pytorch#65513). Imported before the group exists, torch._dynamo holds no reference
    # to it, and destroy_process_group() joins those threads while the interpreter is fully
    # alive (test_teardown_stops_the_process_groups_threads).
    import torch._dynamo  # noqa: F401

    dist.init_process_group(_backend(cfg), **init)


def _leave_group() -> None:
    """Every rank leaves together: none tears its end of the connections down while a peer still
    works (rank 0 saving its Run) and could still be reached by it."""
    dist.barrier()
    dist.destroy_process_group()


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
    engine = Engine(cfg, [cfg.seed], stacked=False, progress=progress, rank=rank, world=world, wrap=wrap)
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
        _start_group(cfg)
    try:
        run = _train_rank(cfg, dist.get_rank(), world, local_rank, progress)
    except BaseException:
        if owns_group:
            dist.destroy_process_group()
        raise
    if owns_group:
        _leave_group()
    return run


# -- spawn ---------------------------------------------------------------------------------------
_RESULT = "run"  # the folder rank 0 saves its Run into


def train_spawned(cfg: RunConfig, progress, rank_main=None) -> Run:
    """cfg on cfg.world_size processes spawned here; each runs rank_main(rank, cfg, out, rows)
    (spawned_rank by default; tests give a failing one)."""
    ctx = mp.get_context("spawn")
    rows = ctx.SimpleQueue() if progress else None
    with tempfile.TemporaryDirectory(prefix="lossscape-ddp-") as out:
        procs = mp.start_processes(_rank_entry, args=(rank_main or spawned_rank, cfg, out, rows),
                                   nprocs=cfg.world_size, join=False, start_method="spawn")
        try:
            _join(procs, rows, progress)
        except ProcessException as exc:
            raise DataParallelError(_failure_report(cfg, exc.error_index, exc.msg, out)) from None
        return Run.load(os.path.join(out, _RESULT))


def _join(procs, rows, progress) -> None:
    """Wait for every rank, forwarding progress rows; raises ProcessException for a failed rank
    (the others are then killed), DataParallelError for one that does not exit after the others."""
    first_exit = None
    while not procs.join(timeout=0.2):
        _forward(rows, progress)
        if first_exit is None and any(p.exitcode == 0 for p in procs.processes):
            first_exit = time.monotonic()
        if first_exit is not None and time.monotonic() - first_exit > LEAVE_TIMEOUT_S:
            stuck = [r for r, p in enumerate(procs.processes) if p.is_alive()]
            for p in procs.processes:
                p.kill()
                p.join()
            raise DataParallelError(f"data-parallel run: rank(s) {stuck} still running {LEAVE_TIMEOUT_S:.0f} s "
                                    "after another rank finished; killed")
    _forward(rows, progress)


def _forward(rows, progress) -> None:
    while rows is not None and not rows.empty():
        progress(*rows.get())


def _failure_report(cfg: RunConfig, rank: int, cause: str, out: str) -> str:
    """One message for the rank that failed: its traceback (for a rank killed by a signal, the
    Python stack faulthandler wrote at the signal) and the command that reruns the run."""
    lines = [f"data-parallel run failed on rank {rank} of {cfg.world_size}: {cause.strip()}"]
    try:
        with open(_fault_file(out, rank)) as f:
            stack = f.read().strip()
    except OSError:
        stack = ""
    if stack:
        lines.append(f"rank {rank} at the signal:\n{stack}")
    program = f"from lossscape import RunConfig, train; train(RunConfig.from_json({cfg.to_json()!r}))"
    lines.append(f"reproduce: {shlex.quote(sys.executable)} -c {shlex.quote(program)}")
    return "\n".join(lines)


def _fault_file(out: str, rank: int) -> str:
    return os.path.join(out, f"rank{rank}.fault")


def _rank_entry(rank: int, rank_main, cfg: RunConfig, out: str, rows) -> None:
    # A rank killed by a signal cannot send its traceback: faulthandler writes its Python stack
    # into the run's folder for the parent's report. The file stays open for the process's life.
    faulthandler.enable(open(_fault_file(out, rank), "w"))
    rank_main(rank, cfg, out, rows)


def spawned_rank(rank: int, cfg: RunConfig, out: str, rows) -> None:
    """One spawned rank: joins the group through the file store in `out`, trains its share, and on
    rank 0 saves the Run into `out` and sends progress rows through the queue `rows`."""
    # k ranks share this machine's cores: k processes each using them all would thrash.
    torch.set_num_threads(max(1, torch.get_num_threads() // cfg.world_size))
    _use_device(cfg, rank)
    _start_group(cfg, init_method="file://" + os.path.join(out, "rendezvous"), rank=rank,
                 world_size=cfg.world_size, timeout=PEER_TIMEOUT)
    try:
        progress = (lambda seed, row: rows.put((seed, row))) if rows is not None and rank == 0 else None
        run = _train_rank(cfg, rank, cfg.world_size, rank, progress)
        if rank == 0:
            os.mkdir(os.path.join(out, _RESULT))
            run.save(os.path.join(out, _RESULT))
    except BaseException:
        dist.destroy_process_group()  # no barrier: the peers may never reach it; the parent stops them
        raise
    _leave_group()
