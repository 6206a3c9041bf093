"""A population's forward written out for models made only of Linear, ReLU and Flatten layers.

The engine's general stacked forward is vmap(functional_call) over the member dimension. For these
layers it computes exactly the same batched matmuls as the one below (each Linear one baddbmm
over members), but every call also swaps the module's tensors, flattens pytrees and applies
batching rules in Python. In small steps that overhead is most of the step: for the mlp at width
64, batch 16, 8 members, forward and backward took 1.0-3.3 ms here against 2.3-4.0 ms through
vmap on one CPU thread. Anything else (convolutions, pooling, BatchNorm) stays on vmap.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

SUPPORTED = (nn.Linear, nn.ReLU, nn.Flatten, nn.Sequential)


def supports(model: nn.Module) -> bool:
    """Whether every stage of a StagedNet is built from SUPPORTED modules only."""
    return all(isinstance(m, SUPPORTED) for stage in model.stages for m in stage.modules())


def forward(model: nn.Module, params: dict[str, Tensor], x: Tensor) -> Tensor:
    """StagedNet.forward for stacked members: params hold [S, ...] tensors keyed as named_parameters,
    x is [S, B, ...]; the first `model.frozen_stages` stages are cut from the graph as there."""
    for i, stage in enumerate(model.stages):
        x = _apply(stage, f"stages.{i}", params, x)
        if i + 1 == model.frozen_stages:
            x = x.detach()
    return x


def _apply(module: nn.Module, prefix: str, params: dict[str, Tensor], x: Tensor) -> Tensor:
    if isinstance(module, nn.Sequential):
        for name, child in module.named_children():
            x = _apply(child, f"{prefix}.{name}", params, x)
        return x
    if isinstance(module, nn.Linear):
        weight_t = params[f"{prefix}.weight"].transpose(1, 2)
        if module.bias is None:
            return torch.bmm(x, weight_t)
        return torch.baddbmm(params[f"{prefix}.bias"].unsqueeze(1), x, weight_t)
    if isinstance(module, nn.ReLU):
        return torch.relu(x)
    # nn.Flatten, shifted past the member dimension
    end = module.end_dim if module.end_dim < 0 else module.end_dim + 1
    return x.flatten(module.start_dim + 1, end)
