"""The gpu profile's every grid x setting (and the runs its claims add, lossscape.claim_runs), built
as the harness builds them and trained on CPU at toy size: what can break on a GPU machine before
the GPU is involved (a config the profile cannot build, a model that does not fit its data, a
schedule, stop rule or population path that fails) breaks here first."""
import numpy as np
import pytest
from PIL import Image
from test_data import write_mnist

from lossscape.claim_runs import claim_cells
from lossscape.config import ConfigError
from lossscape.data import load_dataset
from lossscape.profiles import load_profile
from lossscape.train import train, train_population

TOY_SAMPLES = {"mnist1d": 100}  # the others take every file of the toy folders below


@pytest.fixture(scope="module")
def toy_data(tmp_path_factory, monkeypatch_module):
    root = tmp_path_factory.mktemp("data")
    write_mnist(root / "mnist")  # 20 train + 10 test images
    (root / "cats_vs_dogs").mkdir()
    rng = np.random.default_rng(0)
    for i in range(10):  # 20 noise images, resized to 64x64 by the loader
        for animal in ("cat", "dog"):
            pixels = rng.integers(0, 256, (48, 40, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / "cats_vs_dogs" / f"{animal}.{i}.jpg")
    monkeypatch_module.setenv("LOSSSCAPE_DATA", str(root))
    return root


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


def _toy(cfg):
    """cfg on the CPU with the toy data, one step per epoch and the fewest epochs its schedule allows."""
    n_samples = TOY_SAMPLES.get(cfg.dataset)
    n_train = len(load_dataset(cfg.dataset, n_samples=n_samples).y_train)
    changes = dict(device="cpu", n_samples=n_samples, batch_size=n_train, epochs=1, world_size=1)
    if cfg.schedule == "step":
        changes.update(epochs=2, decay_epochs=(1,))
    if cfg.schedule == "linear_scaling":
        changes.update(base_batch_size=max(1, n_train * cfg.base_batch_size // cfg.batch_size))
    if cfg.warmup_epochs:
        changes.update(warmup_epochs=0.5)  # the step still falls inside the warmup
    return cfg.replace(**changes)


def _cells():
    """One config per (owner, grid): the first cell of each, as claim_cells lists them."""
    seen, out = set(), []
    for owner, setting, label, spec, cfg in claim_cells(load_profile("gpu")):
        if (owner, label) not in seen:
            seen.add((owner, label))
            out.append(pytest.param(spec, cfg, id=f"{owner}/{label}"))
    return out


def test_every_setting_and_grid_is_listed():
    profile = load_profile("gpu")
    owners = {p.id.split("/")[0] for p in _cells()}
    assert {s.id for s in profile.settings} <= owners
    grids = {p.id.split("/")[1] for p in _cells()}
    assert set(profile.grids) - {"freezeout", "escape"} <= grids  # escape: continuations, trained by GEO-9 itself


@pytest.mark.parametrize("spec, cfg", _cells())
def test_one_step_of_every_gpu_grid_on_cpu(toy_data, spec, cfg):
    assert cfg.device == "cuda"  # as the gpu profile builds it; trained here on the CPU
    toy = _toy(cfg)
    if spec.population:
        runs = train_population(toy, spec.seeds[:2])
        assert [r.config.seed for r in runs] == list(spec.seeds[:2])
    else:
        runs = [train(toy.replace(seed=spec.seeds[0]))]
    for run in runs:
        assert run.epochs_run >= 1 and run.history[0]["steps"] == 1
        assert np.isfinite(run.history[0]["train_loss"]) or run.stop_reason == "diverged"


def test_a_profile_moved_to_another_device():
    """`pytest claims --profile smoke --device cuda` (benchmarks/gpu_check.sh): every grid moves."""
    moved = load_profile("smoke", device="cuda")
    assert moved.device == "cuda"
    assert {cfg.device for _, _, cfg in moved.cells()} == {"cuda"}
    assert [cfg.replace(device="cpu") for _, _, cfg in moved.cells()] == [cfg for _, _, cfg in load_profile("smoke").cells()]
    with pytest.raises(ConfigError, match="device: got 'tpu'; allowed: cpu, cuda"):
        load_profile("smoke", device="tpu")


# The full data sets' split sizes (train, val, test), input shapes and classes, as lossscape.data
# splits them: Kaggle's 25,000 Cats vs Dogs images (20% test, 20% of the rest val), MNIST's 60,000
# + 10,000 (20% of the 60,000 val), MNIST-1D's generator (80% train, 20% test; 20% val).
FULL = {"cats_vs_dogs": (25_000, (16_000, 4_000, 5_000), (3, 64, 64), 2),
        "mnist": (70_000, (48_000, 12_000, 10_000), (1, 28, 28), 10),
        "mnist1d": (None, None, (40,), 10)}


def _sized(cfg, data_dir=None):
    """A stand-in for load_data with only the sizes and shapes the plan reads."""
    import types

    import torch
    full, sizes, shape, classes = FULL[cfg.dataset]
    if cfg.dataset == "mnist1d":
        n = cfg.n_samples or 5000
        sizes = (round(0.8 * n * 0.8), round(0.8 * n * 0.2), round(0.2 * n))
    elif cfg.n_samples:
        sizes = tuple(round(s * cfg.n_samples / full) for s in sizes)
    y = [torch.zeros(s, dtype=torch.long) for s in sizes]
    return types.SimpleNamespace(y_train=y[0], y_val=y[1], y_test=y[2], input_shape=shape, n_classes=classes)


def test_the_gpu_profile_plans_within_its_hour(monkeypatch, tmp_path):
    """With both data folders given, on the plan's nominal H100/H200 figures (no GPU probed yet):
    the sizing lossscape/profiles/*.toml states (~45 minutes, at most 60)."""
    import lossscape.plan as plan
    from lossscape.cache import RunStore

    monkeypatch.setattr(plan, "load_data", _sized)
    monkeypatch.setattr(plan, "missing_data", lambda setting: None)
    planned = plan.make_plan(load_profile("gpu"), RunStore(tmp_path), plan.NOMINAL_CUDA)
    assert {g.setting for g in planned.grids} >= {s.id for s in load_profile("gpu").settings}
    assert 30 * 60 < planned.total("seconds") <= 60 * 60
