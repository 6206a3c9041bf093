"""Random-direction loss plots with filter normalization (Li et al. 2018; claim GEO-7).

The reference plotter (tomgoldstein/loss-landscape, plot_surface.py) copies each grid point's
weights into the network and makes a full pass over a DataLoader, one point at a time. Here many
points share one pass over X held in memory: `_functional.losses_at_points` stacks their weights
and vmaps the forward over them. benchmarks/bench_geometry.py separates the two on CPU: most of
the speedup over the reference comes from dropping the per-example DataLoader; against a loop of
full-batch passes vmapping is at par (same matmuls, compute-bound), so on CPU the probe in
`losses_at_points` often settles on one point per pass; vmapping pays off on GPUs, where one
point's pass is too small to fill the device. One point of an MLP (Linear, ReLU, Flatten) runs
written out into activations kept across points (`stacked_mlp.forward_into`): a fresh
activation of a few MB per point was memory faulted in again, 3 of 12 ms per point here, which
put the surface at 0.89-1.44x the plain loop's time; kept, 0.87-0.92x (bench_speed.py).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from ._functional import (
    LossFn,
    check_same_keys,
    evaluating,
    losses_at_points,
    on_device,
    parameters,
    resolve_loss,
)


def filter_normalized_direction(
    model: nn.Module, seed: int = 0, ignore: str | None = "biasbn"
) -> dict[str, Tensor]:
    """A Gaussian direction (keys as `named_parameters`) rescaled filter by filter.

    For a tensor with dim > 1, each slice along dim 0 (a conv filter, a linear layer's neuron)
    becomes d * ||w|| / (||d|| + 1e-10) with w the matching weight slice. Tensors with dim <= 1
    (biases, BatchNorm affine) are zeroed under ignore="biasbn"; with ignore=None they are set to
    a copy of w itself, as Li et al.'s `normalize_directions_for_weights` does (so their norm is
    ||w||). A draw is made for every tensor either way, so `ignore` does not change the
    directions of the other tensors.
    """
    if ignore not in ("biasbn", None):
        raise ValueError(f"ignore must be 'biasbn' or None, not {ignore!r}")
    generator = torch.Generator().manual_seed(seed)
    direction = {}
    for name, w in parameters(model).items():
        d = torch.randn(w.shape, generator=generator, dtype=w.dtype).to(w.device)
        if w.dim() <= 1:
            d = torch.zeros_like(w) if ignore == "biasbn" else w.clone()
        else:
            scale = w.flatten(1).norm(dim=1) / (d.flatten(1).norm(dim=1) + 1e-10)
            d = d * scale.view(-1, *([1] * (w.dim() - 1)))
        direction[name] = d
    return direction


def _losses_along(model, X, y, coeffs, directions, loss_fn, points_per_pass, batch_size):
    like = parameters(model)
    for d in directions:
        check_same_keys(d, like, "a direction")
    X, y = on_device(model, X, y)
    with evaluating(model):
        loss, _ = losses_at_points(
            model,
            X,
            y,
            coeffs,
            directions,
            loss_fn=resolve_loss(loss_fn),
            points_per_pass=points_per_pass,
            batch_size=batch_size,
            accuracy=False,
        )
    return loss


def loss_surface_2d(
    model: nn.Module,
    X: Tensor,
    y: Tensor,
    dx: dict[str, Tensor],
    dy: dict[str, Tensor],
    xs: Sequence[float],
    ys: Sequence[float],
    loss_fn: LossFn | None = None,
    points_per_pass: int | None = None,
    batch_size: int | None = None,
) -> np.ndarray:
    """Mean loss over X at theta + x dx + y dy; Z[i, j] is the loss at (xs[j], ys[i]), so Z has
    shape (len(ys), len(xs)) and plots directly with `plt.contour(xs, ys, Z)`."""
    xs, ys = np.asarray(xs, dtype=float), np.asarray(ys, dtype=float)
    grid_x, grid_y = np.meshgrid(xs, ys)  # both (len(ys), len(xs)), row i is ys[i]
    coeffs = np.stack([grid_x.ravel(), grid_y.ravel()], axis=1)
    loss = _losses_along(model, X, y, coeffs, [dx, dy], loss_fn, points_per_pass, batch_size)
    return loss.reshape(len(ys), len(xs))


def loss_slice_1d(
    model: nn.Module,
    X: Tensor,
    y: Tensor,
    d: dict[str, Tensor],
    ts: Sequence[float],
    loss_fn: LossFn | None = None,
    points_per_pass: int | None = None,
    batch_size: int | None = None,
) -> np.ndarray:
    """Mean loss over X at theta + t d for each t in ts."""
    coeffs = np.asarray(ts, dtype=float)
    return _losses_along(model, X, y, coeffs, [d], loss_fn, points_per_pass, batch_size)
