"""Gradient noise: the noise scale B_simple (claim X-1) and the minibatch gradient's standard
error against the batch size (claim LR-7).

Minibatches are drawn with replacement unless stated otherwise: then a batch gradient is the
mean of m i.i.d. per-example gradients, so E|G_m - G|^2 = tr(Sigma) / m exactly, with Sigma the
covariance of the per-example gradients over X (population covariance, divisor n). Without
replacement a finite-population factor (n - m) / (n - 1) enters.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from ._functional import LossFn, buffers, evaluating, flatten, loss_and_grad, on_device, parameters, resolve_loss


class _BatchGradients:
    """Gradients of the mean loss over random minibatches of X (or all of X)."""

    def __init__(self, model: nn.Module, X: Tensor, y: Tensor, loss_fn: LossFn | None, seed: int):
        self.model, self.loss_fn = model, resolve_loss(loss_fn)
        self.X, self.y = on_device(model, X, y)
        self.params, self.bufs = parameters(model), buffers(model)
        self.flat = flatten(self.params)
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, m: int | None = None, replace: bool = True) -> Tensor:
        n = len(self.X)
        if m is None:
            idx = slice(None)
        elif replace:
            idx = torch.randint(n, (m,), generator=self.generator)
        else:
            idx = torch.randperm(n, generator=self.generator)[:m]
        X, y = self.X[idx], self.y[idx]
        # One chunk per batch: a minibatch gradient is one backward, as in training.
        _, g = loss_and_grad(self.model, self.flat, self.params, self.bufs, X, y, self.loss_fn, None)
        return g.double()


def gradient_noise_scale(
    model: nn.Module,
    X: Tensor,
    y: Tensor,
    b_small: int,
    b_big: int,
    seed: int = 0,
    loss_fn: LossFn | None = None,
    n_batches: int = 64,
) -> float:
    """B_simple = tr(Sigma) / |G|^2 by McCandlish et al. (2018, Appendix A)'s unbiased two-batch
    estimator, averaged over `n_batches` batches of each size (drawn with replacement):

        |G|^2     ~ (b_big |G_big|^2 - b_small |G_small|^2) / (b_big - b_small)
        tr(Sigma) ~ (|G_small|^2 - |G_big|^2) / (1 / b_small - 1 / b_big)

    with |G_b|^2 the mean squared norm of size-b batch gradients. As McCandlish et al. advise,
    numerator and denominator are averaged separately before taking the ratio.
    """
    if not 0 < b_small < b_big:
        raise ValueError("need 0 < b_small < b_big")
    with evaluating(model):
        batch_grad = _BatchGradients(model, X, y, loss_fn, seed)
        small = np.mean([float(batch_grad(b_small).square().sum()) for _ in range(n_batches)])
        big = np.mean([float(batch_grad(b_big).square().sum()) for _ in range(n_batches)])
    grad_sq = (b_big * big - b_small * small) / (b_big - b_small)
    trace = (small - big) / (1.0 / b_small - 1.0 / b_big)
    return float(trace / grad_sq)


def gradient_standard_error(
    model: nn.Module,
    X: Tensor,
    y: Tensor,
    batch_sizes: list[int],
    n_batches: int = 32,
    seed: int = 0,
    loss_fn: LossFn | None = None,
    replace: bool = True,
) -> dict[str, np.ndarray | float]:
    """Root-mean-square distance of minibatch gradients from the full-X gradient, per batch size.

    Returns dict(batch_sizes=..., std_error=..., slope=...), slope being the least-squares slope
    of log std_error against log batch size: -0.5 is Goodfellow's O(1/sqrt(m)) (claim LR-7).
    """
    with evaluating(model):
        batch_grad = _BatchGradients(model, X, y, loss_fn, seed)
        full = batch_grad()
        std_error = np.array([
            np.sqrt(np.mean([float((batch_grad(m, replace) - full).square().sum()) for _ in range(n_batches)]))
            for m in batch_sizes
        ])
    sizes = np.asarray(batch_sizes, dtype=float)
    slope = float(np.polyfit(np.log(sizes), np.log(std_error), 1)[0])
    return {"batch_sizes": sizes, "std_error": std_error, "slope": slope}
