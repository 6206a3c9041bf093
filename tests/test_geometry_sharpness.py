"""Keskar sharpness against maxima found by enumerating the vertices of the box.

A linear model under squared error has a loss that is a convex quadratic in its weights, so its
maximum over a box sits at a vertex. When the quadratic is separable (the design's columns, as
seen through the search space, are orthogonal) that vertex is the one ascent from the centre
reaches, so L-BFGS-B must find the enumerated maximum exactly.
"""
import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lossscape import geometry as g


def squared_error(out, target):
    return (out.squeeze(-1) - target).square().mean()


def linear_model(n_in, seed):
    torch.manual_seed(seed)
    return nn.Linear(n_in, 1, bias=False).double()


def orthogonal_columns(n, p, seed):
    """An n x p design with orthogonal columns of different lengths."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((n, p)))
    return q * rng.uniform(0.5, 3.0, p)


def enumerated_phi(f, center, radius, to_weights):
    """phi from the exact maximum of f over the box {center + s * radius}, s in {-1, 1}^p."""
    f0 = f(to_weights(np.zeros_like(center)))
    fmax = max(f(to_weights(np.array(s) * radius)) for s in itertools.product((-1.0, 1.0), repeat=len(center)))
    return (fmax - f0) / (1.0 + f0) * 100.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_full_space_matches_vertex_enumeration(seed):
    X = orthogonal_columns(12, 4, seed)
    t = np.random.default_rng(seed + 10).standard_normal(12)
    model = linear_model(4, seed)
    w = model.weight.detach().numpy().reshape(-1).copy()
    eps = 0.3  # large, so the curvature (not only the gradient) shapes the answer

    def f(weights):
        return np.mean((X @ weights - t) ** 2)

    expected = enumerated_phi(f, w, eps * (np.abs(w) + 1), lambda z: w + z)
    phi = g.keskar_sharpness(model, torch.tensor(X), torch.tensor(t), epsilon=eps, loss_fn=squared_error)
    assert phi == pytest.approx(expected, rel=1e-9)


def test_full_space_never_exceeds_the_true_maximum():
    # Coupled weights: L-BFGS-B may stop at a lower vertex, but never above the true maximum.
    for seed in range(5):
        rng = np.random.default_rng(seed)
        X, t = rng.standard_normal((10, 4)), rng.standard_normal(10)
        model = linear_model(4, seed)
        w = model.weight.detach().numpy().reshape(-1).copy()
        expected = enumerated_phi(lambda v: np.mean((X @ v - t) ** 2), w, 0.3 * (np.abs(w) + 1), lambda z: w + z)
        phi = g.keskar_sharpness(model, torch.tensor(X), torch.tensor(t), epsilon=0.3, loss_fn=squared_error)
        assert 0 < phi <= expected * (1 + 1e-9)


def test_subspace_matches_vertex_enumeration():
    n_params, p, seed, eps = 6, 3, 4, 0.2
    model = linear_model(n_params, 0)
    w = model.weight.detach().numpy().reshape(-1).copy()
    # The projection as keskar_sharpness documents it, rebuilt here.
    A = torch.randn(n_params, p, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).numpy()
    A_pinv = np.linalg.pinv(A)
    # X = U A^+ makes X A = U, orthogonal columns: separable in the subspace coordinates.
    X = orthogonal_columns(10, p, 7) @ A_pinv
    t = np.random.default_rng(8).standard_normal(10)

    def f(weights):
        return np.mean((X @ weights - t) ** 2)

    expected = enumerated_phi(f, A_pinv @ w, eps * (np.abs(A_pinv @ w) + 1), lambda z: w + A @ z)
    phi = g.keskar_sharpness(
        model, torch.tensor(X), torch.tensor(t), epsilon=eps, subspace_dim=p, seed=seed, loss_fn=squared_error
    )
    assert phi == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("subspace_dim", [None, 10])
def test_grows_with_epsilon_and_vanishes_with_it(trained_mlp, subspace_dim):
    model, X, y = trained_mlp
    phis = [g.keskar_sharpness(model, X, y, epsilon=eps, subspace_dim=subspace_dim) for eps in (1e-7, 1e-3, 1e-2, 1e-1)]
    assert 0 <= phis[0] < 1e-4
    assert all(a < b for a, b in zip(phis, phis[1:]))


def test_chunking_leaves_the_answer_and_loss_fn_is_used(trained_mlp):
    model, X, y = trained_mlp
    whole = g.keskar_sharpness(model, X, y, epsilon=1e-2)
    assert g.keskar_sharpness(model, X, y, epsilon=1e-2, batch_size=7) == pytest.approx(whole, rel=1e-8)
    doubled = g.keskar_sharpness(model, X, y, epsilon=1e-2, loss_fn=lambda out, t: 2 * F.cross_entropy(out, t))
    assert doubled != pytest.approx(whole, rel=1e-3)  # loss_fn is used: phi is not scale-invariant


# -- phi's first-order part -------------------------------------------------------------------------

def _softmax_regression(seed):
    torch.manual_seed(seed)
    model = nn.Linear(4, 3).double()
    X = torch.randn(20, 4, dtype=torch.float64)
    y = torch.randint(0, 3, (20,))
    return model, X, y


def test_first_order_part_equals_the_hand_computed_gradient_formula():
    """Oracle: softmax regression's gradient in closed form, dL/dW = (p - onehot)^T X / n and
    dL/db = mean(p - onehot), written with numpy, not autograd."""
    model, X, y = _softmax_regression(0)
    W, b = model.weight.detach().numpy(), model.bias.detach().numpy()
    Xn = X.numpy()
    logits = Xn @ W.T + b
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    f = float(-np.log(p[np.arange(20), y.numpy()]).mean())
    r = p - np.eye(3)[y.numpy()]
    gW, gb = r.T @ Xn / 20, r.mean(0)
    eps = 1e-3
    rise = eps * ((np.abs(gW) * (np.abs(W) + 1)).sum() + (np.abs(gb) * (np.abs(b) + 1)).sum())
    out = g.keskar_first_order(model, X, y, epsilon=eps)
    assert out["first_order"] == pytest.approx(rise / (1 + f) * 100, rel=1e-10)
    assert out["grad_norm"] == pytest.approx(np.sqrt((gW**2).sum() + (gb**2).sum()), rel=1e-10)
    assert out["loss"] == pytest.approx(f, rel=1e-12)


def test_phi_of_a_convex_loss_is_at_least_its_first_order_part():
    """f convex: f(x + z) >= f(x) + g.z for every z in the box, so the maximum over the box is at
    least the linearization's, which L-BFGS-B reaches at the vertex sign(g) * radius."""
    model, X, y = _softmax_regression(1)
    for eps in (1e-3, 1e-2):
        first = g.keskar_first_order(model, X, y, epsilon=eps)["first_order"]
        assert first > 0
        assert g.keskar_sharpness(model, X, y, epsilon=eps) >= first * (1 - 1e-9)
