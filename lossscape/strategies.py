"""How the engine holds its models: one model, or a population of seeds stacked into one.

The engine (lossscape.engine) trains through a strategy and never asks which it has. Both give
per-member results with a leading member dimension of size S (1 for a single model):

- SingleModel: the module's own parameters; its training forward may run through a wrapper
  (DistributedDataParallel, lossscape.parallel).
- StackedModels: every parameter is one tensor [S, ...] (torch.func.stack_module_state); the
  forward is vmap(functional_call) over the members, or lossscape.stacked_mlp's batched matmuls
  for models made only of Linear/ReLU/Flatten layers. Each member sees its own batch, so batches
  and data orders are [S, ...] too.

For models made only of Linear/ReLU/Flatten layers both also have a `plan`, with which the engine
takes the training gradients from lossscape.stacked_mlp instead of autograd (None otherwise).
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state, vmap

from . import stacked_mlp


def cpu_state(model: nn.Module) -> dict[str, Tensor]:
    """The module's weights and buffers as a CPU state dict."""
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


class SingleModel:
    """One model; `wrap` (e.g. DistributedDataParallel) runs its training forward."""

    stacked = False

    def __init__(self, model: nn.Module, wrap: Callable[[nn.Module], nn.Module] | None = None, *,
                 input_shape):
        self.module = model
        self.names = [k for k, _ in model.named_parameters()]
        self.params = list(model.parameters())
        self.forward_module = wrap(model) if wrap else model
        self.plan = stacked_mlp.layers(model, input_shape)  # for written-out gradients

    @staticmethod
    def members(per_member: Tensor) -> Tensor:
        """Per-member data (a data order [S, n]) as this strategy consumes it: the one member's."""
        return per_member[0]

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_module(x)

    def eval_forward(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """(logits, labels) of an evaluation chunk; the plain module, not a DDP wrapper: evaluation
        is local and needs no gradient sync."""
        return self.module(x), y

    @staticmethod
    def losses(logits: Tensor, y: Tensor) -> Tensor:
        """Per-member mean cross-entropy: [1]."""
        return F.cross_entropy(logits, y).reshape(1)

    @staticmethod
    def sq_norms(tensors: list[Tensor]) -> Tensor:
        """Squared norm of a list of tensors, as [1]: one fused foreach norm, no concatenated copy."""
        return torch.stack(torch._foreach_norm(tensors)).square().sum().reshape(1)

    def state(self, m: int) -> dict[str, Tensor]:
        """The member's weights and buffers as a CPU state dict."""
        return cpu_state(self.module)


class StackedModels:
    """`models` (same architecture, one per member) as stacked parameters [S, ...]."""

    stacked = True

    def __init__(self, models: list[nn.Module], make_module: Callable[[], nn.Module], *, input_shape):
        params, _ = stack_module_state(models)
        self.names = list(params)
        self.params = [params[k].detach().requires_grad_(True) for k in self.names]
        # code only: functional_call supplies every tensor, so the module lives on the meta device
        self.module = make_module().to("meta")
        # no vmap needed (lossscape.stacked_mlp)
        self.plan = stacked_mlp.layers(self.module, input_shape)

    @staticmethod
    def members(per_member: Tensor) -> Tensor:
        """Per-member data as this strategy consumes it: all of it, member dimension first."""
        return per_member

    def forward(self, x: Tensor) -> Tensor:
        """x: [S, B, ...] -> logits [S, B, classes]."""
        names = self.names
        if self.plan is not None:
            return stacked_mlp.forward(self.plan, self.params, x, self.module.frozen_stages)

        def one(p, xb):
            return functional_call(self.module, dict(zip(names, p)), (xb,))
        return vmap(one)(self.params, x)

    def eval_forward(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """Every member evaluates the same chunk."""
        S = len(self.params[0])
        x, y = x.expand(S, *x.shape), y.expand(S, *y.shape)
        return self.forward(x), y

    @staticmethod
    def losses(logits: Tensor, y: Tensor) -> Tensor:
        """Per-member mean cross-entropy: [S]."""
        S, B = y.shape
        return F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none").view(S, B).mean(1)

    @staticmethod
    def sq_norms(tensors: list[Tensor]) -> Tensor:
        """Squared norm per member of stacked tensors: [S]; one reduction kernel per tensor."""
        return torch.stack([torch.linalg.vector_norm(t.flatten(1), dim=1) for t in tensors]).square().sum(0)

    def state(self, m: int) -> dict[str, Tensor]:
        """Member m's weights as a CPU state dict (stacked models hold no buffers: no BatchNorm)."""
        return {k: v[m].detach().cpu().clone() for k, v in zip(self.names, self.params)}
