"""Models made only of Linear, ReLU and Flatten layers, written out: the forward of stacked
members, and the gradients of the engine's training loss of one model or of stacked members
computed without autograd.

Forward. The engine's general stacked forward is vmap(functional_call) over the member dimension.
For these layers it computes exactly the same batched matmuls as `forward` (each Linear one
baddbmm over members), but every call also swaps the module's tensors, flattens pytrees and applies
batching rules in Python. In small steps that overhead is most of the step: for the mlp at width
64, batch 16, 8 members, forward and backward took 1.0-3.3 ms here against 2.3-4.0 ms through
vmap on one CPU thread.

Gradients. `gradients` runs the training forward and backward as the ATen calls that autograd
makes for them, in the same order and on operands of the same layouts: log_softmax and nll_loss
(the engine's mean cross-entropy per member, summed over members), relu's threshold_backward,
and for each Linear the mm (bmm) products of derivatives.yaml's addmm (baddbmm) formulas, with
the bias gradient summed over the batch as autograd's sum_to does. Two choices depart from
F.cross_entropy and nn.Linear's autograd for speed, and change only rounding: the log-softmax is
lossscape.losses', over the classes as dim 0 of the transposed logits (2-3x faster on CPU), and
a stacked weight's gradient is taken untransposed (`_weight_grad`). A single model's gradients are
bit-identical to autograd's through the module with that log-softmax, and equal F.cross_entropy's
to rounding (tests/test_stacked_mlp.py); a single run's plain SGD steps compute what
torch.optim.SGD computes from them (lossscape.engine's _flat_step); stacked members' are the same
sums, in an order that may differ in the last bit. No graph is recorded and no autograd engine
runs: a step of a single mlp took 0.47 ms against 0.84 ms at width 256, batch 64, and 0.06 ms
against 0.21 ms at width 64, batch 16 (one CPU thread, fastest of 15 alternating blocks).

Anything else (convolutions, pooling, BatchNorm, a Linear on inputs of more than one feature
dimension, DDP's gradient hooks) stays on autograd and vmap.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from . import losses

SUPPORTED = (nn.Linear, nn.ReLU, nn.Flatten, nn.Sequential)
_MEAN, _NONE, _IGNORE = 1, 0, -100  # nll_loss's reduction codes and F.cross_entropy's ignore_index
# ATen ops with no torch.* binding, as overloads: called through the packet (torch.ops.aten.x) each
# resolves its overload again, 1-2 us per call in steps of a few hundred
_nll_loss_backward = torch.ops.aten.nll_loss_backward.default
_threshold_backward = torch.ops.aten.threshold_backward.grad_input


@dataclass(frozen=True)
class Layer:
    """One Linear, ReLU or Flatten of a model; a Linear's parameters by their position in the
    model's parameter list, a Flatten's dims counted over one member's [B, ...] tensor."""
    kind: str  # "linear" | "relu" | "flatten"
    stage: int
    weight: int = -1
    bias: int | None = None
    start_dim: int = 0
    end_dim: int = 0


def layers(model: nn.Module, input_shape) -> list[Layer] | None:
    """The layers of a StagedNet in forward order (less a Flatten of one dimension, which does
    nothing), or None where it is not written out here: a
    layer other than SUPPORTED (subclasses and hooked layers included), or a Linear on inputs that
    are not [B, features]."""
    if not all(_plain(m) for stage in model.stages for m in stage.modules()):
        return None
    names = [k for k, _ in model.named_parameters()]
    out, dims = [], 1 + len(input_shape)
    for i, stage in enumerate(model.stages):
        for name, m in stage.named_modules(prefix=f"stages.{i}"):
            if isinstance(m, nn.Linear):
                if dims != 2:
                    return None
                bias = names.index(f"{name}.bias") if m.bias is not None else None
                out.append(Layer("linear", i, names.index(f"{name}.weight"), bias))
            elif isinstance(m, nn.ReLU):
                out.append(Layer("relu", i))
            elif isinstance(m, nn.Flatten):
                start, end = m.start_dim % dims, m.end_dim % dims
                if start < end:  # flattening one dimension is the identity: no op to run in every step
                    out.append(Layer("flatten", i, start_dim=start, end_dim=end))
                dims -= end - start
    return out


