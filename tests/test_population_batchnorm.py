"""BatchNorm models trained as a stacked population (lossscape.strategies.StackedModels) against
their single runs: weights, running statistics, history, snapshots, FreezeOut and stopped members.

In float64, to a tolerance of rtol 1e-9, atol 1e-12 on every tensor of a member's state and 1e-9
relative on its losses and update norms. Stacking computes the same sums in another order (vmap
runs a member's convolutions as one grouped convolution and its BatchNorm through a batching rule),
so the two runs differ by rounding; the largest difference measured here was 3e-5 of that
tolerance. A mistake in the batching (statistics shared between members, a member normalized with
another's) differs by 1e-2 and more.

Why float64: where a ReLU's input lies within float32 rounding of zero the two computations can
take different sides of the kink, and from that step on the runs part like any two runs given a
perturbation of that size. Which steps meet such an input depends on the CPU's kernels: on one
machine none of the configurations below did, on an AVX-512 EPYC resnet_small seed 0 and
densenet_small seed 1 did within their first epoch (150-1,250 times the float32 tolerance of rtol
1e-4, atol 1e-5 after 1-3 epochs). In float64 such an input would have to lie within 1e-16 of zero.
num_batches_tracked counts steps and must match exactly.
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lossscape import RunConfig, path_choice, strategies, train, train_population
from lossscape.data import load_data
from lossscape.engine import EVAL_CHUNK, Engine
from lossscape.footprint import population_bytes

SEEDS = [0, 1, 2]
# 320 training examples, 10 steps per epoch; densenet_small for 2 epochs (see the docstring)
EPOCHS = {"resnet_small": 3, "densenet_small": 2}


def cfg(model, **kw):
    return RunConfig(**{**dict(dataset="mnist1d", n_samples=500, model=model, width=4, batch_size=32, lr=0.05,
                               epochs=EPOCHS[model], dtype="float64"), **kw})


def assert_states_match(member: dict, single: dict) -> None:
    assert list(member) == list(single)  # the same keys, in the module's state_dict order
    for k, v in single.items():
        if v.is_floating_point():
            torch.testing.assert_close(member[k], v, rtol=1e-9, atol=1e-12, msg=k)
        else:
            assert torch.equal(member[k], v), k


def population_and_singles(c: RunConfig):
    pop = train_population(c, SEEDS, path="stacked")
    assert [m.engine_path["kind"] for m in pop] == ["stacked"] * len(SEEDS)
    return [(m, train(c.replace(seed=m.config.seed))) for m in pop]


@pytest.mark.parametrize("model", ["resnet_small", "densenet_small"])
def test_batchnorm_members_equal_single_runs(model):
    for member, single in population_and_singles(cfg(model)):
        assert any("running_var" in k for k in member.final_state)
        assert all(torch.equal(member.initial_state[k], v) for k, v in single.initial_state.items())
        assert_states_match(member.final_state, single.final_state)
        np.testing.assert_allclose(member.update_norms, single.update_norms, rtol=1e-9)
        for hm, hs in zip(member.history, single.history, strict=True):
            assert hm.keys() == hs.keys()  # the same splits evaluated at the same epochs
            for split in ("train", "val", "test"):
                if f"{split}_loss" not in hs:
                    continue
                assert hm[f"{split}_loss"] == pytest.approx(hs[f"{split}_loss"], rel=1e-9)
                assert hm[f"{split}_acc"] == pytest.approx(hs[f"{split}_acc"], abs=1 / 80 + 1e-9)


@pytest.mark.parametrize("pass_examples", [strategies.EVAL_MEMBER_EXAMPLES, 64])
def test_a_member_evaluates_on_its_own_running_statistics(monkeypatch, pass_examples):
    """Oracle: the member's final state loaded into a plain module in eval mode. 64
    member-examples per pass: the 80 validation examples in passes of 21 per member."""
    monkeypatch.setattr(strategies, "EVAL_MEMBER_EXAMPLES", pass_examples)
    c = cfg("resnet_small", dtype="float32")  # the engine's own evaluation, in the dtype runs use
    ds = load_data(c)
    for member in train_population(c, SEEDS, path="stacked"):
        model = member.model()  # eval mode: BatchNorm normalizes with the running statistics
        with torch.no_grad():
            eval_loss = F.cross_entropy(model(ds.X_val), ds.y_val).item()
            batch_loss = F.cross_entropy(model.train()(ds.X_val), ds.y_val).item()
        assert member.history[-1]["val_loss"] == pytest.approx(eval_loss, rel=1e-5)
        assert abs(batch_loss - eval_loss) > 1e-3  # batch statistics would give another loss


@pytest.mark.parametrize("model, kw", [
    ("resnet_small", dict(schedule="freezeout", epochs=4)),
    ("densenet_small", dict(schedule="freezeout")),
    ("resnet_small", dict(schedule="cyclic_cosine", snapshots=2, epochs=4)),
    ("densenet_small", dict(schedule="cyclic_cosine", snapshots=2, epochs=4)),
])
def test_freezeout_and_cycle_snapshots_on_stacked_batchnorm_members(model, kw):
    for member, single in population_and_singles(cfg(model, **kw)):
        assert member.snapshot_steps == single.snapshot_steps
        assert len(member.snapshots) == len(single.snapshots) == kw.get("snapshots", 0)
        for a, b in zip(member.snapshots, single.snapshots):
            assert_states_match(a, b)
        assert_states_match(member.final_state, single.final_state)


def test_a_stopped_member_keeps_its_running_statistics():
    """Members stop at epochs 8, 7 and 7 (checked); the population trains on for member 0, and the
    stopped members' statistics must not see those batches: num_batches_tracked says exactly."""
    c = cfg("resnet_small", stop="target_loss", target_loss=1.9, epochs=8)
    pairs = population_and_singles(c)
    assert len({m.epochs_run for m, _ in pairs}) > 1
    for member, single in pairs:
        assert (member.stop_reason, member.epochs_run) == (single.stop_reason, single.epochs_run)
        assert_states_match(member.final_state, single.final_state)


def test_early_stop_keeps_a_stacked_members_best_statistics():
    c = cfg("resnet_small", stop="early_stop", patience=1, epochs=5, lr=0.2)
    for member, single in population_and_singles(c):
        assert member.best_epoch == single.best_epoch
        assert_states_match(member.final_state, single.final_state)


@pytest.mark.parametrize("per_step, kind", [({1: 1.0, 2: 1.2, 3: 1.5}, "stacked"), ({1: 1.0, 2: 2.5, 3: 3.5}, "loop")])
def test_the_probe_decides_for_batchnorm_models_too(monkeypatch, per_step, kind):
    monkeypatch.setattr(path_choice, "CHOSEN_PATHS", {})
    monkeypatch.setattr(Engine, "seconds_per_step", lambda self, steps: per_step[len(self.seeds)])
    pop = train_population(cfg("densenet_small", epochs=1), SEEDS)
    assert [m.engine_path["kind"] for m in pop] == [kind] * len(SEEDS)


def test_memory_estimate_counts_a_working_set_per_stacked_batchnorm_member():
    """A data-parallel population holds one working set; a BatchNorm population may stack, so its
    members hold one each: the same bytes, moved from the fixed part to the per-member part."""
    c = cfg("resnet_small")
    ds = load_data(c)
    fixed, per_member = population_bytes(c, ds, EVAL_CHUNK)
    fixed_dp, per_member_dp = population_bytes(c.replace(world_size=2), ds, EVAL_CHUNK)
    assert per_member - per_member_dp == fixed_dp - fixed > 0
