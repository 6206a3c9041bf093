"""Per-example gradients and the size of a minibatch SGD update (claims GEO-3, GEO-4)."""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap

from ._functional import LossFn, buffers, evaluating, on_device, parameters, resolve_loss, slices

# Examples per vmapped chunk: the output alone is chunk x n_params floats.
_PER_EXAMPLE_CHUNK = 256


def per_example_grads(
    model: nn.Module,
    X: Tensor,
    y: Tensor,
    loss_fn: LossFn | None = None,
    batch_size: int | None = None,
) -> Tensor:
    """[n, n_params] gradients of each example's loss, columns in `named_parameters` order.

    vmap(grad(...)) over `functional_call`, in eval mode (a BatchNorm batch of one example
    would be meaningless), `batch_size` examples at a time. Memory: n * n_params floats.
    """
    loss_fn = resolve_loss(loss_fn)
    X, y = on_device(model, X, y)
    with evaluating(model):
        params, bufs = parameters(model), buffers(model)

        def example_loss(p, x, target):
            return loss_fn(functional_call(model, (p, bufs), (x.unsqueeze(0),)), target.unsqueeze(0))

        grads_of = vmap(grad(example_loss), in_dims=(None, 0, 0))
        rows = []
        for sl in slices(len(X), batch_size or _PER_EXAMPLE_CHUNK):
            g = grads_of(params, X[sl], y[sl])
            rows.append(torch.cat([g[k].reshape(sl.stop - sl.start, -1) for k in params], dim=1))
    return torch.cat(rows)


def mean_batch_update_norm(per_example_grads: Tensor | np.ndarray, batch_size: int, lr: float = 1.0) -> float:
    """Mean over consecutive batches (rows [0:b], [b:2b], ...) of ||lr * mean of the batch's rows||.

    A ragged last batch is dropped (as a drop_last loader does), so every batch has exactly b
    rows and merging batches pairwise compares like with like (claim GEO-4). Computed in float64.
    """
    g = torch.as_tensor(per_example_grads).double()
    if not 1 <= batch_size <= len(g):
        raise ValueError(f"batch_size must be in [1, {len(g)}], got {batch_size}")
    n_batches = len(g) // batch_size
    means = g[: n_batches * batch_size].reshape(n_batches, batch_size, -1).mean(dim=1)
    return float(abs(lr) * torch.linalg.vector_norm(means, dim=1).mean())