def _plain(module: nn.Module) -> bool:
    """One of SUPPORTED itself, not a subclass (whose forward may differ), with no forward or
    backward hooks (which may change what autograd's forward or backward gives)."""
    hooks = (module._forward_hooks, module._forward_pre_hooks, module._backward_hooks, module._backward_pre_hooks)
    return type(module) in SUPPORTED and not any(hooks)


_LINEAR, _RELU, _RELU_IN_PLACE, _FLATTEN = range(4)  # what `_steps` makes of a layer


def forward(plan: list[Layer], params: list[Tensor], x: Tensor, frozen: int = 0) -> Tensor:
    """StagedNet.forward for stacked members: params hold [S, ...] tensors in the model's parameter
    order, x is [S, B, ...]; the first `frozen` stages are cut from the graph as there."""
    for k, (layer, step) in enumerate(zip(plan, _steps(plan, params, True))):
        x = _run(step, x, True)
        if layer.stage < frozen and (k + 1 == len(plan) or plan[k + 1].stage >= frozen):  # the last frozen layer
            x = x.detach()
    return x


def forward_into(plan: list[Layer], params: list[Tensor], x: Tensor, scratch: dict[int, Tensor]) -> Tensor:
    """One model's forward, nn.Linear's addmm and an in-place ReLU, each Linear's output written
    into scratch[k]: tensors the caller keeps across calls on inputs of one shape, so that passes
    at many weights (loss surfaces) allocate no activations. On CPU an activation of a few MB is
    memory that the allocator handed back to the system after the last pass and faults in again:
    3 of 12 ms per point of a 40-256-256-10 MLP over 4,000 examples, one thread. The values are
    the module's forward's, bit for bit (tests/test_stacked_mlp.py); the logits returned are
    scratch's own, overwritten by the next call. No autograd: call under no_grad."""
    for k, step in enumerate(_steps(plan, params, False)):
        kind, wt, b = step
        if kind != _LINEAR:
            x = _run(step, x, False)
            continue
        buf = scratch.get(k)
        if buf is None or buf.shape != (x.shape[0], wt.shape[1]) or buf.dtype != x.dtype or buf.device != x.device:
            buf = scratch[k] = x.new_empty(x.shape[0], wt.shape[1])
        x = torch.mm(x, wt, out=buf) if b is None else torch.addmm(b, x, wt, out=buf)
    return x


def gradients(plan: list[Layer], params: list[Tensor], x: Tensor, y: Tensor, first_stage: int,
              stacked: bool, out: list[Tensor] | None = None) -> dict[int, Tensor]:
    """Parameter position -> gradient of the training loss, for the parameters of stages
    first_stage onwards (the earlier ones are frozen): as autograd computes it through the
    transposed log-softmax of `_logits_grad`, bit for bit.

    The loss is the mean cross-entropy over the batch: x [B, ...], y [B] for one model; for
    stacked members (x [S, B, ...], y [S, B]) each member's mean, summed over the members.
    out: tensors shaped as params to write the gradients into; fresh tensors where None. A caller
    that steps many times prepares a `Gradients` once instead.
    """
    return Gradients(plan, params, stacked, out)(x, y, first_stage)


