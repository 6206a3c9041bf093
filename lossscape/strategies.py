"""How the engine holds its models: one model, or a population of seeds stacked into one.

The engine (lossscape.engine) trains through a strategy and never asks which it has. Both give
per-member results with a leading member dimension of size S (1 for a single model):

- SingleModel: the module's own parameters; its training forward may run through a wrapper
  (DistributedDataParallel, lossscape.parallel).
- StackedModels: every parameter and buffer is one tensor [S, ...] (torch.func.stack_module_state);
  the forward is vmap(functional_call) over the members, or lossscape.stacked_mlp's batched matmuls
  for models made only of Linear/ReLU/Flatten layers. Each member sees its own batch, so batches
  and data orders are [S, ...] too.

Buffers are BatchNorm's running statistics. Under vmap each member's BatchNorm normalizes its own
batch with its own slice of the stacked statistics, and a training forward updates that slice in
place (running_mean, running_var, num_batches_tracked), exactly as the member's own module would;
evaluation (module.eval()) reads them. A member's state is its weights and buffers, keyed and
ordered as its module's state_dict, in both strategies.

For models made only of Linear/ReLU/Flatten layers both also have a `plan`, with which the engine
takes the training gradients from lossscape.stacked_mlp instead of autograd (None otherwise).
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state, vmap

from . import stacked_mlp
from .losses import cross_entropy


def flat_views(flat: Tensor, like: list[Tensor]) -> list[Tensor]:
    """Consecutive views of the 1-D `flat`, shaped as the tensors `like`."""
    return [v.view(t.shape) for v, t in zip(flat.split([t.numel() for t in like]), like)]


def _flattened(tensors: list[Tensor]) -> tuple[Tensor, list[Tensor]]:
    """One 1-D buffer holding `tensors` in order, and its views shaped as them."""
    flat = torch.cat([t.detach().reshape(-1) for t in tensors])
    return flat, flat_views(flat, tensors)


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
        self.buffers = list(model.buffers())
        self.forward_module = wrap(model) if wrap else model
        self.plan = stacked_mlp.layers(model, input_shape)  # for written-out gradients

    def flatten_params(self) -> Tensor:
        """Make the parameters views of one flat buffer, which is returned; values unchanged."""
        flat, views = _flattened(self.params)
        for p, v in zip(self.params, views):
            p.data = v
        return flat

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
        return cross_entropy(logits, y).reshape(1)

    @staticmethod
    def tensor_norms(tensors: list[Tensor]) -> Tensor:
        """The norm of each tensor: [T]; one fused foreach norm, no concatenated copy."""
        return torch.stack(torch._foreach_norm(tensors))

    @staticmethod
    def flat_norms(flat: Tensor, views: list[Tensor]) -> Tensor:
        """The norm of `flat`, whose views are `views`, as tensor_norms of one tensor: [1]. One
        reduction instead of one per tensor (20-30 us less per step at mlp w256, one CPU thread)."""
        return torch.linalg.vector_norm(flat).view(1)

    @staticmethod
    def combine(norms: Tensor) -> Tensor:
        """Tensor norms [..., T] (tensor_norms, or a stack of them) -> squared norm of them all,
        per member: [..., 1]."""
        return norms.square().sum(-1, keepdim=True)

    def state(self, m: int) -> dict[str, Tensor]:
        """The member's weights and buffers as a CPU state dict."""
        return cpu_state(self.module)

    def load(self, m: int, state: dict[str, Tensor]) -> None:
        """Set the member's weights and buffers to `state` (what `state` returned), exactly."""
        self.module.load_state_dict(state)


# A stacked evaluation pass through vmap holds S x chunk examples' activations. In one chunk of
# 1,280 examples that made 8 members of densenet_small evaluate 3.1-3.3x slower than 8 single runs
# (memory traffic: elementwise ops and BatchNorm 3-10x slower per element, one CPU thread); passes
# of 128 examples per member took 0.29-0.38x that time, 256-512 0.34-0.48x, 32-64 0.42-0.43x, and
# for 3 members 256-512 were best. Hence a bound on member-examples per pass, not on examples.
EVAL_MEMBER_EXAMPLES = 1024


