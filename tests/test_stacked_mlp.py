"""The written-out stacked forward against vmap(functional_call), the engine's general path, and the
written-out gradients against autograd's: a single model's bit for bit on the same loss arithmetic,
stacked members' to rounding."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from lossscape import losses, stacked_mlp
from lossscape.models import StagedNet, build_model
from lossscape.strategies import flat_views


@pytest.mark.parametrize("input_shape", [(40,), (2, 4, 5)])  # Flatten must skip the member dimension
@pytest.mark.parametrize("frozen", [0, 1, 2])  # 3 of 3 would leave nothing to train
def test_forward_and_gradients_equal_vmap(input_shape, frozen):
    torch.manual_seed(0)
    members = [build_model("mlp", input_shape, 10, 16) for _ in range(3)]
    base = members[0]
    base.frozen_stages = frozen
    stacked, _ = stack_module_state(members)
    names = list(stacked)
    plan = stacked_mlp.layers(base, input_shape)
    x = torch.randn(3, 7, *input_shape)

    def loss_and_grads(forward):
        params = {k: v.detach().clone().requires_grad_(True) for k, v in stacked.items()}
        out = forward(params)
        out.square().sum().backward()
        return out.detach(), {k: p.grad for k, p in params.items()}

    mine = loss_and_grads(lambda params: stacked_mlp.forward(plan, [params[k] for k in names], x, frozen))
    ref = loss_and_grads(lambda params: vmap(
        lambda p, xb: functional_call(base, dict(zip(names, p)), (xb,)))([params[k] for k in names], x))
    torch.testing.assert_close(mine[0], ref[0], rtol=1e-6, atol=1e-6)
    for k in names:
        if ref[1][k] is None:  # a frozen stage: no gradient either way
            assert mine[1][k] is None
        else:
            torch.testing.assert_close(mine[1][k], ref[1][k], rtol=1e-5, atol=1e-6)


def test_a_frozen_stage_with_no_op_to_run_still_cuts_the_graph():
    """A Flatten of one dimension does nothing and is left out of the plan; a stage made only of one
    still ends the frozen prefix: with stages [Linear, ReLU] | [Flatten] | [Linear] and 2 frozen,
    the first Linear gets no gradient, as StagedNet's own forward gives it none."""
    torch.manual_seed(0)
    net = StagedNet([nn.Sequential(nn.Linear(4, 6), nn.ReLU()), nn.Flatten(), nn.Linear(6, 3)])
    plan = stacked_mlp.layers(net, (4,))
    assert [layer.kind for layer in plan] == ["linear", "relu", "linear"]
    params = [p.detach().unsqueeze(0).clone().requires_grad_(True) for p in net.parameters()]
    stacked_mlp.forward(plan, params, torch.randn(1, 5, 4), frozen=2).square().sum().backward()
    assert [p.grad is None for p in params] == [True, True, False, False]


def _deep(input_shape, n_classes, width):
    """Linear layers with and without bias, nested Sequentials, a Flatten after a Linear."""
    features = input_shape[0] * input_shape[1]
    return StagedNet([nn.Sequential(nn.Flatten(), nn.Linear(features, width, bias=False), nn.ReLU(), nn.Flatten()),
                      nn.Sequential(nn.Sequential(nn.Linear(width, width), nn.ReLU()), nn.Linear(width, width), nn.ReLU()),
                      nn.Linear(width, n_classes, bias=False)])


