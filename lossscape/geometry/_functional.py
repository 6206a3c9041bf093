"""Shared machinery for the geometry metrics.

Every metric reads a model's weights as a dict (or one flat vector in `named_parameters` order)
and evaluates the loss through `torch.func.functional_call` on tensors it owns, so the module's
own parameters, buffers, `.grad` and `requires_grad` flags are never touched. The only state a
metric changes is the train/eval flag, which `evaluating` restores.
"""
from __future__ import annotations

import math
import time
from contextlib import contextmanager
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import functional_call, vmap

from .. import stacked_mlp
from ..losses import cross_entropy
from ..models import StagedNet

LossFn = Callable[[Tensor, Tensor], Tensor]

# Examples per forward pass when a caller gives no batch_size: large enough to keep the matmuls
# efficient, small enough that activations of the models we study stay well under 1 GiB.
DEFAULT_BATCH = 4096
# Points of weight space per pass (surfaces, slices, interpolations), and the largest
# points x examples in one pass. With no points_per_pass given, the first points of a call are
# a probe: each candidate evaluates its own next points, timed per point, and the fastest does
# the rest, so the probe is real work, not overhead. On CPU the batched matmuls are compute-bound
# and big stacks fall out of cache: for the benchmark MLP one point per full-batch pass, 4 and
# 16 vmapped points were within 20% of each other, which one wins depending on the model and
# the machine; 64 was 30-60% slower. On CUDA larger passes amortize kernel launches; 2**16
# point-examples keep a 1024-wide layer's activations at 256 MiB.
PROBE_POINTS = {"cpu": (1, 4, 16), "cuda": (16, 64, 256)}
# A larger pass must beat the first candidate by this factor: single timings on a shared machine
# are noisy, and on CPU the first (one plain pass per point) is the baseline to beat.
PROBE_MARGIN = 0.9
# The first candidate is timed on this many consecutive passes and its fastest counts: the call's
# first pass finds the data and weights out of cache, and single timings on a shared machine
# scattered by +-30%. With one timed pass the CPU probe chose 16 points per pass for the benchmark
# surface (benchmarks/bench_speed.py), 1.15x the time of the plain loop, where one point per pass
# took 1.06x; the fastest single passes of the two ways were equal (9.65 vs 9.64 ms).
PROBE_FIRST_PASSES = 3
MAX_POINT_EXAMPLES = {"cpu": 2**12, "cuda": 2**16}


def resolve_loss(loss_fn: LossFn | None) -> LossFn:
    """loss_fn, or the default: the mean cross-entropy the engine trains with (lossscape.losses)."""
    return cross_entropy if loss_fn is None else loss_fn


@contextmanager
def evaluating(model: nn.Module) -> Iterator[None]:
    """Eval mode for the duration (no dropout, BatchNorm on running stats, so the loss is a
    deterministic function of the weights); every submodule gets its own flag back."""
    flags = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, training in flags:
            module.training = training


def parameters(model: nn.Module) -> dict[str, Tensor]:
    """All parameters, frozen ones included: the geometry is that of the full weight space."""
    return {name: p.detach() for name, p in model.named_parameters()}


def buffers(model: nn.Module) -> dict[str, Tensor]:
    return {name: b.detach() for name, b in model.named_buffers()}


def device_of(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def on_device(model: nn.Module, X: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    device = device_of(model)
    return X.to(device), y.to(device)


def flatten(tensors: dict[str, Tensor]) -> Tensor:
    return torch.cat([t.reshape(-1) for t in tensors.values()])


def unflatten(vec: Tensor, like: dict[str, Tensor]) -> dict[str, Tensor]:
    """Views of `vec` shaped like `like` (gradients flow back to `vec`)."""
    pieces = torch.split(vec, [t.numel() for t in like.values()])
    return {name: piece.view(t.shape) for (name, t), piece in zip(like.items(), pieces)}


def check_same_keys(direction: dict[str, Tensor], like: dict[str, Tensor], what: str) -> None:
    if list(direction) != list(like) or any(direction[k].shape != like[k].shape for k in like):
        raise ValueError(f"{what} must have the keys and shapes of named_parameters()")


def slices(n: int, size: int) -> Iterator[slice]:
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))


