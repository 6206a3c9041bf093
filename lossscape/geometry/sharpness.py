"""Keskar et al. (2017) sharpness: the largest loss increase in a small box around a minimizer,
as a percentage of 1 + loss (claims GEO-6, LR-3)."""
from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import minimize
from torch import Tensor, nn

from ._functional import (
    LossFn,
    buffers,
    evaluating,
    flatten,
    loss_and_grad,
    loss_at,
    on_device,
    parameters,
    resolve_loss,
)

BOXES = ("keskar", "adaptive")


def keskar_sharpness(
    model: nn.Module,
    X: Tensor,
    y: Tensor,
    epsilon: float = 1e-3,
    subspace_dim: int | None = None,
    maxiter: int = 10,
    seed: int = 0,
    loss_fn: LossFn | None = None,
    batch_size: int | None = None,
    *,
    box: str = "keskar",
) -> float:
    """phi = (max_{z in C} f(x + A z) - f(x)) / (1 + f(x)) * 100, f the mean loss over X.

    Full space (subspace_dim=None): A = I and C = {z : |z_i| <= epsilon (|x_i| + 1)}.
    Subspace: A = torch.randn(n, subspace_dim, generator=torch.Generator().manual_seed(seed),
    dtype=<the model's dtype>) and C = {z : |z_i| <= epsilon (|(A^+ x)_i| + 1)}.
    box="adaptive" drops the + 1 (C = {z : |z_i| <= epsilon |x_i|}, ASAM's elementwise box; see
    `adaptive_sharpness`); the default is Keskar et al.'s box.
    The maximum is sought as Keskar et al. do: L-BFGS-B (scipy) on -f with these bounds, at most
    `maxiter` iterations, starting from z = 0. The value returned is the largest loss among all
    points L-BFGS-B evaluated, so phi >= 0 and phi is a lower bound of the true maximum. At an
    exact stationary point the gradient at z = 0 vanishes and the search cannot leave it (phi = 0);
    minimizers found by SGD are never exactly stationary.
    """
    if box not in BOXES:
        raise ValueError(f"box: got {box!r}; allowed: {', '.join(BOXES)}")
    loss_fn = resolve_loss(loss_fn)
    X, y = on_device(model, X, y)
    with evaluating(model):
        like, bufs = parameters(model), buffers(model)
        x = flatten(like)
        A, scale, radius = _search_space(x, epsilon, subspace_dim, seed, box)
        f0 = loss_at(model, like, bufs, X, y, loss_fn, batch_size)
        best = f0

        def negative_loss(u: np.ndarray) -> tuple[float, np.ndarray]:
            nonlocal best
            z = torch.from_numpy(u).to(x)
            z = z if scale is None else scale * z
            f, g = loss_and_grad(model, x + (z if A is None else A @ z), like, bufs, X, y, loss_fn, batch_size)
            best = max(best, f)
            g = g if A is None else A.T @ g
            g = g if scale is None else scale * g
            return -f, -g.double().cpu().numpy()

        minimize(negative_loss, np.zeros_like(radius), jac=True, method="L-BFGS-B",
                 bounds=np.stack([-radius, radius], axis=1), options=dict(maxiter=maxiter))
    return (best - f0) / (1.0 + f0) * 100.0


def _search_space(x: Tensor, epsilon: float, subspace_dim: int | None, seed: int, box: str):
    """(A, scale, radius) of the search around the flat weights x: the point searched at u is
    x + A (scale * u) with |u_i| <= radius_i (A None: the identity; scale None: 1)."""
    if subspace_dim is None:
        A, center = None, x
    else:
        generator = torch.Generator().manual_seed(seed)
        A = torch.randn(x.numel(), subspace_dim, generator=generator, dtype=x.dtype).to(x.device)
        center = torch.linalg.lstsq(A, x.unsqueeze(1)).solution.squeeze(1)  # A^+ x (A has full column rank)
    if box == "keskar":
        return A, None, epsilon * (center.double().abs().cpu().numpy() + 1.0)
    # L-BFGS-B is not invariant to rescaling its variables, so the adaptive search runs over
    # u = z / |x| in the cube |u_i| <= epsilon: a layer rescaling then changes neither the box
    # nor the search path, and the value is invariant, not only the true maximum.
    return A, center.abs(), np.full(center.numel(), float(epsilon))


def keskar_first_order(
    model: nn.Module,
    X: Tensor,
    y: Tensor,
    epsilon: float = 1e-3,
    loss_fn: LossFn | None = None,
    batch_size: int | None = None,
) -> dict[str, float]:
    """phi's first-order part and the full-batch gradient behind it (claims GEO-6, X-3).

    The linearization f(x) + g.z of the loss, maximized over Keskar et al.'s full-space box
    |z_i| <= epsilon (|x_i| + 1), rises by epsilon * sum_i |g_i| (|x_i| + 1); as a percentage of
    1 + f, as phi is. Where phi is mostly this term, phi measures the slope left at a point that is
    not a minimum rather than the curvature around one. Returns {"first_order": that percentage,
    "grad_norm": ||g||_2, "loss": f}, g the gradient of the mean loss over X.
    """
    loss_fn = resolve_loss(loss_fn)
    X, y = on_device(model, X, y)
    with evaluating(model):
        like, bufs = parameters(model), buffers(model)
        x = flatten(like)
        f, g = loss_and_grad(model, x, like, bufs, X, y, loss_fn, batch_size)
        g, x = g.double(), x.double()
        rise = float(epsilon * (g.abs() * (x.abs() + 1.0)).sum())
    return {"first_order": rise / (1.0 + f) * 100.0, "grad_norm": float(g.norm()), "loss": float(f)}
