"""How far training moved the weights (claims GEO-1, GEO-2, LR-4).

Distances are taken over the float *parameters* of two state dicts. A state dict does not say
which entries are buffers, so the BatchNorm-style running statistics are recognised by name
(`running_mean`, `running_var`, `num_batches_tracked`) and skipped, as are non-float entries:
they are not weights SGD moves, and counting them would make BatchNorm models look further
from init than models without it.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

_BUFFER_NAMES = ("running_mean", "running_var", "num_batches_tracked")


def _is_parameter(name: str, tensor: Tensor) -> bool:
    return tensor.is_floating_point() and name.rpartition(".")[2] not in _BUFFER_NAMES


def layer_distances(initial_state: dict[str, Tensor], final_state: dict[str, Tensor]) -> dict[str, float]:
    """||final - initial|| for every parameter tensor, keyed as in the state dicts."""
    if initial_state.keys() != final_state.keys():
        raise ValueError("the two state dicts hold different tensors")
    return {
        name: float(torch.linalg.vector_norm(final_state[name].double() - t0.double()))
        for name, t0 in initial_state.items()
        if _is_parameter(name, t0)
    }


def distance_from_init(initial_state: dict[str, Tensor], final_state: dict[str, Tensor]) -> float:
    """Euclidean distance between the two weight vectors (all parameters concatenated)."""
    return math.sqrt(sum(d * d for d in layer_distances(initial_state, final_state).values()))


def group_by_layer(distances: dict[str, float]) -> dict[str, float]:
    """Combine per-tensor distances into per-module ones ("fc1.weight", "fc1.bias" -> "fc1"),
    as the root of the summed squares, i.e. the distance over that module's parameters."""
    squares: dict[str, float] = {}
    for name, d in distances.items():
        layer = name.rpartition(".")[0] or name
        squares[layer] = squares.get(layer, 0.0) + d * d
    return {layer: math.sqrt(s) for layer, s in squares.items()}
