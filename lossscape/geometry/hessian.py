"""Hessian spectrum of the mean loss over an evaluation set (claim GEO-8).

Hessian-vector products come from double backward, chunk by chunk over the data, each chunk's
loss weighted by its share of X so the product is that of the mean loss. When X fits one chunk
the first-order graph (forward and gradient, built with create_graph) is kept and every product
is one backward through it, as PyHessian does; rebuilding it per product cost 1.5x. With several
chunks each product rebuilds them one at a time, so memory stays that of one chunk. The top eigenvalues
come from Lanczos (scipy's `eigsh`, ARPACK) on a `LinearOperator`; power iteration is kept as
the textbook baseline the benchmark compares against; the trace is Hutchinson's estimator.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from scipy.sparse.linalg import LinearOperator, eigsh
from torch import Tensor, nn

from ._functional import (
    DEFAULT_BATCH,
    LossFn,
    buffers,
    evaluating,
    flatten,
    on_device,
    parameters,
    resolve_loss,
    unflatten,
    weighted_chunk_losses,
)


class _HessianVectorProduct:
    """v -> H v for the mean loss over X at the model's weights; counts its calls."""

    def __init__(self, model: nn.Module, X: Tensor, y: Tensor, loss_fn: LossFn | None, batch_size: int | None):
        self.model, self.loss_fn, self.batch_size = model, resolve_loss(loss_fn), batch_size
        self.X, self.y = on_device(model, X, y)
        self.params, self.bufs = parameters(model), buffers(model)
        self.flat = flatten(self.params)
        self.matvecs = 0
        self.kept = None  # (leaf, gradient with its graph) when X fits one chunk
        if len(self.X) <= (batch_size or DEFAULT_BATCH):
            self.kept = next(self._chunk_gradients())

    def _chunk_gradients(self):
        """(flat leaf, gradient of the chunk's weighted loss, differentiable) per chunk."""
        leaf = self.flat.clone().requires_grad_(True)
        leaves = unflatten(leaf, self.params)
        for loss in weighted_chunk_losses(self.model, leaves, self.bufs, self.X, self.y, self.loss_fn, self.batch_size):
            (grad,) = torch.autograd.grad(loss, leaf, create_graph=True, materialize_grads=True)
            yield leaf, grad

    def __call__(self, v: Tensor) -> Tensor:
        self.matvecs += 1
        v = v.to(self.flat)
        if self.kept is not None:
            leaf, grad = self.kept
            return self._vjp(leaf, grad, v, keep=True)
        hv = torch.zeros_like(self.flat)
        for leaf, grad in self._chunk_gradients():
            hv += self._vjp(leaf, grad, v, keep=False)
        return hv

    @staticmethod
    def _vjp(leaf: Tensor, grad: Tensor, v: Tensor, keep: bool) -> Tensor:
        # d(grad . v)/d(leaf) = H v (H is symmetric), as one backward seeded with v
        if not grad.requires_grad:  # the loss is linear in the weights: H = 0
            return torch.zeros_like(v)
        (hv,) = torch.autograd.grad(grad, leaf, grad_outputs=v, retain_graph=keep, materialize_grads=True)
        return hv

    def numpy(self, v: np.ndarray) -> np.ndarray:
        return self(torch.from_numpy(np.ascontiguousarray(v).reshape(-1))).double().cpu().numpy()


def hessian_top_eigenvalues(
    model: nn.Module,
    X: Tensor,
    y: Tensor,
    k: int = 1,
    tol: float = 1e-4,
    loss_fn: LossFn | None = None,
    return_matvecs: bool = False,
    batch_size: int | None = None,
    seed: int = 0,
) -> list[float] | tuple[list[float], int]:
    """The k largest (algebraic, not absolute) Hessian eigenvalues, largest first, by Lanczos.

    `tol` is eigsh's relative accuracy of the eigenvalues; `seed` fixes the starting vector so
    results repeat. With return_matvecs=True, also returns the number of Hessian-vector
    products used.
    """
    with evaluating(model):
        hvp = _HessianVectorProduct(model, X, y, loss_fn, batch_size)
        n = hvp.flat.numel()
        if not 0 < k < n:
            raise ValueError(f"k must be in [1, {n - 1}] for a model with {n} parameters")
        operator = LinearOperator((n, n), matvec=hvp.numpy, dtype=np.float64)
        v0 = np.random.default_rng(seed).standard_normal(n)
        # scipy's default ncv (>= 20) spends 20 products before its first convergence check;
        # 2k + 4 needed about half as many for k = 1 on the benchmark MLP, at the same accuracy.
        ncv = min(n, 2 * k + 4)
        values = eigsh(operator, k=k, which="LA", tol=tol, v0=v0, ncv=ncv, return_eigenvectors=False)
    top = sorted((float(v) for v in values), reverse=True)
    return (top, hvp.matvecs) if return_matvecs else top


def hessian_power_iteration(
    model: nn.Module,
    X: Tensor,
    y: Tensor,
    tol: float = 1e-4,
    maxiter: int = 1000,
    loss_fn: LossFn | None = None,
    batch_size: int | None = None,
    seed: int = 0,
) -> tuple[float, int]:
    """(eigenvalue, Hessian-vector products) by power iteration: the baseline for Lanczos.

    Stops when the Rayleigh quotient changes by less than tol relative to itself. Converges to
    the eigenvalue of largest *magnitude*, which is the top one at a minimizer (where the
    spectrum is dominated by positive eigenvalues) but need not be elsewhere.
    """
    with evaluating(model):
        hvp = _HessianVectorProduct(model, X, y, loss_fn, batch_size)
        generator = torch.Generator().manual_seed(seed)
        v = torch.randn(hvp.flat.numel(), generator=generator, dtype=torch.float64)
        v /= v.norm()
        eigenvalue = math.nan
        for _ in range(maxiter):
            hv = hvp(v).double().cpu()
            previous, eigenvalue = eigenvalue, float(v @ hv)
            v = hv / hv.norm()
            if abs(eigenvalue - previous) <= tol * abs(eigenvalue):
                break
    return eigenvalue, hvp.matvecs


def hessian_trace(
    model: nn.Module,
    X: Tensor,
    y: Tensor,
    samples: int = 100,
    seed: int = 0,
    loss_fn: LossFn | None = None,
    batch_size: int | None = None,
) -> tuple[float, float]:
    """Hutchinson's estimate of tr(H): the mean of v^T H v over Rademacher vectors v, and its
    standard error (sample std / sqrt(samples))."""
    if samples < 2:
        raise ValueError("samples must be >= 2 to report a standard error")
    with evaluating(model):
        hvp = _HessianVectorProduct(model, X, y, loss_fn, batch_size)
        generator = torch.Generator().manual_seed(seed)
        n = hvp.flat.numel()
        quads = []
        for _ in range(samples):
            v = torch.randint(0, 2, (n,), generator=generator).to(hvp.flat) * 2 - 1
            quads.append(float(v @ hvp(v)))
    quads = np.asarray(quads)
    return float(quads.mean()), float(quads.std(ddof=1) / math.sqrt(samples))
