"""The written-out stacked forward against vmap(functional_call), the engine's general path."""
import pytest
import torch
from torch.func import functional_call, stack_module_state, vmap

from lossscape import stacked_mlp
from lossscape.models import build_model


@pytest.mark.parametrize("input_shape", [(40,), (2, 4, 5)])  # Flatten must skip the member dimension
@pytest.mark.parametrize("frozen", [0, 1, 2])  # 3 of 3 would leave nothing to train
def test_forward_and_gradients_equal_vmap(input_shape, frozen):
    torch.manual_seed(0)
    members = [build_model("mlp", input_shape, 10, 16) for _ in range(3)]
    base = members[0]
    base.frozen_stages = frozen
    stacked, _ = stack_module_state(members)
    x = torch.randn(3, 7, *input_shape)

    def loss_and_grads(forward):
        params = {k: v.detach().clone().requires_grad_(True) for k, v in stacked.items()}
        out = forward(params)
        out.square().sum().backward()
        return out.detach(), {k: p.grad for k, p in params.items()}

    mine = loss_and_grads(lambda params: stacked_mlp.forward(base, params, x))
    names = list(stacked)
    ref = loss_and_grads(lambda params: vmap(
        lambda p, xb: functional_call(base, dict(zip(names, p)), (xb,)))([params[k] for k in names], x))
    torch.testing.assert_close(mine[0], ref[0], rtol=1e-6, atol=1e-6)
    for k in names:
        if ref[1][k] is None:  # a frozen stage: no gradient either way
            assert mine[1][k] is None
        else:
            torch.testing.assert_close(mine[1][k], ref[1][k], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("model, supported", [("mlp", True), ("conv1d", False), ("vgg_small", False)])
def test_only_linear_relu_flatten_models_are_supported(model, supported):
    assert stacked_mlp.supports(build_model(model, (40,), 10, 8)) is supported
