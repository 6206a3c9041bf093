"""The `store` and `grids` fixtures: each (config, seed) of a profile's grids trained once per
session, through the run cache, and handed to claims as a `Grid`."""
from __future__ import annotations

import time

import pytest

from lossscape.cache import CacheError, RunStore
from lossscape.report.machine import alone

from .progress import Progress
from .skipping import require


class Grid:
    """The runs of one grid for one setting: (batch size, lr) -> runs over the grid's seeds."""

    def __init__(self, spec, setting, configs, runs):
        self.spec, self.setting, self.configs, self.runs = spec, setting, configs, runs

    @property
    def batch_sizes(self):
        return sorted({bs for bs, _ in self.runs})

    @property
    def lrs(self):
        return sorted({lr for _, lr in self.runs})

    def at(self, batch_size, lr=None):
        lr = self.lrs[0] if lr is None else lr
        return self.runs[(batch_size, lr)]

    def by_batch(self) -> dict[int, list]:
        """batch size -> runs, for a grid with one LR per batch size."""
        return {bs: runs for (bs, _), runs in sorted(self.runs.items())}

    def config_labels(self) -> list[str]:
        return [c.to_json() for c in self.configs.values()]


@pytest.fixture(scope="session")
def store(pytestconfig):
    return RunStore(pytestconfig.getoption("--cache-dir"))


@pytest.fixture(scope="session")
def grids(profile, store, pytestconfig):
    """grids(setting, name) -> Grid, trained once per session through the cache."""
    memo = {}
    progress = Progress(pytestconfig)

    def get(setting, name) -> Grid:
        key = (setting.id, name)
        if key not in memo:
            require(setting)
            if not setting.runs_grid(name):
                pytest.skip(f"setting {setting.id} runs only the grids {', '.join(setting.grids)}, not {name}")
            memo[key] = _train(profile.grid(name).for_setting(setting), setting, store, progress, pytestconfig)
        return memo[key]

    return get


def _train(spec, setting, store, progress: Progress, config) -> Grid:
    configs = spec.configs(setting)
    runs = {}
    for k, cfg in configs.items():
        hits = store.hits
        t0 = time.perf_counter()
        label = f"lossscape: {setting.id}/{spec.name} bs={k[0]} lr={k[1]:g}"
        epochs = progress.epochs(label, cfg.epochs)
        # The store locks each run's key: an xdist worker asking for a cell another worker is
        # training waits for it and loads it. A cache that cannot take the runs fails here, in one
        # line and before anything trains.
        try:
            if spec.population:
                runs[k] = store.get_or_train_population(cfg, spec.seeds, progress=epochs)
            else:  # single-model runs are timed: under xdist no other test runs while they train
                with alone(config):
                    runs[k] = [store.get_or_train(cfg.replace(seed=s), progress=epochs) for s in spec.seeds]
        except CacheError as exc:
            pytest.fail(str(exc), pytrace=False)
        trained = len(spec.seeds) - (store.hits - hits)
        if trained:
            progress.trained(label, trained, len(spec.seeds), time.perf_counter() - t0)
    return Grid(spec, setting, configs, runs)