def weighted_chunk_losses(
    model: nn.Module,
    params: dict[str, Tensor],
    bufs: dict[str, Tensor],
    X: Tensor,
    y: Tensor,
    loss_fn: LossFn,
    batch_size: int | None,
) -> Iterator[Tensor]:
    """Each chunk's loss times its share of X; the chunks sum to the mean loss over X (this
    assumes loss_fn reduces by the mean, as cross-entropy does by default)."""
    n = len(X)
    for sl in slices(n, batch_size or DEFAULT_BATCH):
        logits = functional_call(model, (params, bufs), (X[sl],))
        yield loss_fn(logits, y[sl]) * ((sl.stop - sl.start) / n)


def loss_at(
    model: nn.Module,
    params: dict[str, Tensor],
    bufs: dict[str, Tensor],
    X: Tensor,
    y: Tensor,
    loss_fn: LossFn,
    batch_size: int | None,
) -> float:
    with torch.no_grad():
        return sum(float(c) for c in weighted_chunk_losses(model, params, bufs, X, y, loss_fn, batch_size))


def loss_and_grad(
    model: nn.Module,
    flat: Tensor,
    like: dict[str, Tensor],
    bufs: dict[str, Tensor],
    X: Tensor,
    y: Tensor,
    loss_fn: LossFn,
    batch_size: int | None,
) -> tuple[float, Tensor]:
    """Mean loss over X and its gradient at the flat weight vector `flat`, backpropagating each
    chunk as soon as it is computed so memory stays that of one chunk."""
    flat = flat.detach().requires_grad_(True)
    params = unflatten(flat, like)
    total, grad = 0.0, torch.zeros_like(flat)
    for loss in weighted_chunk_losses(model, params, bufs, X, y, loss_fn, batch_size):
        (g,) = torch.autograd.grad(loss, flat, materialize_grads=True)
        grad += g
        total += float(loss.detach())
    return total, grad


