"""Every geometry function leaves the module as it found it: weights, buffers, per-module
train/eval flags, requires_grad flags and .grad; and restores the modes when it raises."""
import copy

import pytest
import torch
from torch import nn

from lossscape import geometry as g


def network(seed=0):
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Conv1d(1, 2, 3), nn.BatchNorm1d(2), nn.ReLU(), nn.Flatten(), nn.Dropout(0.3), nn.Linear(8, 3)
    ).double()
    with torch.no_grad():
        model(torch.randn(8, 1, 6, dtype=torch.float64))  # running statistics off the identity
    model[0].weight.requires_grad_(False)  # a frozen layer (FreezeOut) must stay frozen
    model[5].weight.grad = torch.ones_like(model[5].weight)  # a stale .grad must survive untouched
    model[4].eval()  # mixed modes: each module's own flag must come back
    return model


_data = torch.Generator().manual_seed(1)
X = torch.randn(10, 1, 6, generator=_data, dtype=torch.float64)
Y = torch.randint(0, 3, (10,), generator=_data)

CALLS = {
    "linear_interpolation": lambda m, **kw: g.linear_interpolation(m, network(2), X, Y, [0.0, 0.5], **kw),
    "interpolation_curves": lambda m, **kw: g.interpolation_curves(m, network(2), X, Y, [0.5], **kw),
    "interpolation_curves (as model_b)": lambda m, **kw: g.interpolation_curves(network(2), m, X, Y, [0.5], **kw),
    "keskar_sharpness": lambda m, **kw: g.keskar_sharpness(m, X, Y, epsilon=0.1, maxiter=2, **kw),
    "keskar_sharpness (subspace)": lambda m, **kw: g.keskar_sharpness(m, X, Y, subspace_dim=3, maxiter=2, **kw),
    "adaptive_sharpness": lambda m, **kw: g.adaptive_sharpness(m, X, Y, maxiter=2, **kw),
    "loss_surface_2d": lambda m, **kw: g.loss_surface_2d(
        m, X, Y, g.filter_normalized_direction(m), g.filter_normalized_direction(m, 1), [0, 1], [0], **kw
    ),
    "loss_slice_1d": lambda m, **kw: g.loss_slice_1d(m, X, Y, g.filter_normalized_direction(m), [0, 1], **kw),
    "hessian_top_eigenvalues": lambda m, **kw: g.hessian_top_eigenvalues(m, X, Y, k=1, **kw),
    "hessian_power_iteration": lambda m, **kw: g.hessian_power_iteration(m, X, Y, maxiter=3, **kw),
    "hessian_trace": lambda m, **kw: g.hessian_trace(m, X, Y, samples=2, **kw),
    "per_example_grads": lambda m, **kw: g.per_example_grads(m, X, Y, **kw),
    "gradient_noise_scale": lambda m, **kw: g.gradient_noise_scale(m, X, Y, 2, 4, n_batches=2, **kw),
    "gradient_standard_error": lambda m, **kw: g.gradient_standard_error(m, X, Y, [1, 2], n_batches=2, **kw),
}


def snapshot(model):
    return (
        copy.deepcopy(model.state_dict()),
        [m.training for m in model.modules()],
        [p.requires_grad for p in model.parameters()],
        [None if p.grad is None else p.grad.clone() for p in model.parameters()],
    )


def assert_unchanged(before, after):
    state0, modes0, flags0, grads0 = before
    state1, modes1, flags1, grads1 = after
    assert state0.keys() == state1.keys()
    assert all(torch.equal(state0[k], state1[k]) for k in state0)
    assert modes0 == modes1
    assert flags0 == flags1
    assert all((a is None and b is None) or torch.equal(a, b) for a, b in zip(grads0, grads1))


@pytest.mark.parametrize("name", list(CALLS))
def test_module_is_left_as_found(name):
    model = network()
    before = snapshot(model)
    CALLS[name](model)
    assert_unchanged(before, snapshot(model))


def test_filter_normalized_direction_leaves_module_as_found():
    model = network()
    before = snapshot(model)
    g.filter_normalized_direction(model, ignore=None)
    assert_unchanged(before, snapshot(model))


class Boom(RuntimeError):
    pass


def exploding_loss(logits, target):
    raise Boom


@pytest.mark.parametrize("name", list(CALLS))
def test_modes_are_restored_when_the_loss_raises(name):
    model = network()
    before = snapshot(model)
    with pytest.raises(Boom):
        CALLS[name](model, loss_fn=exploding_loss)
    assert_unchanged(before, snapshot(model))


def test_snapshot_detects_a_changed_mode():
    # Guard on the oracle itself: the comparison above must notice what it claims to check.
    model = network()
    before = snapshot(model)
    model.train()
    with pytest.raises(AssertionError):
        assert_unchanged(before, snapshot(model))
    model = network()
    with torch.no_grad():
        model[1].running_mean.add_(1.0)
    with pytest.raises(AssertionError):
        assert_unchanged(before, snapshot(model))