@pytest.mark.parametrize("batch", [1, 5, 64])
@pytest.mark.parametrize("frozen", [0, 1, 2])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("into_buffer", [False, True])
def test_single_model_gradients_equal_autograd(batch, frozen, dtype, into_buffer):
    """Reference: autograd through the module itself, on the engine's loss (mean cross-entropy):
    bit for bit with the log-softmax taken over the transposed logits as the written-out path
    takes it, and to rounding against F.cross_entropy's (the same function, whose CPU kernel
    rounds in another order at some shapes). into_buffer: written into views of one flat buffer,
    as the engine has them."""
    torch.manual_seed(batch + frozen)
    model = build_model("mlp", (40,), 10, 24).to(dtype)
    x, y = torch.randn(batch, 40, dtype=dtype), torch.randint(0, 10, (batch,))
    params = list(model.parameters())
    model.frozen_stages = frozen

    def autograd(loss_fn):
        model.zero_grad(set_to_none=True)
        loss_fn(model(x), y).reshape(1).sum().backward()
        return [p.grad for p in params]
    exact, usual = autograd(losses.cross_entropy), autograd(F.cross_entropy)
    out = flat_views(torch.full((sum(p.numel() for p in params),), math.nan, dtype=dtype), params) if into_buffer else None
    mine = stacked_mlp.gradients(stacked_mlp.layers(model, (40,)), params, x, y, frozen, stacked=False, out=out)
    trained = [i for i, (k, _) in enumerate(model.named_parameters()) if int(k.split(".")[1]) >= frozen]
    assert sorted(mine) == trained
    for i in trained:
        assert torch.equal(mine[i], exact[i]), i
        torch.testing.assert_close(mine[i], usual[i], rtol=1e-6, atol=1e-7, msg=str(i))
        if into_buffer:
            assert mine[i] is out[i]


@pytest.mark.parametrize("frozen", [0, 2])
def test_stacked_gradients_equal_autograd(frozen):
    """Reference: autograd through the stacked forward, on the engine's loss (each member's mean
    cross-entropy, summed); a model with nested stages, bias-free layers and a 2-D input. Equal up
    to the order MKL sums a weight gradient's products in, which differs between batch1^T grad
    and (grad^T batch1)^T on some CPUs (stacked_mlp._weight_grad): rounding, not a wrong term."""
    torch.manual_seed(1)
    members = [_deep((3, 6), 4, 8) for _ in range(3)]
    stacked, _ = stack_module_state(members)
    params = [v.detach().clone().requires_grad_(True) for v in stacked.values()]
    plan = stacked_mlp.layers(members[0], (3, 6))
    x, y = torch.randn(3, 9, 3, 6), torch.randint(0, 4, (3, 9))
    logits = stacked_mlp.forward(plan, params, x)
    F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none").view(3, 9).mean(1).sum().backward()
    mine = stacked_mlp.gradients(plan, params, x, y, frozen, stacked=True)
    stages = [int(k.split(".")[1]) for k in stacked]
    assert sorted(mine) == [i for i, s in enumerate(stages) if s >= frozen]
    for i in mine:
        torch.testing.assert_close(mine[i], params[i].grad, rtol=1e-6, atol=1e-7, msg=str(i))


@pytest.mark.parametrize("stacked", [False, True])
def test_prepared_gradients_follow_the_parameters_from_step_to_step(stacked):
    """An engine prepares its Gradients once: from step to step, after in-place updates of the
    parameters (views of one flat buffer, as the engine has them), on a short last batch and with
    a frozen prefix that grows, they are what gradients() computes afresh, bit for bit, and land
    in the engine's buffer."""
    torch.manual_seed(2)
    members = [_deep((3, 6), 4, 8) for _ in range(3 if stacked else 1)]
    if stacked:
        stacked_params, _ = stack_module_state(members)
        tensors = [v.detach() for v in stacked_params.values()]
    else:
        tensors = [p.detach() for p in members[0].parameters()]
    flat = torch.cat([t.reshape(-1) for t in tensors])
    params = flat_views(flat, tensors)
    plan = stacked_mlp.layers(members[0], (3, 6))
    out = flat_views(torch.full_like(flat, math.nan), params)
    prepared = stacked_mlp.Gradients(plan, params, stacked, out)
    lead = (3,) if stacked else ()
    for batch, first_stage in [(9, 0), (9, 0), (4, 0), (9, 1), (9, 2), (9, 0)]:
        x, y = torch.randn(*lead, batch, 3, 6), torch.randint(0, 4, (*lead, batch))
        fresh = stacked_mlp.gradients(plan, params, x, y, first_stage, stacked)
        mine = prepared(x, y, first_stage)
        assert sorted(mine) == sorted(fresh)
        for i, g in mine.items():
            assert torch.equal(g, fresh[i]) and g is out[i], i
        flat.sub_(0.5 * torch.nan_to_num(torch.cat([o.reshape(-1) for o in out])))  # moves every parameter


