"""Filter-normalized directions and loss surfaces against models perturbed by hand."""
import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lossscape import geometry as g
from counting import CountingForward


def mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3)).double()


def relu_mlp():
    """Linear and ReLU only: a single point's pass is written out (stacked_mlp.forward_into)."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3)).double()


class _OwnStages(nn.Module):
    """A user's module of Linear and ReLU layers in a `stages` list, with a forward of its own (a
    residual): not a StagedNet, so not written out."""

    def __init__(self):
        super().__init__()
        self.stages = nn.ModuleList([nn.Sequential(nn.Linear(6, 6), nn.ReLU()), nn.Linear(6, 3)])

    def forward(self, x):
        return self.stages[1](x + self.stages[0](x))


def own_stages():
    torch.manual_seed(0)
    return _OwnStages().double()


def conv_bn():
    torch.manual_seed(1)
    model = nn.Sequential(
        nn.Conv1d(1, 3, 3), nn.BatchNorm1d(3), nn.ReLU(), nn.Flatten(), nn.Dropout(0.5), nn.Linear(3 * 4, 3)
    ).double()
    with torch.no_grad():  # give BatchNorm running statistics that are not the identity
        model.train()
        for _ in range(3):
            model(torch.randn(16, 1, 6, dtype=torch.float64) * 2 + 1)
    return model


def data(model):
    torch.manual_seed(2)
    shape = (11, 1, 6) if any(isinstance(m, nn.Conv1d) for m in model.modules()) else (11, 6)
    return torch.randn(*shape, dtype=torch.float64), torch.randint(0, 3, (11,))


def loss_by_hand(model, X, y, steps):
    """The loss of a deep copy whose parameters were moved by sum(t * d) in place."""
    moved = copy.deepcopy(model).eval()
    with torch.no_grad():
        for name, p in moved.named_parameters():
            for t, d in steps:
                p.add_(t * d[name])
        return float(F.cross_entropy(moved(X), y))


@pytest.mark.parametrize("make", [mlp, conv_bn])
def test_filter_norms_match_weights(make):
    model = make()
    d = g.filter_normalized_direction(model, seed=3)
    assert list(d) == [name for name, _ in model.named_parameters()]
    for name, w in model.named_parameters():
        if w.dim() > 1:
            for d_slice, w_slice in zip(d[name], w.detach()):
                assert float(d_slice.norm()) == pytest.approx(float(w_slice.norm()), rel=1e-9)
        else:
            assert torch.count_nonzero(d[name]) == 0  # biases and BatchNorm affine: zeroed


def test_ignore_none_copies_one_dimensional_weights():
    model = conv_bn()
    kept = g.filter_normalized_direction(model, seed=3, ignore=None)
    ignored = g.filter_normalized_direction(model, seed=3)
    for name, w in model.named_parameters():
        expected = w.detach() if w.dim() <= 1 else ignored[name]
        assert torch.equal(kept[name], expected)


def test_directions_are_random_by_seed():
    model = mlp()
    a, b = g.filter_normalized_direction(model, seed=0), g.filter_normalized_direction(model, seed=1)
    assert torch.equal(a["0.weight"], g.filter_normalized_direction(model, seed=0)["0.weight"])
    assert not torch.allclose(a["0.weight"], b["0.weight"])


@pytest.mark.parametrize("make", [mlp, relu_mlp, own_stages, conv_bn])
@pytest.mark.parametrize("points", [1, 4])
def test_non_square_surface_matches_hand_perturbed_models(make, points):
    model = make()
    X, y = data(model)
    dx, dy = g.filter_normalized_direction(model, seed=4), g.filter_normalized_direction(model, seed=5)
    xs = [-0.6, -0.1, 0.0, 0.45, 1.0]
    ys = [-0.3, 0.25, 0.8]
    # 4 points per pass over 15 points and 4-example chunks of 11: both chunkings are ragged.
    Z = g.loss_surface_2d(model, X, y, dx, dy, xs, ys, points_per_pass=points, batch_size=4)
    assert Z.shape == (len(ys), len(xs))
    expected = [[loss_by_hand(model, X, y, [(a, dx), (b, dy)]) for a in xs] for b in ys]
    np.testing.assert_allclose(Z, expected, rtol=1e-10)


def test_surface_centre_is_the_model_loss():
    model = conv_bn()
    X, y = data(model)
    d = g.filter_normalized_direction(model)
    Z = g.loss_surface_2d(model, X, y, d, d, [0.0], [0.0])
    with torch.no_grad():
        assert Z[0, 0] == pytest.approx(float(F.cross_entropy(model.eval()(X), y)), rel=1e-12)


def test_slice_matches_hand_perturbed_models():
    model = conv_bn()
    X, y = data(model)
    d = g.filter_normalized_direction(model, seed=6)
    ts = [-1.0, -0.2, 0.5, 2.0]
    expected = [loss_by_hand(model, X, y, [(t, d)]) for t in ts]
    np.testing.assert_allclose(g.loss_slice_1d(model, X, y, d, ts), expected, rtol=1e-10)


def test_direction_with_wrong_keys_is_refused():
    model = mlp()
    X, y = data(model)
    d = g.filter_normalized_direction(model)
    with pytest.raises(ValueError):
        g.loss_slice_1d(model, X, y, {k: v for k, v in d.items() if k != "0.bias"}, [0.0])



# the clock's readings: three single-point passes (PROBE_FIRST_PASSES), then a pass of 4 and one of 16
@pytest.mark.parametrize("clock, passes", [
    ([0, 1, 0, 1, 0, 1, 0, 400], 4 + 23),  # 1 point per pass is fastest: 16 per pass is not tried, 23 points remain
    ([0, 10, 0, 10, 0, 10, 0, 4, 0, 160], 5 + 2),  # 4 per pass: 4 + 3
    ([0, 10, 0, 10, 0, 10, 0, 36, 0, 16], 5 + 1),  # 16 per pass: one
    ([0, 10, 0, 10, 0, 10, 0, 38, 0, 160], 5 + 7),  # 4 per pass is faster, but within PROBE_MARGIN of the first
    ([0, 100, 0, 10, 0, 10, 0, 38, 0, 160], 5 + 7),  # a slow first pass alone does not make 4 per pass win
    ([0, 10, 0, 10, 0, 10, 0, 8, 0, 160], 5 + 2),  # 16 per pass lost to 4: 4 + 3
])
def test_probe_picks_the_fastest_points_per_pass_and_keeps_its_points(monkeypatch, clock, passes):
    from lossscape.geometry import _functional
    ticks = iter(clock)
    monkeypatch.setattr(_functional, "_synced_clock", lambda device: next(ticks))
    model = mlp()
    counted = CountingForward(model)
    X, y = data(model)
    dx, dy = g.filter_normalized_direction(counted, seed=4), g.filter_normalized_direction(counted, seed=5)
    xs, ys = np.linspace(-1, 1, 6), np.linspace(-0.5, 0.5, 5)  # 30 points: 3 x 1 + 4 + 16 probe, 7 after
    Z = g.loss_surface_2d(counted, X, y, dx, dy, xs, ys)
    assert counted.calls == passes
    expected = [[loss_by_hand(counted, X, y, [(a, dx), (b, dy)]) for a in xs] for b in ys]
    np.testing.assert_allclose(Z, expected, rtol=1e-10)