class Gradients:
    """`gradients` of `params` prepared once for an engine that steps many times: each layer's
    operands (the transposed weight and bias as its addmm or baddbmm takes them, views of the
    parameters that follow their in-place updates), the views of `out` its gradients go to (the
    engine's flat gradient buffer, so that its SGD update is one fused multiply-add), and the
    layers each frozen prefix leaves to differentiate. Reading the plan and making those views in
    every step took 9-31 us of a 200-260 us step of 8 stacked mlp members at width 64, batch 16,
    5-30 us of a single member's 70-100 us and 20-140 us of its 450-590 us at width 256, batch 64
    (fastest of 9 blocks, 3 alternating runs, one CPU thread)."""

    def __init__(self, plan: list[Layer], params: list[Tensor], stacked: bool, out: list[Tensor] | None = None):
        self.plan, self.params, self.stacked, self.out = plan, params, stacked, out
        self.forward_steps = _steps(plan, params, stacked)
        self.backward_steps: dict[int, list[tuple]] = {}  # by first_stage
        self.constants: dict[torch.Size, tuple[Tensor, Tensor]] = {}  # by the labels' shape

    def __call__(self, x: Tensor, y: Tensor, first_stage: int) -> dict[int, Tensor]:
        if torch.is_grad_enabled():  # no graph; a caller stepping many times disables grad once (3 us a step)
            with torch.no_grad():
                return self(x, y, first_stage)
        inputs = []  # each layer's input; a ReLU's output replaces it (relu's backward reads it)
        stacked = self.stacked
        for step in self.forward_steps:
            inputs.append(x)
            x = _run(step, x, stacked)
            if step[0] in (_RELU, _RELU_IN_PLACE):
                inputs[-1] = x
        g = self._logits_grad(x, y)
        grads = {}
        for k, kind, weight, w_out, bias, b_out, lowest in self._backward_steps(first_stage):
            a = inputs[k]
            if kind == _RELU:  # g is this step's own tensor: overwritten in place
                g = _threshold_backward(g, a, 0, grad_input=g)
            elif kind == _FLATTEN:
                g = g.reshape(a.shape)
            else:
                grads[weight] = _weight_grad(g, a, stacked, w_out)
                if bias is not None:  # autograd's sum_to of the broadcast bias
                    grads[bias] = torch.sum(g, [-2], out=torch.empty_like(self.params[bias]) if b_out is None else b_out)
                if not lowest:
                    w = self.params[weight]
                    g = g.bmm(w) if stacked else _input_grad(g, w, a)
        return grads

    def _backward_steps(self, first_stage: int) -> list[tuple]:
        """The layers to differentiate, last to first, down to the lowest Linear of stages
        first_stage onwards: (index, kind (a ReLU's _RELU), weight position, its out view, bias
        position, its out view, whether it is that lowest Linear); made once per first_stage."""
        steps = self.backward_steps.get(first_stage)
        if steps is None:
            plan, out = self.plan, self.out
            lowest = next(k for k, layer in enumerate(plan) if layer.kind == "linear" and layer.stage >= first_stage)
            kinds = {"linear": _LINEAR, "relu": _RELU, "flatten": _FLATTEN}
            steps = self.backward_steps[first_stage] = [
                (k, kinds[layer.kind], layer.weight, out[layer.weight] if out and layer.kind == "linear" else None,
                 layer.bias, out[layer.bias] if out and layer.bias is not None else None, k == lowest)
                for k, layer in reversed(list(enumerate(plan))) if k >= lowest]
        return steps

    def _logits_grad(self, logits: Tensor, y: Tensor) -> Tensor:
        constants = self.constants.get(y.shape)
        if constants is None:
            constants = self.constants[y.shape] = _loss_constants(tuple(y.shape), logits.dtype, logits.device)
        return _logits_grad(logits, y, self.stacked, constants)


def _operands(layer: Layer, params: list[Tensor], stacked: bool) -> tuple[Tensor, Tensor | None]:
    b = params[layer.bias] if layer.bias is not None else None
    if not stacked:
        return params[layer.weight].t(), b
    return params[layer.weight].transpose(1, 2), None if b is None else b.unsqueeze(1)


def _steps(plan: list[Layer], params: list[Tensor], stacked: bool) -> list[tuple]:
    """Each layer as what `_run` needs: (_LINEAR, transposed weight, bias) as its addmm (baddbmm)
    takes them (views of the parameters: they follow in-place updates), (_RELU_IN_PLACE or _RELU,
    None, None), or (_FLATTEN, start, end) past the member dimension where stacked."""
    steps = []
    for k, layer in enumerate(plan):
        if layer.kind == "linear":
            steps.append((_LINEAR, *_operands(layer, params, stacked)))
        elif layer.kind == "relu":
            steps.append((_RELU_IN_PLACE if k and plan[k - 1].kind == "linear" else _RELU, None, None))
        else:
            steps.append((_FLATTEN, layer.start_dim + stacked, layer.end_dim + stacked))
    return steps


