"""Linear interpolation against models built by hand from the two state dicts."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lossscape import geometry as g


def conv_bn(seed):
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Conv1d(1, 3, 3), nn.BatchNorm1d(3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 4, 3)
    ).double()
    with torch.no_grad():  # different running statistics in each model
        model.train()
        for _ in range(3):
            model(torch.randn(16, 1, 6, dtype=torch.float64) * (seed + 1) + seed)
    return model


@pytest.fixture(scope="module")
def pair():
    torch.manual_seed(9)
    X, y = torch.randn(13, 1, 6, dtype=torch.float64), torch.randint(0, 3, (13,))
    return conv_bn(0), conv_bn(1), X, y


def by_hand(model_a, model_b, alpha, X, y):
    """A fresh model loaded with (1 - alpha) a + alpha b of every float state entry."""
    sa, sb = model_a.state_dict(), model_b.state_dict()
    mixed = {k: (1 - alpha) * v + alpha * sb[k] if v.is_floating_point() else v for k, v in sa.items()}
    model = conv_bn(2)
    model.load_state_dict(mixed)
    model.eval()
    with torch.no_grad():
        logits = model(X)
    return float(F.cross_entropy(logits, y)), float((logits.argmax(1) == y).double().mean())


def test_curve_matches_hand_mixed_weights_and_buffers(pair):
    model_a, model_b, X, y = pair
    alphas = [-1.0, 0.0, 0.5, 1.0, 2.0]
    curves = g.interpolation_curves(model_a, model_b, X, y, alphas, batch_size=5, points_per_pass=2)
    expected = np.array([by_hand(model_a, model_b, a, X, y) for a in alphas])
    np.testing.assert_allclose(curves["loss"], expected[:, 0], rtol=1e-10)
    np.testing.assert_allclose(curves["acc"], expected[:, 1])
    np.testing.assert_allclose(g.linear_interpolation(model_a, model_b, X, y, alphas), curves["loss"], rtol=1e-12)


def test_endpoints_are_the_two_models(pair):
    model_a, model_b, X, y = pair
    ends = g.linear_interpolation(model_a, model_b, X, y, [0.0, 1.0])
    with torch.no_grad():
        direct = [float(F.cross_entropy(m.eval()(X), y)) for m in (model_a, model_b)]
    np.testing.assert_allclose(ends, direct, rtol=1e-12)


def test_buffers_are_interpolated_not_copied(pair):
    # Guard on the oracle: midpoints differ if the statistics stay model_a's.
    model_a, model_b, X, y = pair
    mid = g.linear_interpolation(model_a, model_b, X, y, [0.5])[0]
    frozen_stats = conv_bn(2)
    sa, sb = model_a.state_dict(), model_b.state_dict()
    frozen_stats.load_state_dict(
        {k: (v + sb[k]) / 2 if "running" not in k and v.is_floating_point() else v for k, v in sa.items()}
    )
    with torch.no_grad():
        assert mid != pytest.approx(float(F.cross_entropy(frozen_stats.eval()(X), y)), rel=1e-6)


def test_accuracy_is_nan_for_regression_targets():
    torch.manual_seed(0)
    a, b = nn.Linear(2, 1).double(), nn.Linear(2, 1).double()
    X, t = torch.randn(5, 2, dtype=torch.float64), torch.randn(5, 1, dtype=torch.float64)
    curves = g.interpolation_curves(a, b, X, t, [0.0, 1.0], loss_fn=F.mse_loss)
    with torch.no_grad():
        np.testing.assert_allclose(curves["loss"], [float(F.mse_loss(a(X), t)), float(F.mse_loss(b(X), t))])
    assert np.isnan(curves["acc"]).all()
