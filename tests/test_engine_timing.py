"""Session timing of the engine's own step (lossscape.throughput.engine_step_times) and the
FreezeOut run time built from it (lossscape.step_cost.freezeout_time_ratio)."""
import numpy as np
import pytest

from lossscape import RunConfig
from lossscape.config import ConfigError
from lossscape.freezeout import frozen_prefix, stage_lrs
from lossscape.step_cost import freezeout_flop_ratio, freezeout_time_ratio, step_flops
from lossscape.throughput import StepTimes, engine_step_times, timing_context
from lossscape.engine import Engine

FO = RunConfig(dataset="mnist1d", n_samples=200, model="mlp", width=8, batch_size=16, lr=0.1, momentum=0.9,
               nesterov=True, weight_decay=1e-4, schedule="freezeout", freeze_t0=0.8)


def test_the_timed_step_is_the_engines_with_its_optimizer_and_frozen_stages(monkeypatch):
    """Every timed step goes through the engine's step (momentum, Nesterov, weight decay are the
    engine's), with the first k stages at LR 0; issue 12: the timer had its own plain SGD step."""
    calls = []
    real = Engine.step

    def spy(self, xb, yb, size, lrs, active):
        calls.append((self.cfg.nesterov, tuple(lr == 0 for lr in lrs), len(yb)))
        return real(self, xb, yb, size, lrs, active)
    monkeypatch.setattr(Engine, "step", spy)
    out = engine_step_times({0: FO, 2: FO}, frozen={2: 2}, steps=3, repeats=2, warmup=1)
    assert len(calls) == 2 * (1 + 2 * 3)
    assert {c[1] for c in calls} == {(False, False, False), (True, True, False)}
    assert all(c[0] and c[2] == 16 for c in calls)
    assert all(v.shape == (2,) and (v > 0).all() for v in out.step.values())
    assert out.steps_per_epoch == {0: 8, 2: 8}  # 128 training examples / 16


def test_momentum_moves_the_engine_as_training_does():
    """The timing engine's momentum buffers fill: its step is the momentum step, not plain SGD."""
    eng = Engine(FO, [0], stacked=False)
    eng.step(*eng.batch(eng.y.new_tensor(range(16)), 0, 16), eng.stage_lrs(0, 1, 0.0), None)
    assert eng.momentum_buf is not None


def test_evaluation_is_timed_only_when_asked():
    cfg = FO.replace(schedule="constant")
    assert (engine_step_times({16: cfg}, steps=1, repeats=2, warmup=0).evaluation[16] == 0).all()
    out = engine_step_times({16: cfg}, steps=1, repeats=2, warmup=0, evaluate=True)
    assert (out.evaluation[16] > 0).all()
    np.testing.assert_allclose(out.epoch(16, with_evaluation=True), 8 * out.step[16] + out.evaluation[16])


def test_bad_frozen_levels_are_refused():
    with pytest.raises(ConfigError, match="frozen"):
        engine_step_times({3: FO}, frozen={3: 3}, steps=1, repeats=1)  # every stage frozen
    with pytest.raises(ConfigError, match="frozen"):
        engine_step_times({1: FO.replace(schedule="constant")}, frozen={1: 1}, steps=1, repeats=1)


def test_step_times_give_epoch_times():
    st = StepTimes({1: np.array([0.5, 1.0])}, {1: np.array([2.0, 3.0])}, {1: 10})
    np.testing.assert_allclose(st.epoch(1), [5.0, 10.0])
    np.testing.assert_allclose(st.epoch(1, with_evaluation=True), [7.0, 13.0])


@pytest.mark.parametrize("t0,spacing", [(0.8, "cubic"), (0.5, "linear"), (1.0, "cubic")])
def test_time_ratio_is_the_flop_ratio_when_time_is_proportional_to_flops(t0, spacing):
    """Oracle: step times equal to the FLOP model's step cost give the FLOP model's run ratio; equal
    step times give 1 (freezing saves nothing)."""
    cfg = FO.replace(freeze_t0=t0, freeze_spacing=spacing)
    flops, T = [5.0, 3.0, 2.0, 1.0], 137
    times = {k: np.array([step_flops(flops, k), 2 * step_flops(flops, k)]) for k in range(4)}
    np.testing.assert_allclose(freezeout_time_ratio(cfg, 4, T, times), freezeout_flop_ratio(cfg, flops, T), rtol=1e-12)
    np.testing.assert_allclose(freezeout_time_ratio(cfg, 4, T, {k: np.ones(2) for k in range(4)}), 1.0)
    assert max(frozen_prefix(stage_lrs(cfg, 4, t, T)) for t in range(T)) == (0 if t0 == 1.0 else 3)


def test_timing_context_names_threads_and_cpu():
    text = timing_context()
    assert "torch threads" in text and "logical CPUs" in text