def losses_at_points(
    model: nn.Module,
    X: Tensor,
    y: Tensor,
    coeffs: np.ndarray,
    directions: Sequence[dict[str, Tensor]],
    buffer_directions: Sequence[dict[str, Tensor]] = (),
    *,
    loss_fn: LossFn,
    points_per_pass: int | None,
    batch_size: int | None,
    accuracy: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Mean loss and accuracy over X at the points theta + sum_k coeffs[p, k] * directions[k].

    theta is `model`'s parameters; `buffer_directions` (if given) move float buffers the same way
    (interpolating BatchNorm statistics), other buffers stay as they are. Many points can share
    one pass over the data: their weights are stacked and the forward is vmapped over the point
    dimension, so each layer becomes one batched matmul over points; loss_fn must therefore be
    vmappable (torch ops only, no .item()). points_per_pass=None lets a probe choose (see
    PROBE_POINTS). Accuracy is NaN unless y holds integer class labels and accuracy=True (its
    argmax is a few percent of an MLP's pass; surfaces skip it).
    """
    passes = _PointPasses(model, X, y, directions, buffer_directions, loss_fn, batch_size, accuracy)
    coeffs = torch.as_tensor(np.asarray(coeffs), dtype=passes.dtype)
    coeffs = coeffs.reshape(len(coeffs), -1).to(passes.device)
    with torch.no_grad():
        points, done = (points_per_pass, []) if points_per_pass is not None else _probe_points(passes, coeffs)
        start = sum(len(loss) for loss, _ in done)
        for pts in slices(len(coeffs) - start, points):
            done.append(passes(coeffs[start + pts.start:start + pts.stop]))
    return torch.cat([loss for loss, _ in done]).cpu().numpy(), torch.cat([acc for _, acc in done]).cpu().numpy()


class _PointPasses:
    """Loss and accuracy over X at a stack of points c ([P, K] coefficients of the directions),
    in one pass over X: the points' weights are stacked and the forward vmapped over them."""

    def __init__(self, model, X, y, directions, buffer_directions, loss_fn, batch_size, accuracy):
        self.model, self.X, self.y, self.loss_fn, self.batch_size = model, X, y, loss_fn, batch_size
        self.params, bufs = parameters(model), buffers(model)
        moving = list(buffer_directions[0]) if buffer_directions else []
        self.fixed_bufs = {k: v for k, v in bufs.items() if k not in moving}
        self.moving_bufs = {k: bufs[k] for k in moving}
        self.param_dirs = _as_matrices(self.params, directions)
        self.buffer_dirs = _as_matrices(self.moving_bufs, buffer_directions)
        self.classify = accuracy and not y.is_floating_point()
        self.device = device_of(model)
        self.dtype = next(iter(self.params.values())).dtype
        self.budget = MAX_POINT_EXAMPLES.get(self.device.type, MAX_POINT_EXAMPLES["cpu"])
        # any other module is one stage: written out only where it is itself a plain Sequential
        # or Linear, never a module of the user's whose forward is its own
        staged = model if isinstance(model, StagedNet) else StagedNet([model])
        self.plan = None if bufs else stacked_mlp.layers(staged, tuple(X.shape[1:]))
        self.scratch: dict[int, Tensor] = {}  # single_point's activations, kept across points

    def one_point(self, p, b, xb, yb):
        return self._scored(functional_call(self.model, {**p, **b, **self.fixed_bufs}, (xb,)), yb)

    def single_point(self, p, b, xb, yb):
        """one_point without vmap. A model of Linear and ReLU layers runs written out
        (stacked_mlp.forward_into), keeping its activations' memory from point to point."""
        if self.plan is None:
            return self.one_point(p, b, xb, yb)
        return self._scored(stacked_mlp.forward_into(self.plan, list(p.values()), xb, self.scratch), yb)

    def _scored(self, logits, yb):
        hits = (logits.argmax(-1) == yb).sum() if self.classify else logits.new_zeros(())
        return self.loss_fn(logits, yb), hits

    def __call__(self, c: Tensor) -> tuple[Tensor, Tensor]:
        p_stack, b_stack = _shifted(self.params, self.param_dirs, c), _shifted(self.moving_bufs, self.buffer_dirs, c)
        n = len(self.X)
        loss = torch.zeros(len(c), dtype=torch.float64, device=self.device)
        correct = torch.zeros_like(loss)
        for sl in slices(n, self.batch_size or max(1, self.budget // len(c))):
            xb, yb = self.X[sl], self.y[sl]
            if len(c) == 1:  # one point needs no vmap: its pass is the plain forward
                chunk = self.single_point({k: v[0] for k, v in p_stack.items()},
                                          {k: v[0] for k, v in b_stack.items()}, xb, yb)
                chunk_loss, hits = (t.reshape(1) for t in chunk)
            else:
                chunk_loss, hits = vmap(self.one_point, in_dims=(0, 0, None, None))(p_stack, b_stack, xb, yb)
            loss += chunk_loss.double() * ((sl.stop - sl.start) / n)
            correct += hits.double()
        return loss, (correct / n if self.classify else torch.full_like(loss, float("nan")))


def _as_matrices(base: dict[str, Tensor], dirs: Sequence[dict[str, Tensor]]) -> dict[str, Tensor]:
    return {k: torch.stack([d[k].reshape(-1) for d in dirs]) for k in base}  # [K, numel]


def _shifted(base: dict[str, Tensor], dirs: dict[str, Tensor], c: Tensor) -> dict[str, Tensor]:
    # [P, K] @ [K, numel]: every point's weights in one matmul per tensor.
    return {k: v + (c @ dirs[k]).view(len(c), *v.shape) for k, v in base.items()}


def _probe_points(passes: _PointPasses, coeffs: Tensor) -> tuple[int, list[tuple[Tensor, Tensor]]]:
    """The points per pass for the rest of a call, and the results of the first points: each
    PROBE_POINTS candidate times its own next points (the first on PROBE_FIRST_PASSES passes, its
    fastest counting), and must beat the first by PROBE_MARGIN; a candidate no faster than the
    best before it ends the probe."""
    seconds_per_point, done, start = {}, [], 0
    candidates = PROBE_POINTS.get(passes.device.type, PROBE_POINTS["cpu"])
    for candidate in [candidates[0]] * PROBE_FIRST_PASSES + list(candidates[1:]):
        c = coeffs[start:start + candidate]
        if len(c) < candidate:
            break
        t0 = _synced_clock(passes.device)
        done.append(passes(c))
        seconds = (_synced_clock(passes.device) - t0) / candidate
        start += candidate
        if candidate != candidates[0] and seconds >= min(seconds_per_point.values()):
            break  # larger passes than one that lost stack more: not tried (they cost 1.25x per point here)
        seconds_per_point[candidate] = min(seconds, seconds_per_point.get(candidate, math.inf))
    points = min(seconds_per_point, key=seconds_per_point.get, default=1)
    first = next(iter(seconds_per_point), 1)
    if points != first and not seconds_per_point[points] < PROBE_MARGIN * seconds_per_point[first]:
        points = first
    return points, done


def _synced_clock(device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()
