"""lossscape.harness.measure: a measurement is keyed by the function, its arguments (defaults
filled in), the data's fingerprint and what of the run it reads, so equal computations share one
cache entry and different ones never do."""
import json

import numpy as np
import pytest
import torch

from lossscape import RunConfig, geometry
from lossscape.cache import RunStore
from lossscape.harness.measure import measured
from lossscape.data import load_dataset

CFG = RunConfig(dataset="mnist1d", n_samples=200, model="mlp", width=8, batch_size=32, lr=0.1, epochs=1, seed=0)
calls = []


def counted_mean(model, X, y, scale=1.0, shift=0.0):
    """A cheap stand-in for a geometry function that records each real computation."""
    calls.append((scale, shift))
    return np.float32(scale * float(X.double().mean()) + shift)


def weight_norm(model, X, y):
    return torch.cat([p.detach().flatten() for p in model.parameters()]).norm()


def snapshot_count(run, X, y):
    return [len(run.snapshots), run.config.seed]


def ensemble_seeds(runs, X, y):
    return [r.config.seed for r in runs]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    store = RunStore(tmp_path_factory.mktemp("runs"))
    return [store.get_or_train(CFG), store.get_or_train(CFG.replace(seed=1))]


@pytest.fixture
def store(tmp_path):
    calls.clear()
    return RunStore(tmp_path)


@pytest.fixture(scope="module")
def data():
    ds = load_dataset(CFG.dataset, n_samples=CFG.n_samples)
    return ds.X_train, ds.y_train


def _entries(store) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((store.root / "measures").rglob("*.json"))]


def test_two_call_sites_with_the_same_function_arguments_and_data_share_one_entry(store, runs, data):
    """LR-3 passes keskar_sharpness's epsilon alone; GEO-6 and X-3 pass its defaults as well. One entry."""
    run, (X, y) = runs[0], data
    lr3 = measured(store, run, geometry.keskar_sharpness, X, y, epsilon=1e-3)
    X2, y2 = X.clone(), y.clone()  # equal data in other tensors, as another claim module loads it
    geo6 = measured(store, run, geometry.keskar_sharpness, X2, y2, epsilon=1e-3, subspace_dim=None, maxiter=10, seed=0)
    assert lr3 == geo6 and isinstance(lr3, float)
    [entry] = _entries(store)
    assert entry["name"] == "lossscape.geometry.sharpness.keskar_sharpness"
    assert entry["params"]["kwargs"]["epsilon"] == 1e-3 and entry["params"]["kwargs"]["maxiter"] == 10


def test_a_cached_measurement_is_not_computed_again(store, runs, data):
    first = measured(store, runs[0], counted_mean, *data, scale=2.0)
    again = measured(RunStore(store.root), runs[0], counted_mean, *data, scale=2.0)
    assert calls == [(2.0, 0.0)] and first == again and type(first) is float  # numpy float32 stored as JSON


@pytest.mark.parametrize("change", ["kwarg", "data", "run", "weights", "function"])
def test_anything_that_changes_the_value_is_another_entry(store, runs, data, change):
    X, y = data
    measured(store, runs[0], counted_mean, X, y, scale=2.0)
    other = {"kwarg": lambda: measured(store, runs[0], counted_mean, X, y, scale=3.0),
             "data": lambda: measured(store, runs[0], counted_mean, X[:-1], y[:-1], scale=2.0),
             "run": lambda: measured(store, runs[1], counted_mean, X, y, scale=2.0),
             "weights": lambda: measured(store, runs[0], counted_mean, X, y, of="initial", scale=2.0),
             "function": lambda: measured(store, runs[0], weight_norm, X, y)}[change]
    other()
    assert len(_entries(store)) == 2


def test_a_data_fingerprint_sees_dtype_and_values(store, runs, data):
    X, y = data
    measured(store, runs[0], counted_mean, X, y)
    measured(store, runs[0], counted_mean, X.double(), y)
    flipped = X.clone()
    flipped[0, 0] += 1.0
    measured(store, runs[0], counted_mean, flipped, y)
    assert len(calls) == 3 and len(_entries(store)) == 3


def test_a_tensor_written_in_place_is_fingerprinted_again(store, runs, data):
    X, y = data[0].clone(), data[1]
    measured(store, runs[0], counted_mean, X, y)
    measured(store, runs[0], counted_mean, X, y)  # the same tensor, unchanged: its remembered fingerprint
    X[0, 0] += 1.0
    measured(store, runs[0], counted_mean, X, y)
    assert len(calls) == 2 and len(_entries(store)) == 2


def test_of_selects_the_final_or_initial_weights_or_the_run(store, runs, data):
    run = runs[0]
    final = measured(store, run, weight_norm, *data)
    initial = measured(store, run, weight_norm, *data, of="initial")
    assert final == pytest.approx(float(weight_norm(run.model(), *data)))
    assert initial == pytest.approx(float(weight_norm(run.model(run.initial_state), *data))) != final
    assert measured(store, run, snapshot_count, *data, of="run") == [len(run.snapshots), 0]
    assert measured(store, runs, ensemble_seeds, *data, of="run") == [0, 1]
    [group] = [e for e in _entries(store) if e["name"].endswith("ensemble_seeds")]
    assert [c["seed"] for c in group["params"]["runs"]] == [0, 1]
    assert (store.root / "measures" / store.key(run.config)).is_dir()  # beside the group's first run


def to_other(model, X, y, to, alphas):
    return [float(a) * to.config.seed for a in alphas]


def test_keyword_runs_and_arrays_are_keyed_by_their_config_and_bytes(store, runs, data):
    alphas = np.linspace(0, 1, 3)
    assert measured(store, runs[0], to_other, *data, to=runs[1], alphas=alphas) == [0.0, 0.5, 1.0]
    measured(store, runs[0], to_other, *data, to=runs[0], alphas=alphas)
    measured(store, runs[0], to_other, *data, to=runs[1], alphas=alphas + 1)
    kwargs = [e["params"]["kwargs"] for e in _entries(store)]
    assert len(kwargs) == 3 and all("run" in k["to"] and "sha256" in k["alphas"]["array"] for k in kwargs)


def test_closures_lambdas_and_unknown_keywords_are_refused(store, runs, data):
    scale = 2.0

    def closure(model, X, y):
        return scale
    with pytest.raises(TypeError, match="is not a module-level function"):
        measured(store, runs[0], closure, *data)
    with pytest.raises(TypeError, match="is not a module-level function"):
        measured(store, runs[0], lambda model, X, y: 1.0, *data)
    with pytest.raises(TypeError, match="unexpected keyword argument 'epsilonn'"):
        measured(store, runs[0], geometry.keskar_sharpness, *data, epsilonn=1e-3)
    with pytest.raises(ValueError, match="of: got 'best'; allowed: final, initial, run"):
        measured(store, runs[0], weight_norm, *data, of="best")
    with pytest.raises(ValueError, match="a list of runs needs of='run'"):
        measured(store, runs, weight_norm, *data)
    assert not (store.root / "measures").exists()

