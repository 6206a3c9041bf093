"""FreezeOut (claims FO-1..3): the per-layer schedule against Brock et al.'s formulas written out
with numpy, the model's backward cut, and the engine: a frozen stage gets no gradient and its
weights stop changing at its freeze step, for every model family."""
import math

import numpy as np
import pytest
import torch

from lossscape import RunConfig
from lossscape.freezeout import freeze_steps, frozen_prefix, stage_lrs
from lossscape.models import build_model
from lossscape.schedules import freezeout_fractions, freezeout_lr
from lossscape.engine import Engine

MODELS = ["mlp", "vgg_small", "resnet_small", "densenet_small"]


def brock_fractions(n, t0, spacing):
    """t_i / T: t0 + (1 - t0) i / (n - 1), cubed under cubic spacing (t0 given before the cube)."""
    linear = t0 + (1 - t0) * np.arange(n) / (n - 1)
    return linear ** 3 if spacing == "cubic" else linear


def brock_lr(t, T, fractions, lr0, scale):
    """[layers, steps]: lr_i(t) = lr_i(0)/2 (1 + cos(pi t / t_i)) before t_i, 0 from t_i on."""
    t_i = fractions[:, None] * T
    lr_i0 = (lr0 / fractions if scale else np.full_like(fractions, lr0))[:, None]
    return np.where(t < t_i, lr_i0 / 2 * (1 + np.cos(np.pi * t / t_i)), 0.0)


@pytest.mark.parametrize("spacing", ["linear", "cubic"])
@pytest.mark.parametrize("n,t0", [(2, 0.5), (3, 0.5), (5, 0.2), (8, 0.8)])
def test_fractions(n, t0, spacing):
    got = freezeout_fractions(n, t0, spacing)
    np.testing.assert_allclose(got, brock_fractions(n, t0, spacing), rtol=1e-12)
    assert got[-1] == 1.0  # the last layer trains to the end
    assert all(a < b for a, b in zip(got, got[1:]))


def test_a_single_layer_never_freezes():
    assert freezeout_fractions(1, 0.5, "cubic") == [1.0]


@pytest.mark.parametrize("scale", [True, False])
@pytest.mark.parametrize("spacing", ["linear", "cubic"])
def test_layer_rates(spacing, scale):
    n, T, lr0, t0 = 4, 200, 0.1, 0.4
    t = np.arange(T)
    expected = brock_lr(t, T, brock_fractions(n, t0, spacing), lr0, scale)
    got = np.array([[freezeout_lr(i, n, int(s), T, lr0, t0, spacing, scale) for s in t] for i in range(n)])
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-15)
    assert (got[-1] > 0).all()  # the last layer never freezes early
    assert got[0, 0] == pytest.approx(lr0 / brock_fractions(n, t0, spacing)[0] if scale else lr0)


def test_stage_lrs_and_frozen_prefix_follow_the_freeze_steps():
    cfg = RunConfig(schedule="freezeout", lr=0.1, freeze_t0=0.3, freeze_spacing="linear", freeze_scale_lr=False)
    n, T = 5, 97
    t_i = brock_fractions(n, 0.3, "linear") * T
    np.testing.assert_allclose(freeze_steps(cfg, n, T), t_i, rtol=1e-12)
    for step in range(T):
        lrs = stage_lrs(cfg, n, step, T)
        assert lrs == pytest.approx(brock_lr(np.array([step]), T, t_i / T, 0.1, False)[:, 0], rel=1e-12, abs=1e-15)
        assert frozen_prefix(lrs) == int((step >= t_i).sum())


def _count_grads(params):
    counts = [0] * len(params)
    for i, p in enumerate(params):
        p.register_post_accumulate_grad_hook(lambda _, i=i: counts.__setitem__(i, counts[i] + 1))
    return counts


@pytest.mark.parametrize("model", MODELS)
def test_frozen_stages_get_no_backward(model):
    net = build_model(model, (40,), 10, width=4)
    x, y = torch.randn(8, 40), torch.randint(0, 10, (8,))
    reference = net(x)
    n = len(net.stages)
    for k in range(n):
        net.zero_grad(set_to_none=True)
        net.frozen_stages = k
        counts = _count_grads([next(s.parameters()) for s in net.stages])
        out = net(x)
        torch.testing.assert_close(out, reference)  # detaching changes no value
        torch.nn.functional.cross_entropy(out, y).backward()
        assert counts == [0] * k + [1] * (n - k)
        for i, stage in enumerate(net.stages):
            assert all((p.grad is None) == (i < k) for p in stage.parameters()), (k, i)