class StackedModels:
    """`models` (same architecture, one per member) as stacked parameters [S, ...]."""

    stacked = True

    def __init__(self, models: list[nn.Module], make_module: Callable[[], nn.Module], *, input_shape):
        params, buffers = stack_module_state(models)
        self.names = list(params)
        self.params = [params[k].detach().requires_grad_(True) for k in self.names]
        self.buffer_names = list(buffers)
        self.buffers = [buffers[k] for k in self.buffer_names]  # updated in place by training forwards
        self.state_keys = list(models[0].state_dict())
        # code only: functional_call supplies every tensor, so the module lives on the meta device
        self.module = make_module().to("meta")
        # no vmap needed (lossscape.stacked_mlp)
        self.plan = stacked_mlp.layers(self.module, input_shape)

    def flatten_params(self) -> Tensor:
        """Make the stacked parameters views of one flat buffer (each [S, ...] block contiguous, as
        before), which is returned; values unchanged."""
        flat, views = _flattened(self.params)
        self.params = [v.requires_grad_(True) for v in views]
        return flat

    @staticmethod
    def members(per_member: Tensor) -> Tensor:
        """Per-member data as this strategy consumes it: all of it, member dimension first."""
        return per_member

    def forward(self, x: Tensor) -> Tensor:
        """x: [S, B, ...] -> logits [S, B, classes]."""
        names, buffer_names = self.names, self.buffer_names
        if self.plan is not None:
            return stacked_mlp.forward(self.plan, self.params, x, self.module.frozen_stages)

        def one(p, b, xb):
            return functional_call(self.module, {**dict(zip(names, p)), **dict(zip(buffer_names, b))}, (xb,))
        return vmap(one)(self.params, self.buffers, x)

    def eval_forward(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """Every member evaluates the same chunk; through vmap, in passes of about
        EVAL_MEMBER_EXAMPLES member-examples (see there)."""
        S = len(self.params[0])
        y = y.expand(S, *y.shape)
        if self.plan is not None:
            return self.forward(x.expand(S, *x.shape)), y
        part = max(1, EVAL_MEMBER_EXAMPLES // S)
        return torch.cat([self.forward(xp.expand(S, *xp.shape)) for xp in x.split(part)], dim=1), y

    @staticmethod
    def losses(logits: Tensor, y: Tensor) -> Tensor:
        """Per-member mean cross-entropy: [S]."""
        S, B = y.shape
        return cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none").view(S, B).mean(1)

    @staticmethod
    def tensor_norms(tensors: list[Tensor]) -> Tensor:
        """Each member's norm of each stacked tensor: [T, S]; one reduction kernel per tensor."""
        return torch.stack([torch.linalg.vector_norm(t.flatten(1), dim=1) for t in tensors])

    @staticmethod
    def flat_norms(flat: Tensor, views: list[Tensor]) -> Tensor:
        """Each member's norm of each of the stacked `views` of `flat`: [T, S]. A member's values are
        spread over every view, so there is no single reduction of them all."""
        return StackedModels.tensor_norms(views)

    @staticmethod
    def combine(norms: Tensor) -> Tensor:
        """Tensor norms [..., T, S] (tensor_norms, or a stack of them) -> squared norm of them all,
        per member: [..., S]."""
        return norms.square().sum(-2)

    def state(self, m: int) -> dict[str, Tensor]:
        """Member m's weights and buffers as a CPU state dict, in its module's state_dict order."""
        stacked = dict(zip(self.names + self.buffer_names, self.params + self.buffers))
        return {k: stacked[k][m].detach().cpu().clone() for k in self.state_keys}

    @torch.no_grad()
    def load(self, m: int, state: dict[str, Tensor]) -> None:
        """Set member m's weights and buffers to `state` (what `state` returned), exactly; a key set
        that differs from the member's is an error, not a state silently left half loaded."""
        if set(state) != set(self.state_keys):
            raise ValueError(f"state: got keys {sorted(set(state) ^ set(self.state_keys))} that differ from the "
                             f"stacked member's; allowed: exactly {', '.join(self.state_keys)}")
        for name, t in zip(self.names + self.buffer_names, self.params + self.buffers):
            t[m].copy_(state[name])
