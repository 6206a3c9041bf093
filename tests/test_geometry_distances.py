"""Distances from init against a concatenate-and-norm computed by hand."""
import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lossscape import geometry as g


@pytest.fixture(scope="module")
def states():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv1d(1, 4, 3), nn.BatchNorm1d(4), nn.ReLU(), nn.Flatten(), nn.Linear(16, 3))
    initial = copy.deepcopy(model.state_dict())
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    X, y = torch.randn(32, 1, 6), torch.randint(0, 3, (32,))
    for _ in range(5):  # train mode: parameters and BatchNorm buffers both move
        optimizer.zero_grad()
        F.cross_entropy(model(X), y).backward()
        optimizer.step()
    return model, initial, model.state_dict()


def test_distance_is_the_norm_of_the_parameter_difference(states):
    model, initial, final = states
    names = [name for name, _ in model.named_parameters()]
    diff = torch.cat([final[k].double().reshape(-1) - initial[k].double().reshape(-1) for k in names]).numpy()
    assert g.distance_from_init(initial, final) == pytest.approx(np.linalg.norm(diff), rel=1e-12)
    # BatchNorm buffers moved too, and are excluded by design.
    assert not torch.equal(initial["1.running_mean"], final["1.running_mean"])


def test_layer_distances_per_parameter_tensor(states):
    model, initial, final = states
    d = g.layer_distances(initial, final)
    assert list(d) == [name for name, _ in model.named_parameters()]
    for name, value in d.items():
        diff = (final[name].double() - initial[name].double()).numpy()
        assert value == pytest.approx(np.linalg.norm(diff), rel=1e-12)


def test_group_by_layer_combines_weight_and_bias(states):
    _, initial, final = states
    grouped = g.group_by_layer(g.layer_distances(initial, final))
    assert list(grouped) == ["0", "1", "4"]
    for layer in grouped:
        diff = np.concatenate([
            (final[f"{layer}.{p}"].double() - initial[f"{layer}.{p}"].double()).numpy().ravel()
            for p in ("weight", "bias")
        ])
        assert grouped[layer] == pytest.approx(np.linalg.norm(diff), rel=1e-12)


def test_identical_states_are_at_distance_zero(states):
    _, initial, _ = states
    assert g.distance_from_init(initial, initial) == 0.0


def test_mismatched_state_dicts_are_refused(states):
    _, initial, final = states
    with pytest.raises(ValueError):
        g.distance_from_init(initial, {k: v for k, v in final.items() if k != "4.bias"})