@pytest.mark.parametrize("model, input_shape, supported", [
    ("mlp", (40,), True), ("mlp", (2, 20), True), ("conv1d", (40,), False), ("vgg_small", (40,), False)])
def test_only_linear_relu_flatten_models_are_written_out(model, input_shape, supported):
    assert (stacked_mlp.layers(build_model(model, input_shape, 10, 8), input_shape) is not None) is supported


def test_a_linear_on_unflattened_inputs_stays_on_autograd():
    """nn.Linear on [B, C, L] multiplies the last dimension only: not the [B, features] mm written out."""
    model = StagedNet([nn.Sequential(nn.Linear(5, 4), nn.ReLU()), nn.Flatten(), nn.Linear(12, 2)])
    assert stacked_mlp.layers(model, (3, 5)) is None


@pytest.mark.parametrize("model, input_shape", [
    ("staged", (2, 20)),  # nested Sequentials, a bias-free Linear, Flattens
    ("sequential", (40,)),  # a plain Sequential as one stage
    ("bare", (40,)),  # a bare Linear as one stage
    ("relu_first", (40,)),  # a ReLU on the input: the input itself must not change
])
def test_forward_into_equals_the_module_forward_bit_for_bit_and_reuses_its_buffers(model, input_shape):
    """forward_into, loss surfaces' written-out pass: the module's own forward at every call, as
    its weights change between calls (the buffers hold nothing over) and when the batch changes."""
    torch.manual_seed(0)
    net = {"staged": lambda: _deep(input_shape, 10, 16),
           "sequential": lambda: nn.Sequential(nn.Linear(40, 16), nn.ReLU(), nn.Linear(16, 10)),
           "bare": lambda: nn.Linear(40, 10),
           "relu_first": lambda: nn.Sequential(nn.ReLU(), nn.Linear(40, 10))}[model]()
    plan = stacked_mlp.layers(net if model == "staged" else StagedNet([net]), input_shape)  # as geometry wraps it
    assert plan is not None
    scratch = {}
    for batch in (7, 7, 3):
        x = torch.randn(batch, *input_shape)
        x_before = x.clone()
        with torch.no_grad():
            for p in net.parameters():
                p.add_(torch.randn_like(p))
            mine = stacked_mlp.forward_into(plan, [p.detach() for p in net.parameters()], x, scratch).clone()
            ref = net(x)
        assert torch.equal(mine, ref)
        assert torch.equal(x, x_before)
    assert all(buf.shape[0] == 3 for buf in scratch.values())  # the last call's batch


def test_a_subclassed_or_hooked_layer_stays_on_autograd():
    """Its forward or backward is not the one written out: a Sequential subclass may override
    forward, a hook may change an output or a gradient."""
    class Doubled(nn.Sequential):
        def forward(self, x):
            return 2 * super().forward(x)

    assert stacked_mlp.layers(StagedNet([Doubled(nn.Linear(4, 2))]), (4,)) is None
    hooked = StagedNet([nn.Sequential(nn.Linear(4, 3), nn.ReLU()), nn.Linear(3, 2)])
    assert stacked_mlp.layers(hooked, (4,)) is not None
    hooked.stages[0][1].register_forward_hook(lambda module, inputs, output: output + 1)
    assert stacked_mlp.layers(hooked, (4,)) is None
    backward_hooked = StagedNet([nn.Sequential(nn.Linear(4, 3), nn.ReLU()), nn.Linear(3, 2)])
    backward_hooked.stages[1].register_full_backward_hook(lambda module, grad_in, grad_out: None)
    assert stacked_mlp.layers(backward_hooked, (4,)) is None
