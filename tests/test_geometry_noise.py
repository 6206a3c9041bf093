"""Gradient noise estimators against exact values from all per-example gradients.

With batches drawn with replacement, E|G_b|^2 = |G|^2 + tr(Sigma) / b exactly, Sigma the
population covariance of the per-example gradients over X. The estimators are Monte Carlo, so
each tolerance below is about four of its standard deviations, measured over 12 seeds for these
settings (B_simple: 5.3% at 400 batches; standard errors: <= 2.7% with replacement, <= 3% without).
"""
import numpy as np
import pytest
import torch
from torch import nn

from lossscape import geometry as g

N = 64


@pytest.fixture(scope="module")
def problem():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3)).double()
    X = torch.randn(N, 5, dtype=torch.float64)
    # Mostly one class: the mean gradient is large enough that B_simple (about 5) sits between
    # the two batch sizes, where the two-batch estimator is most precise.
    y = torch.where(torch.rand(N) < 0.8, 0, torch.randint(1, 3, (N,)))
    grads = g.per_example_grads(model, X, y)
    mean = grads.mean(dim=0)
    trace = float((grads - mean).square().sum(dim=1).mean())  # population covariance: divisor N
    return model, X, y, trace, float(mean.square().sum())


def test_noise_scale_matches_exact_ratio(problem):
    model, X, y, trace, grad_sq = problem
    estimate = g.gradient_noise_scale(model, X, y, b_small=4, b_big=64, n_batches=400, seed=1)
    assert estimate == pytest.approx(trace / grad_sq, rel=0.2)


def test_noise_scale_validates_batch_sizes(problem):
    model, X, y, _, _ = problem
    with pytest.raises(ValueError):
        g.gradient_noise_scale(model, X, y, b_small=8, b_big=8)


def test_standard_error_follows_one_over_sqrt_m(problem):
    model, X, y, trace, _ = problem
    sizes = [1, 8, 64]
    result = g.gradient_standard_error(model, X, y, sizes, n_batches=150, seed=2)
    np.testing.assert_allclose(result["std_error"], np.sqrt(trace / np.array(sizes)), rtol=0.1)
    assert result["slope"] == pytest.approx(-0.5, abs=0.05)
    np.testing.assert_array_equal(result["batch_sizes"], sizes)


def test_standard_error_without_replacement_has_the_finite_population_factor(problem):
    model, X, y, trace, _ = problem
    sizes = np.array([4, 32, N])
    result = g.gradient_standard_error(model, X, y, list(sizes), n_batches=100, seed=3, replace=False)
    expected = np.sqrt(trace / sizes * (N - sizes) / (N - 1))
    np.testing.assert_allclose(result["std_error"][:2], expected[:2], rtol=0.12)
    assert result["std_error"][2] < 1e-12  # a batch of all of X is the full gradient
