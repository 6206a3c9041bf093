"""1-D linear interpolation between two minimizers (claim GEO-5, after Goodfellow et al. 2015
and Keskar et al. 2017, Fig. 3)."""
from __future__ import annotations

from typing import Sequence

import numpy as np
from torch import Tensor, nn

from ._functional import (
    LossFn,
    buffers,
    check_same_keys,
    evaluating,
    losses_at_points,
    on_device,
    parameters,
    resolve_loss,
)


def interpolation_curves(
    model_a: nn.Module,
    model_b: nn.Module,
    X: Tensor,
    y: Tensor,
    alphas: Sequence[float],
    loss_fn: LossFn | None = None,
    batch_size: int | None = None,
    points_per_pass: int | None = None,
) -> dict[str, np.ndarray]:
    """Loss and accuracy over X at theta(a) = (1 - a) theta_a + a theta_b for each a in alphas.

    Float buffers (BatchNorm running statistics) are interpolated the same way, so a BatchNorm
    network at a = 0.5 is the network with averaged weights *and* averaged statistics; integer
    buffers are model_a's. Evaluated in eval mode. Returns dict(loss=..., acc=...), arrays of
    len(alphas); acc is NaN when y is not integer class labels.
    """
    pa, pb = parameters(model_a), parameters(model_b)
    check_same_keys(pb, pa, "model_b's parameters")
    ba, bb = buffers(model_a), buffers(model_b)
    float_bufs = [k for k, v in ba.items() if v.is_floating_point()]
    X, y = on_device(model_a, X, y)
    with evaluating(model_a):
        loss, acc = losses_at_points(
            model_a,
            X,
            y,
            np.asarray(alphas, dtype=float),
            [{k: pb[k].to(v) - v for k, v in pa.items()}],
            [{k: bb[k].to(ba[k]) - ba[k] for k in float_bufs}] if float_bufs else (),
            loss_fn=resolve_loss(loss_fn),
            points_per_pass=points_per_pass,
            batch_size=batch_size,
        )
    return {"loss": loss, "acc": acc}


def linear_interpolation(
    model_a: nn.Module,
    model_b: nn.Module,
    X: Tensor,
    y: Tensor,
    alphas: Sequence[float],
    loss_fn: LossFn | None = None,
    batch_size: int | None = None,
) -> np.ndarray:
    """The loss curve of `interpolation_curves`: one mean loss per alpha."""
    return interpolation_curves(model_a, model_b, X, y, alphas, loss_fn, batch_size)["loss"]
