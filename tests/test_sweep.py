"""lossscape sweep on a real local Ray cluster (2 CPUs): the missing cells train as tasks into one
cache, after which the harness's calls train nothing; a worker killed mid-task is retried and
leaves no partial entry. Skipped where ray is not installed (`pip install "lossscape[ray]"`)."""
import os
import sys

import pytest

from lossscape.cache import RunStore
from lossscape.claim_runs import claim_cells
from lossscape.cli import main
from lossscape.plan import make_plan, missing_cells
from lossscape.profiles import load_profile

TINY = """
seeds = 2
device = "cpu"
batch_sizes = [64, 128]

[[settings]]
id = "tiny"
dataset = "mnist1d"
n_samples = 500
model = "mlp"
width = 8
lr = 0.1

[grids.budget]
stop = "epochs"
epochs = 2

[grids.timing]
population = false
seeds = 3
batch_sizes = [64]
stop = "epochs"
epochs = 1
"""


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture
def tiny(tmp_path):
    path = tmp_path / "smoke.toml"
    path.write_text(TINY)
    return load_profile("smoke", directory=tmp_path)


def _entries(root):
    return sorted(p.name for p in root.iterdir() if (p / "run.json").exists()) if root.exists() else []


@pytest.mark.ray
def test_sweep_fills_the_cache_and_the_harness_trains_nothing(ray_cluster, tiny, tmp_path):
    from lossscape.sweep import sweep

    store = RunStore(tmp_path / "cache")
    assert _entries(store.root) == []
    lines = []
    assert sweep(tiny, store, say=lines.append) == 2 * 2 + 3
    assert len(_entries(store.root)) == 7 and lines[0].startswith("sweep smoke: 7 runs to train in 3 tasks")
    assert missing_cells(tiny, store) == [] and make_plan(tiny, store).total("to_train") == 0
    # the harness's own calls (the grids fixture's) now only load
    harness = RunStore(store.root)
    for _, _, _, spec, cfg in claim_cells(tiny):
        if spec.population:
            harness.get_or_train_population(cfg, spec.seeds)
        else:
            for s in spec.seeds:
                harness.get_or_train(cfg.replace(seed=s))
    assert harness.misses == 0 and harness.hits == 2 * 2 + 3


@pytest.mark.ray
def test_a_killed_worker_is_retried_and_leaves_no_partial_entry(ray_cluster, tiny, tmp_path):
    from lossscape.sweep import run_on_ray, train_cell

    store = RunStore(tmp_path / "cache")
    marker = tmp_path / "killed-once"

    def dies_once_mid_write(cell, root):
        """The first attempt dies (SIGKILL-like, no cleanup) while writing its first entry."""
        if not marker.exists():
            import lossscape.cache as cache

            def crash(run, key, folder, file_mode):
                (folder / "tensors.safetensors").write_bytes(b"partial")
                marker.write_text("x")
                os._exit(1)
            cache._write_entry = crash
        return train_cell(cell, root)

    cells = missing_cells(tiny, store)[:1]  # budget bs 64: a population of 2
    assert run_on_ray(cells, store.root, task=dies_once_mid_write, say=lambda _: None) == 2
    assert marker.exists()  # the first attempt did die
    assert len(_entries(store.root)) == 2
    assert all(store.load(cells[0].config.replace(seed=s)) is not None for s in (0, 1))
    # what the dead worker left is a temporary folder, never an entry a load would see
    leftovers = [p.name for p in store.root.iterdir() if p.name.startswith(".tmp-")]
    assert all(not (store.root / name / "run.json").exists() for name in leftovers)


def test_without_ray_one_line_exit_2(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    assert main(["sweep", "--profile", "smoke", "--executor", "ray", "--cache-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "lossscape[ray]" in err and "executor" in err
    assert not any(tmp_path.iterdir())


def test_tasks_ask_for_a_gpu_where_the_device_is_cuda(tiny, tmp_path, monkeypatch):
    """The CUDA path without a GPU: a stand-in ray records what each task asks for."""
    import types

    from lossscape.plan import Cell
    from lossscape.sweep import MAX_RETRIES, run_on_ray

    asked = []

    class Ref:  # an object reference: unique and hashable, like ray's
        def __init__(self, value):
            self.value = value

    class Remote:
        def __init__(self, fn, opts=None):
            self.fn, self.opts = fn, opts or {}

        def options(self, **opts):
            return Remote(self.fn, opts)

        def remote(self, *args):
            asked.append((self.opts, args))
            return Ref(self.fn(*args))

    fake = types.SimpleNamespace(is_initialized=lambda: False, init=lambda **kw: asked.append(("init", kw)),
                                 shutdown=lambda: asked.append("shutdown"), remote=Remote,
                                 wait=lambda refs, num_returns: (refs[:1], refs[1:]), get=lambda ref: ref.value)
    monkeypatch.setitem(sys.modules, "ray", fake)
    monkeypatch.chdir(tmp_path)
    cfg = tiny.grid("budget").configs(tiny.settings[0])[(64, 0.1)]
    cells = [Cell("tiny", "budget", cfg.replace(device="cuda"), (0, 1), True),
             Cell("tiny", "dp", cfg.replace(device="cuda", world_size=2), (0,), False),
             Cell("tiny", "budget", cfg, (0,), True)]
    trained = run_on_ray(cells, "rel-cache", task=lambda cell, root: len(cell.seeds), say=lambda _: None)
    assert trained == 4
    assert asked[0][0] == "init" and asked[-1] == "shutdown"
    opts = [o for o, _ in asked[1:-1]]
    assert [(o["num_gpus"], o["num_cpus"]) for o in opts] == [(1, 1), (2, 2), (0, 1)]
    assert all(o["max_retries"] == MAX_RETRIES and RuntimeError in o["retry_exceptions"] for o in opts)
    assert all(os.path.isabs(args[1]) for _, args in asked[1:-1])  # workers start elsewhere
