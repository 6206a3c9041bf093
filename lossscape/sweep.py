"""A profile's missing grid cells as tasks on a Ray cluster: `lossscape sweep --executor ray`.

    lossscape sweep --profile gpu --executor ray --address auto --cache-dir /shared/cache
    pytest claims -m gpu --cache-dir /shared/cache     # then only measures and judges

One task per cell: the cell's missing seeds train as one population (or one by one, for the grids
whose claims time single models), exactly as the harness's `grids` fixture would train them, and
are stored in the one cache folder every worker can reach (a shared filesystem on a multi-node
cluster). A task asks for a GPU where the config's device is cuda. A worker that dies or raises
is retried (`max_retries`); the cache writes each entry to a temporary folder and renames it into
place, so a killed worker leaves no partial entry and its retry trains the run again. The cells
come from lossscape.plan.missing_cells, the same enumeration `lossscape plan` counts.

Ray is an optional extra (`pip install "lossscape[ray]"`), imported only here and only when a
sweep runs.
"""
from __future__ import annotations

import os
import time

from .cache import RunStore
from .config import ConfigError
from .plan import Cell, missing_cells

MAX_RETRIES = 3
# Failures worth another attempt: a worker's crash is always retried by Ray; of the exceptions, the
# ones a retry can cure (CUDA out of memory is a RuntimeError, a flaky shared filesystem an OSError).
RETRY_EXCEPTIONS = [RuntimeError, OSError]


class RayMissingError(ConfigError):
    pass


def train_cell(cell: Cell, cache_root: str) -> int:
    """Train a cell's missing seeds into the cache at `cache_root`; returns how many it trained."""
    store = RunStore(cache_root)
    if cell.population:
        store.get_or_train_population(cell.config, cell.seeds)
    else:
        for s in cell.seeds:
            store.get_or_train(cell.config.replace(seed=s))
    return store.misses


def import_ray():
    try:
        import ray
    except ImportError:
        raise RayMissingError('executor: ray is not installed; allowed: install it with '
                              'pip install "lossscape[ray]"') from None
    return ray


def run_on_ray(cells: list[Cell], cache_root, *, address: str | None = None, num_cpus: int | None = None,
               task=train_cell, max_retries: int = MAX_RETRIES, say=print) -> int:
    """Train `cells` as Ray tasks into `cache_root`; returns the number of runs trained.

    address: an existing cluster ("auto", "ray://host:10001", "host:6379"); None starts a local
    one with `num_cpus` CPUs (all of this machine's by default) and stops it at the end.
    """
    ray = import_ray()
    root = os.path.abspath(cache_root)  # workers start in other folders, on other machines
    os.makedirs(root, exist_ok=True)
    started = not ray.is_initialized()
    if started:
        # the data folder travels with the tasks: a remote node's workers do not inherit our environment
        data = os.environ.get("LOSSSCAPE_DATA")
        ray.init(address=address, num_cpus=None if address else num_cpus, include_dashboard=False,
                 logging_level="ERROR", log_to_driver=False,
                 runtime_env={"env_vars": {"LOSSSCAPE_DATA": data}} if data else None)
    try:
        remote = ray.remote(task)
        futures = {}
        for cell in cells:
            # a data-parallel run (DP's k-rank copies) holds k processes: k CPUs, or k GPUs under nccl
            k = cell.config.world_size
            gpus = k if cell.config.device == "cuda" else 0
            ref = remote.options(num_cpus=k, num_gpus=gpus, max_retries=max_retries,
                                 retry_exceptions=RETRY_EXCEPTIONS).remote(cell, root)
            futures[ref] = (cell, time.perf_counter())
        trained = 0
        pending = list(futures)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            cell, t0 = futures[done[0]]
            n = ray.get(done[0])
            trained += n
            say(f"sweep: {cell.setting}/{cell.grid} bs={cell.config.batch_size} lr={cell.config.lr:g}: "
                f"trained {n} of {len(cell.seeds)} seeds ({len(futures) - len(pending)}/{len(futures)} cells, "
                f"{time.perf_counter() - t0:.1f} s since submitted)")
        return trained
    finally:
        if started:
            ray.shutdown()


def sweep(profile, store, *, address=None, num_cpus=None, say=print) -> int:
    """Train every run of `profile` that `store` lacks on Ray; returns the number trained."""
    import_ray()  # before anything is counted: without Ray there is nothing to do
    cells = missing_cells(profile, store)
    say(f"sweep {profile.name}: {sum(len(c.seeds) for c in cells)} runs to train in {len(cells)} tasks")
    if not cells:
        return 0
    return run_on_ray(cells, store.root, address=address, num_cpus=num_cpus, say=say)
