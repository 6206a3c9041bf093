"""Step cost (lossscape.step_cost, claims FO-1..3): FLOP counts against hand counts of the layers,
the FreezeOut compute ratio against the freeze steps written out with numpy, and the step timer."""
import numpy as np
import pytest

from lossscape import RunConfig
from lossscape.models import build_model
from lossscape.step_cost import freezeout_flop_ratio, frozen_step_times, stage_forward_flops, step_flops


def test_mlp_flops_are_two_per_multiply_add():
    net = build_model("mlp", (40,), 10, width=8)
    assert stage_forward_flops(net, (40,)) == [2 * 40 * 8, 2 * 8 * 8, 2 * 8 * 10]


def test_conv1d_flops_count_every_output_element():
    # conv(1->4, k5, pad 2) on 40; conv(4->4, k3, stride 2) -> 20; again -> 10; linear(4*10 -> 10)
    net = build_model("conv1d", (40,), 10, width=4)
    assert stage_forward_flops(net, (40,)) == [2 * 4 * 40 * 5, 2 * 4 * 20 * 4 * 3, 2 * 4 * 10 * 4 * 3, 2 * 40 * 10]


def test_counting_leaves_the_model_as_it_was():
    net = build_model("resnet_small", (40,), 10, width=4).train()
    stage_forward_flops(net, (40,))
    assert net.training
    assert all(not m._forward_hooks for m in net.modules())


def test_step_flops_skip_the_backward_of_frozen_stages():
    f = [1.0, 10.0, 100.0]
    assert step_flops(f, 0) == 111 + 111 + 110  # weight grads everywhere, input grads above stage 0
    assert step_flops(f, 1) == 111 + 110 + 100
    assert step_flops(f, 2) == 111 + 100 + 0


@pytest.mark.parametrize("t0,spacing", [(0.5, "cubic"), (0.3, "linear"), (1.0, "cubic")])
def test_freezeout_flop_ratio_follows_the_freeze_steps(t0, spacing):
    flops = [3.0, 5.0, 7.0, 11.0]
    T = 101
    cfg = RunConfig(schedule="freezeout", freeze_t0=t0, freeze_spacing=spacing)
    linear = t0 + (1 - t0) * np.arange(4) / 3
    t_i = (linear ** 3 if spacing == "cubic" else linear) * T
    frozen = (np.arange(T)[:, None] >= t_i[None, :]).sum(1)  # stages past their freeze step
    F = sum(flops)
    cost = [F + sum(flops[k:]) + sum(flops[k + 1:]) for k in frozen]
    assert freezeout_flop_ratio(cfg, flops, T) == pytest.approx(np.mean(cost) / (F + F + F - flops[0]), rel=1e-12)
    if t0 == 1.0:
        assert freezeout_flop_ratio(cfg, flops, T) == 1.0  # nothing ever freezes


def test_frozen_step_times_returns_positive_times_per_level():
    cfg = RunConfig(dataset="mnist1d", n_samples=200, model="mlp", width=8, batch_size=16, schedule="freezeout")
    times = frozen_step_times(cfg, [0, 2], steps=2, repeats=3, warmup=1)
    assert sorted(times) == [0, 2]
    assert all(v.shape == (3,) and (v > 0).all() for v in times.values())
    with pytest.raises(ValueError, match="frozen"):
        frozen_step_times(cfg, [3])  # every stage frozen: nothing left to train