def _run(step: tuple, x: Tensor, stacked: bool) -> Tensor:
    """A layer's output from its input x. A ReLU after a Linear overwrites the Linear's own output,
    which nothing else reads (nor does the Linear's backward): no new tensor."""
    kind, a, b = step
    if kind == _LINEAR:
        if not stacked:  # F.linear's own calls, as nn.Linear makes them
            return torch.mm(x, a) if b is None else torch.addmm(b, x, a)
        return torch.bmm(x, a) if b is None else torch.baddbmm(b, x, a)
    if kind == _RELU_IN_PLACE:
        return x.relu_()
    if kind == _RELU:
        return torch.relu(x)
    return x.flatten(a, b)


def _logits_grad(logits: Tensor, y: Tensor, stacked: bool, constants: tuple[Tensor, Tensor]) -> Tensor:
    """Gradient of the loss w.r.t. the logits: nll_loss's and log_softmax's backward, with the
    incoming gradient autograd starts from (1, and each member's 1 / B through its mean), for the
    log-softmax lossscape.losses takes (over the classes as dim 0 of the transposed logits: 35
    against 18 us for one model at batch 64, 150 against 53 us for 8 members, one CPU thread).
    The returned gradient is a transposed view, examples contiguous. constants: `_loss_constants`'
    for y's shape."""
    incoming, total = constants
    flat, labels = (logits.flatten(0, 1), y.flatten()) if stacked else (logits, y)
    logp = losses.log_softmax_t(flat)  # [classes, examples]
    # nll_loss's backward reads only the shape of its input, here the logits' (1-2 us less than logp.t())
    g = _nll_loss_backward(incoming, flat, labels, None, _NONE if stacked else _MEAN, _IGNORE, total)
    g = torch._log_softmax_backward_data(g.t(), logp, 0, logp.dtype).t()
    return g.unflatten(0, y.shape) if stacked else g


def _loss_constants(labels_shape: tuple, dtype: torch.dtype, device: torch.device) -> tuple[Tensor, Tensor]:
    """nll_loss_backward's incoming gradient and total weight for labels of this shape, made once
    per Gradients and shape (they are only read). One model, [B]: 1 and the batch size. Stacked,
    [S, B]: each example's 1 / B, divided in the dtype as autograd's mean backward divides, and an
    unused total weight."""
    one = torch.ones((), dtype=dtype, device=device)
    if len(labels_shape) == 1:
        return one, torch.full((), labels_shape[0], dtype=dtype, device=device)
    S, B = labels_shape
    return one.div(B).expand(S * B).contiguous(), torch.zeros((), dtype=dtype, device=device)


def _weight_grad(g: Tensor, a: Tensor, stacked: bool, out: Tensor | None) -> Tensor:
    """W's gradient from the layer's output gradient g and input a, grad.t().mm(mat1) as addmm's
    mat2 (W.t(), column-major) takes it, per member where stacked; into `out` where given.

    Stacked, autograd's baddbmm computes the transpose, batch1.transpose(1, 2).bmm(grad), and
    copies it into W's layout: the same dot products over the batch, without the transposing copy
    (30 us at w64 bs16, 8 members; 1.1 ms at w256). MKL does not always sum them in the same order:
    on an AVX-512 CPU the two differ in the last bit at [3, 9] x [9, 18] and at 8 members of
    [64] x [64, 10], and agree at the cpu profile's other shapes. The stacked test therefore
    checks rounding-level agreement, the single one bit identity."""
    if stacked:
        return torch.bmm(g.transpose(1, 2), a, out=out)
    return torch.mm(g.t(), a, out=out)


def _input_grad(g: Tensor, w: Tensor, a: Tensor) -> Tensor:
    """addmm's mat1 gradient as autograd's mm_mat1_backward takes it: transposed where the input
    was column-major."""
    if a.stride(0) == 1 and a.stride(1) == a.shape[0]:
        return w.t().mm(g.t()).t()
    return g.mm(w)
