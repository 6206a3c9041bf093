"""Claim GEO-4 as properties of `mean_batch_update_norm`, and per-example gradients against a loop.

With M(b) the mean over consecutive batches of ||mean of the batch's vectors||, merging two
batches of size b with sums s, t into one of size 2b replaces (||s/b|| + ||t/b||) / 2 by
||(s + t) / 2b||, which is no larger by the triangle inequality, with equality exactly when s and
t point the same way (or one is zero). So M(2b) <= M(b), with equality iff every merged pair's
sums are positively collinear.
"""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from torch import nn

from lossscape import geometry as g

coordinates = st.floats(-10, 10, allow_nan=False, allow_infinity=False)


def by_hand(vectors: np.ndarray, b: int) -> float:
    """Mean over full consecutive batches of the norm of the batch mean (plain numpy loop)."""
    norms = [np.linalg.norm(vectors[i : i + b].mean(axis=0)) for i in range(0, len(vectors) - b + 1, b)]
    return float(np.mean(norms))


@st.composite
def nested_partitions(draw):
    """Vectors whose count n = b * 2**levels admits batch sizes b, 2b, ..., n."""
    b, levels, d = draw(st.integers(1, 4)), draw(st.integers(1, 3)), draw(st.integers(1, 5))
    return draw(arrays(np.float64, (b * 2**levels, d), elements=coordinates)), b, levels


@given(nested_partitions())
def test_merging_batches_never_increases_the_mean_update(case):
    vectors, b, levels = case
    norms = [g.mean_batch_update_norm(vectors, b * 2**k) for k in range(levels + 1)]
    for smaller_batches, merged in zip(norms, norms[1:]):
        assert merged <= smaller_batches + 1e-12 * (1 + smaller_batches)


@given(arrays(np.float64, st.tuples(st.integers(1, 12), st.integers(1, 4)), elements=coordinates), st.data())
def test_matches_a_loop_over_consecutive_batches(vectors, data):
    b = data.draw(st.integers(1, len(vectors)))  # ragged last batch included, and dropped
    lr = data.draw(st.floats(-2, 2, allow_nan=False))
    expected = abs(lr) * by_hand(vectors, b)
    assert g.mean_batch_update_norm(torch.tensor(vectors), b, lr=lr) == pytest.approx(expected, rel=1e-12, abs=1e-12)


@st.composite
def collinear_groups(draw):
    """Groups of 2b vectors, each group positive multiples of its own direction."""
    b, groups, d = draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(1, 4))
    rows = []
    for _ in range(groups):
        direction = draw(arrays(np.float64, d, elements=coordinates).filter(lambda u: np.linalg.norm(u) > 0.1))
        scales = draw(arrays(np.float64, 2 * b, elements=st.floats(0.01, 10)))
        rows.append(scales[:, None] * direction)
    return np.concatenate(rows), b


@given(collinear_groups())
def test_equality_when_each_merged_group_points_one_way(case):
    vectors, b = case
    assert g.mean_batch_update_norm(vectors, 2 * b) == pytest.approx(g.mean_batch_update_norm(vectors, b), rel=1e-12)


@given(
    r1=st.floats(0.1, 10),
    r2=st.floats(0.1, 10),
    angle=st.floats(0.05, math.pi),
    d=st.integers(2, 5),
    seed=st.integers(0, 2**32 - 1),
)
def test_strict_decrease_when_two_vectors_are_not_collinear(r1, r2, angle, d, seed):
    # a and b at a known angle, in a random plane of R^d.
    basis, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((d, 2)))
    a = r1 * basis[:, 0]
    b = r2 * (math.cos(angle) * basis[:, 0] + math.sin(angle) * basis[:, 1])
    vectors = np.stack([a, b])
    closed_form = math.sqrt(r1**2 + r2**2 + 2 * r1 * r2 * math.cos(angle)) / 2
    assert g.mean_batch_update_norm(vectors, 1) == pytest.approx((r1 + r2) / 2, rel=1e-12)
    assert g.mean_batch_update_norm(vectors, 2) == pytest.approx(closed_form, rel=1e-12)
    assert closed_form < (r1 + r2) / 2 * (1 - 1e-6)


def test_batch_size_out_of_range_is_refused():
    with pytest.raises(ValueError):
        g.mean_batch_update_norm(np.ones((3, 2)), 4)
    with pytest.raises(ValueError):
        g.mean_batch_update_norm(np.ones((3, 2)), 0)


def loop_of_single_example_grads(model, X, y):
    model.eval()
    rows = []
    for i in range(len(X)):
        loss = F.cross_entropy(model(X[i : i + 1]), y[i : i + 1])
        rows.append(torch.cat([gr.reshape(-1) for gr in torch.autograd.grad(loss, list(model.parameters()))]))
    return torch.stack(rows)


def test_per_example_grads_match_a_loop(trained_mlp):
    model, X, y = trained_mlp
    expected = loop_of_single_example_grads(model, X, y)
    torch.testing.assert_close(g.per_example_grads(model, X, y, batch_size=10), expected, rtol=1e-10, atol=1e-12)


def test_per_example_grads_of_a_batchnorm_network():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Conv1d(1, 2, 3), nn.BatchNorm1d(2), nn.ReLU(), nn.Flatten(), nn.Linear(8, 3)).double()
    with torch.no_grad():
        model(torch.randn(8, 1, 6, dtype=torch.float64) + 1)  # running statistics off the identity
    X, y = torch.randn(7, 1, 6, dtype=torch.float64), torch.randint(0, 3, (7,))
    expected = loop_of_single_example_grads(model, X, y)
    model.train()
    torch.testing.assert_close(g.per_example_grads(model, X, y), expected, rtol=1e-10, atol=1e-12)


def test_real_gradients_mean_update_shrinks_with_batch_size(trained_mlp):
    """GEO-4 measured: on per-example gradients of a trained network, nested batch sizes
    1, 2, 4, ..., 64 give a non-increasing mean update, and strictly smaller at 64 than at 1."""
    model, X, y = trained_mlp
    grads = g.per_example_grads(model, X, y)
    norms = [g.mean_batch_update_norm(grads, 2**k) for k in range(7)]
    assert all(merged <= smaller for smaller, merged in zip(norms, norms[1:]))
    assert norms[-1] < 0.5 * norms[0]
