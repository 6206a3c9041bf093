"""Hessian eigenvalues and trace against the dense Hessian of a tiny network (float64)."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, jacrev

from lossscape import geometry as g
from counting import CountingForward


@pytest.fixture(scope="module")
def problem():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 3)).double()  # 31 parameters
    X = torch.randn(23, 3, dtype=torch.float64)
    y = torch.randint(0, 3, (23,))
    names = [name for name, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]

    def loss_of_flat(flat):
        pieces = torch.split(flat, [s.numel() for s in shapes])
        params = {n: piece.view(s) for n, piece, s in zip(names, pieces, shapes)}
        return F.cross_entropy(functional_call(model, params, (X,)), y)

    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    # Reverse-over-reverse: torch.func.hessian's forward mode loads TorchScript decompositions
    # that warn on this torch; the matrix is the same.
    H = jacrev(jacrev(loss_of_flat))(flat)
    return model, X, y, H


@pytest.mark.parametrize("batch_size", [None, 5])  # 5: ragged chunks must still give the mean
def test_top_eigenvalues_match_dense(problem, batch_size):
    model, X, y, H = problem
    exact = torch.linalg.eigvalsh(H).flip(0)[:3].tolist()
    top, matvecs = g.hessian_top_eigenvalues(model, X, y, k=3, tol=1e-10, batch_size=batch_size, return_matvecs=True)
    assert top == pytest.approx(exact, rel=1e-7)
    assert 0 < matvecs < 200


def test_default_tolerance_is_relative_accuracy(problem):
    model, X, y, H = problem
    (top,) = g.hessian_top_eigenvalues(model, X, y)
    assert top == pytest.approx(float(torch.linalg.eigvalsh(H)[-1]), rel=1e-4)


def test_largest_algebraic_not_largest_magnitude():
    # H = diag(1, -5) for loss = (a^2 - 5 b^2) / 2: the top eigenvalue is 1, not -5.
    class Saddle(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.tensor([0.3, -0.2], dtype=torch.float64))

        def forward(self, X):
            return self.w.expand(len(X), 2)

    def saddle_loss(out, _):
        return (0.5 * out[:, 0] ** 2 - 2.5 * out[:, 1] ** 2).mean()

    X = torch.zeros(4, 1, dtype=torch.float64)
    (top,) = g.hessian_top_eigenvalues(Saddle(), X, X, loss_fn=saddle_loss)
    assert top == pytest.approx(1.0, rel=1e-6)


def test_power_iteration_baseline(problem):
    model, X, y, H = problem
    eig = torch.linalg.eigvalsh(H)
    assert eig[-1] > abs(eig[0])  # precondition: the top eigenvalue is also the largest in magnitude
    value, matvecs = g.hessian_power_iteration(model, X, y, tol=1e-12, maxiter=5000)
    assert value == pytest.approx(float(eig[-1]), rel=1e-6)
    assert matvecs > 1


def test_hutchinson_trace_within_its_standard_error(problem):
    model, X, y, H = problem
    samples = 400
    mean, se = g.hessian_trace(model, X, y, samples=samples, seed=3)
    # For Rademacher v, Var(v^T H v) = 2 (||H||_F^2 - sum_i H_ii^2): the SE must match it too.
    theory_se = float(torch.sqrt(2 * (H.square().sum() - H.diagonal().square().sum()) / samples))
    assert abs(mean - float(H.trace())) < 4 * theory_se
    assert se == pytest.approx(theory_se, rel=0.25)


def test_trace_is_reproducible_by_seed(problem):
    model, X, y, _ = problem
    assert g.hessian_trace(model, X, y, samples=5, seed=1) == g.hessian_trace(model, X, y, samples=5, seed=1)
    assert g.hessian_trace(model, X, y, samples=5, seed=1) != g.hessian_trace(model, X, y, samples=5, seed=2)



@pytest.mark.parametrize("batch_size, forwards", [(None, 1), (5, 5 * 7)])  # 23 examples: 5 chunks of <= 5
def test_products_reuse_the_first_order_graph_when_x_fits_one_chunk(problem, batch_size, forwards):
    model, X, y, H = problem
    counted = CountingForward(model)
    mean, _ = g.hessian_trace(counted, X, y, samples=7, seed=0, batch_size=batch_size)
    assert counted.calls == forwards  # one chunk: one forward for all 7 products
    v_h_v = g.hessian_trace(model, X, y, samples=7, seed=0, batch_size=None if batch_size else 5)[0]
    assert mean == pytest.approx(v_h_v, rel=1e-9)  # both paths give the same products


def test_loss_linear_in_the_weights_has_zero_hessian():
    # the gradient is a constant with no graph: the product must be 0, not an autograd error
    model = nn.Linear(3, 1, bias=False).double()
    X = torch.randn(6, 3, dtype=torch.float64)
    assert g.hessian_trace(model, X, X[:, 0], samples=3, loss_fn=lambda out, _: out.mean()) == (0.0, 0.0)
