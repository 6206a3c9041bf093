"""Adaptive sharpness (box |z_i| <= eps |x_i|) against an enumerated maximum, and its invariance.

Oracle: a linear model under squared error with orthogonal design columns has a separable convex
quadratic loss, so its maximum over a box is the vertex that ascent from the centre reaches; every
vertex is enumerated here. Invariance: Dinh et al.'s rescaling (a W_1, a b_1, W_2 / a) of a ReLU
network leaves its function, hence the adaptive value, unchanged, while Keskar's value moves.
"""
import copy
import itertools

import numpy as np
import pytest
import torch
from torch import nn

from lossscape import geometry as g


def squared_error(out, target):
    return (out.squeeze(-1) - target).square().mean()


def separable_problem(seed, n=12, p=4):
    """A linear model and data whose loss is a separable quadratic in the weights."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((n, p)))
    X = q * rng.uniform(0.5, 3.0, p)  # orthogonal columns of different lengths
    t = rng.standard_normal(n)
    torch.manual_seed(seed)
    model = nn.Linear(p, 1, bias=False).double()
    return model, X, t


def enumerated_phi(X, t, w, radius):
    """phi from the exact maximum over the box {w + s * radius}, s in {-1, 1}^p."""
    def f(v):
        return np.mean((X @ v - t) ** 2)
    f0 = f(w)
    fmax = max(f(w + np.array(s) * radius) for s in itertools.product((-1.0, 1.0), repeat=len(w)))
    return (fmax - f0) / (1.0 + f0) * 100.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_the_enumerated_maximum_over_the_adaptive_box(seed):
    model, X, t = separable_problem(seed)
    w = model.weight.detach().numpy().reshape(-1).copy()
    eps = 0.3  # large, so the curvature (not only the gradient) shapes the answer
    phi = g.adaptive_sharpness(model, torch.tensor(X), torch.tensor(t), epsilon=eps, loss_fn=squared_error)
    assert phi == pytest.approx(enumerated_phi(X, t, w, eps * np.abs(w)), rel=1e-9)
    # the box is |x|-scaled, not Keskar's: with the + 1 the same search finds a larger maximum
    assert phi < enumerated_phi(X, t, w, eps * (np.abs(w) + 1)) * (1 - 1e-3)


def test_a_zero_weight_cannot_move():
    model, X, t = separable_problem(3)
    with torch.no_grad():
        model.weight[0, 1] = 0.0
    w = model.weight.detach().numpy().reshape(-1).copy()
    phi = g.adaptive_sharpness(model, torch.tensor(X), torch.tensor(t), epsilon=0.3, loss_fn=squared_error)
    assert phi == pytest.approx(enumerated_phi(X, t, w, 0.3 * np.abs(w)), rel=1e-9)


@pytest.mark.parametrize("a", [0.1, 10.0])
def test_layer_rescaling_leaves_adaptive_sharpness_unchanged(trained_mlp, a):
    model, X, y = trained_mlp
    rescaled = copy.deepcopy(model)
    with torch.no_grad():
        rescaled[0].weight.mul_(a)
        rescaled[0].bias.mul_(a)
        rescaled[2].weight.div_(a)
    assert torch.allclose(rescaled(X), model(X), rtol=0, atol=1e-12)  # the same function
    for eps in (1e-3, 5e-2):
        assert g.adaptive_sharpness(rescaled, X, y, epsilon=eps) == pytest.approx(
            g.adaptive_sharpness(model, X, y, epsilon=eps), rel=1e-8)
    # Keskar's box is not invariant: the same rescaling moves its value several-fold (Dinh et al.)
    ratio = g.keskar_sharpness(rescaled, X, y, epsilon=1e-2) / g.keskar_sharpness(model, X, y, epsilon=1e-2)
    assert not 0.5 < ratio < 2


def test_rejects_an_unknown_box(trained_mlp):
    model, X, y = trained_mlp
    with pytest.raises(ValueError, match="box"):
        g.keskar_sharpness(model, X, y, box="cube")