# 200 examples leave 128 for training: 4 steps of 32 per epoch, T = 16 steps over 4 epochs.
# Cubic spacing from t0 = 0.5 puts the stages' freeze steps at 16 * (0.125 ... 1), spread over
# every epoch, so some epoch ends fall before and some after each stage's freeze.
FREEZE = RunConfig(dataset="mnist1d", n_samples=200, width=4, batch_size=32, lr=0.05, epochs=4,
                   schedule="freezeout", freeze_t0=0.5, freeze_spacing="cubic", seed=0,
                   record_snapshots=(1, 2, 3, 4))
STEPS_PER_EPOCH, T = 4, 16


def _count_written_out_grads(monkeypatch, engine):
    """For the mlp, whose gradients are written out (lossscape.stacked_mlp), not autograd's: the
    steps whose gradients reached each stage's first parameter."""
    counts = [0] * len(engine.module.stages)
    firsts = {engine.strategy.names.index(next(n for n, _ in s.named_parameters(prefix=f"stages.{i}"))): i
              for i, s in enumerate(engine.module.stages)}
    real = engine.gradients

    def spy(*args, **kw):
        grads = real(*args, **kw)
        for k in grads.keys() & firsts.keys():
            counts[firsts[k]] += 1
        return grads
    monkeypatch.setattr(engine, "gradients", spy)
    return counts


@pytest.mark.parametrize("model", MODELS)
def test_engine_freezes_each_stage_at_its_step(model, monkeypatch):
    cfg = FREEZE.replace(model=model, width=16 if model == "mlp" else 4)
    engine = Engine(cfg, [cfg.seed], stacked=False)
    n = len(engine.module.stages)
    t_i = brock_fractions(n, cfg.freeze_t0, cfg.freeze_spacing) * T
    if not engine.written_out:
        counts = _count_grads([next(s.parameters()) for s in engine.module.stages])
    else:
        counts = _count_written_out_grads(monkeypatch, engine)
    assert engine.written_out == (model == "mlp")
    run = engine.run()[0]
    # steps 0..T-1 train stage i while step < t_i: min(T, ceil(t_i)) backward passes reach it
    assert counts == [min(T, math.ceil(t)) for t in t_i]
    states = [run.initial_state, *(run.epoch_snapshots[e] for e in cfg.record_snapshots)]  # after 0, 1, ..., 4 epochs
    for i in range(n - 1):
        names = [k for k, _ in engine.module.named_parameters() if k.startswith(f"stages.{i}.")]
        for e in range(1, cfg.epochs + 1):
            same = all(torch.equal(states[e][k], run.final_state[k]) for k in names)
            # frozen by the end of epoch e: no later change; still training: later steps move it
            assert same == (e * STEPS_PER_EPOCH >= t_i[i]), (i, e)
        assert not all(torch.equal(run.initial_state[k], run.final_state[k]) for k in names)


def test_reference_default_schedule_matches_brocks_code():
    """The reference implementation's default (github.com/ajbrock/FreezeOut, densenet.py): t_0 = 0.8
    pre-cubed, cubic, scaled; layer i's lr_ratio = (t_0 + (1 - t_0) i / L)^3 with L the last
    layer's index, max_j = epochs x 1000 x lr_ratio, lr = 0.05 / lr_ratio (1 + cos(pi j / max_j))
    until j passes max_j. Its numbers for five layers, written out: the first layer freezes at
    0.512 of training, not at t_0 = 0.8 nor at 0.5^3."""
    ratios = [0.512, 0.614125, 0.729, 0.857375, 1.0]  # (0.8 + 0.05 i)^3
    np.testing.assert_allclose(freezeout_fractions(5, 0.8, "cubic"), ratios, rtol=1e-12)
    epochs = 2
    T = epochs * 1000
    for i, ratio in enumerate(ratios):
        max_j = epochs * 1000 * ratio
        for j in (0, 1, 250, 511, 1023, 1024, 1500, 1999):
            reference = 0.05 / ratio * (1 + math.cos(math.pi * j / max_j)) if j <= max_j else 0.0
            assert freezeout_lr(i, 5, j, T, 0.1, 0.8, "cubic", True) == pytest.approx(reference, rel=1e-12, abs=1e-15)
