"""The training engine against independent references: torch.optim.SGD, single vs population runs,
hand-computed update norms and distances, and each stop rule."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lossscape import ConfigError, RunConfig, path_choice, strategies, train, train_population
from lossscape.config import MAX_SEED
from lossscape.data import load_data
from lossscape.data_order import data_seed, epoch_permutation
from lossscape.engine import DIVERGENCE_LOSS_FACTOR, EVAL_CHUNK, Engine, diverged
from lossscape.models import build_model, init_model
from lossscape.strategies import SingleModel, StackedModels

# 500 MNIST-1D examples: 320 train / 80 val / 100 test, enough to train for real in a second.
SMALL = dict(dataset="mnist1d", n_samples=500, model="mlp", width=32)


def cfg(**kw):
    return RunConfig(**{**SMALL, "batch_size": 32, "lr": 0.1, "epochs": 3, **kw})


def _max_diff(a, b):
    return max((a[k] - b[k]).abs().max().item() for k in a)


def test_same_config_and_seed_give_bit_identical_weights():
    a, b = train(cfg()), train(cfg())
    assert all(torch.equal(a.final_state[k], b.final_state[k]) for k in a.final_state)
    assert a.history[-1]["train_loss"] == b.history[-1]["train_loss"]
    assert np.array_equal(a.update_norms, b.update_norms)
    c = train(cfg(seed=1))
    assert _max_diff(a.final_state, c.final_state) > 1e-3  # the seed matters


def test_training_does_not_touch_the_global_rng():
    before = torch.random.get_rng_state()
    train(cfg(epochs=1))
    train_population(cfg(epochs=1), [0, 1])  # the path probe included
    train_population(cfg(epochs=1), [0, 1], path="stacked")
    assert torch.equal(before, torch.random.get_rng_state())


def test_a_seeded_initialization_seeds_only_the_cpu_generator(monkeypatch):
    ds = load_data(cfg())
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(7)  # the oracle: torch's own global seeding, then the same build
        expected = build_model("mlp", ds.input_shape, ds.n_classes, 32).state_dict()

    def untouchable(*_):
        raise AssertionError("init_model seeded another device's generator")
    for module, name in ((torch.cuda, "manual_seed_all"), (torch.xpu, "manual_seed_all"), (torch.mps, "manual_seed")):
        monkeypatch.setattr(module, name, untouchable)
    got = init_model(cfg(), 7, ds.input_shape, ds.n_classes).state_dict()
    assert all(torch.equal(got[k], expected[k]) for k in expected)


def _torch_sgd(c, **sgd_options):
    """The weights torch.optim.SGD trains from c's initialization, in c's data order."""
    ds = load_data(c)
    model = init_model(c, c.seed, ds.input_shape, ds.n_classes)
    sgd = torch.optim.SGD(model.parameters(), lr=c.lr, momentum=c.momentum, nesterov=c.nesterov,
                          weight_decay=c.weight_decay, **sgd_options)
    n = len(ds.y_train)
    for epoch in range(c.epochs):
        perm = epoch_permutation(c.seed, epoch, n)
        for j in range(math.ceil(n / c.batch_size)):
            idx = perm[j * c.batch_size:(j + 1) * c.batch_size]
            sgd.zero_grad()
            F.cross_entropy(model(ds.X_train[idx]), ds.y_train[idx]).backward()
            sgd.step()
    return {k: v.detach() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("opt", [dict(), dict(momentum=0.9), dict(momentum=0.9, nesterov=True),
                                 dict(weight_decay=5e-3, momentum=0.5)])
def test_sgd_step_equals_torch_optim_sgd(opt):
    """Reference: torch.optim.SGD on the same init and the same data order."""
    c = cfg(epochs=2, **opt)
    run = train(c)
    ref = _torch_sgd(c)
    # float32 rounding differs (foreach vs per-tensor kernels): a few ulps after ~20 steps
    assert _max_diff(run.final_state, ref) < 1e-5


@pytest.mark.parametrize("seeds", [[0], [0, 1, 2]])
def test_one_buffer_sgd_update_equals_the_per_tensor_update(seeds, monkeypatch):
    """The written-out path's update of every parameter at one rate, one fused multiply-add over
    flat buffers (Engine.flat_update), against the foreach update of the same tensors (a multiply,
    then a subtract). Equal up to that rounding: p - rate * g rounded once or twice, a last-bit
    difference per step that 20 steps cannot grow past 1e-6 on weights of order 0.1-1 (a wrong
    rate, sign or tensor would be off by 1e-3 or more), and the update norm taken as rate times the
    gradient's norm (one reduction over the flat buffer for a single model) instead of the norm of
    the scaled tensors."""
    per_tensor_updates = []
    foreach_sub_ = torch._foreach_sub_
    monkeypatch.setattr(torch, "_foreach_sub_", lambda *a, **k: (per_tensor_updates.append(1), foreach_sub_(*a, **k)))
    runs, counts = {}, {}
    for flat in (True, False):
        engine = Engine(cfg(epochs=2), seeds, stacked=len(seeds) > 1)
        assert engine.flat_update
        engine.flat_update = flat
        before = len(per_tensor_updates)
        runs[flat] = engine.run()
        counts[flat] = len(per_tensor_updates) - before
    assert counts == {True: 0, False: 2 * 10}  # 320 examples in batches of 32, two epochs
    for a, b in zip(runs[True], runs[False]):
        assert 0 < _max_diff(a.final_state, a.initial_state)
        assert _max_diff(a.final_state, b.final_state) < 1e-6
        np.testing.assert_allclose(a.update_norms, b.update_norms, rtol=1e-5)


def test_plain_sgd_of_a_single_mlp_equals_torch_optim_sgd_to_rounding():
    """Reference: torch.optim.SGD's own step, p.add_(g, alpha=-lr), which the flat update computes
    (over one buffer instead of per tensor), on F.cross_entropy's autograd gradients, which the
    written-out ones equal to rounding (their log-softmax is taken over the transposed logits). The
    weights differed by at most 3e-8 after these 38 steps on the CPU this was written on; the
    check is to 1e-6, ten times tighter than the general optimizer test above and far below a
    wrong step (> 1e-3)."""
    c = cfg(epochs=2, width=33, batch_size=17)  # tensor sizes that are not multiples of a vector
    assert _max_diff(train(c).final_state, _torch_sgd(c, foreach=False)) < 1e-6


@pytest.mark.parametrize("strategy, member_shape", [(SingleModel, ()), (StackedModels, (3,))])
def test_update_norms_combined_per_epoch_equal_each_steps_own(strategy, member_shape):
    """The engine combines an epoch's per-tensor update norms in one op over all its steps; each
    step's squared norm must be what combining that step alone gives, bit for bit."""
    gen = torch.Generator().manual_seed(0)
    shapes = [(64, 40), (64,), (64, 64), (64,), (10, 64), (10,)]
    steps = [[torch.randn(*member_shape, *s, generator=gen) * 10.0 ** torch.randint(-4, 4, (), generator=gen)
              for s in shapes] for _ in range(25)]
    per_epoch = strategy.combine(torch.stack([strategy.tensor_norms(ts) for ts in steps]))
    per_step = torch.stack([strategy.combine(strategy.tensor_norms(ts)) for ts in steps])
    assert per_epoch.shape == per_step.shape == (25, *(member_shape or (1,)))
    assert torch.equal(per_epoch, per_step)


@pytest.mark.parametrize("strategy, member_shape", [(SingleModel, ()), (StackedModels, (3,))])
def test_flat_norms_are_each_members_norm_of_its_gradient(strategy, member_shape):
    """Oracle: each member's gradient norm in float64, its values picked out of the flat buffer one
    view at a time, for two contents of the buffer (the engine's steps refill it)."""
    shapes = [(*member_shape, *s) for s in [(6, 5), (6,), (3, 6), (3,)]]
    flat = torch.empty(sum(math.prod(s) for s in shapes))
    views = strategies.flat_views(flat, [torch.empty(s) for s in shapes])
    gen = torch.Generator().manual_seed(0)
    for _ in range(2):
        flat.copy_(torch.randn(flat.shape, generator=gen) * torch.rand(flat.shape, generator=gen) * 10)
        rows = [v.double().reshape(*member_shape, -1) for v in views]
        expected = torch.cat(rows, dim=-1).norm(dim=-1).reshape(-1)
        torch.testing.assert_close(strategy.combine(strategy.flat_norms(flat, views)).sqrt().double().reshape(-1), expected, rtol=1e-6, atol=0)


def test_population_members_equal_single_runs():
    """Tolerance: vmap computes the same matmuls batched, so sums are ordered differently and
    float32 rounding (~6e-8 relative per op) accumulates over the 30 steps; 1e-5 absolute on
    weights of order 0.1-1 is well above that drift and far below a seed's effect (> 1e-3)."""
    seeds = [0, 3, 7]
    pop = train_population(cfg(), seeds, path="stacked")
    assert [m.engine_path["kind"] for m in pop] == ["stacked"] * 3
    for seed, member in zip(seeds, pop):
        single = train(cfg(seed=seed))
        assert member.config.seed == seed
        assert _max_diff(member.final_state, single.final_state) < 1e-5
        assert _max_diff(member.initial_state, single.initial_state) == 0
        np.testing.assert_allclose(member.update_norms, single.update_norms, rtol=1e-4)
        assert member.evaluated_epochs == single.evaluated_epochs
        for hm, hs in zip(member.history, single.history):
            assert hm["train_loss"] == pytest.approx(hs["train_loss"], rel=1e-5)
        assert member.history[-1]["val_acc"] == pytest.approx(single.history[-1]["val_acc"], abs=1 / 80 + 1e-9)


def test_population_members_stop_on_their_own():
    c = cfg(stop="target_loss", target_loss=1.9, epochs=40, lr=0.05)
    pop = train_population(c, [0, 1, 2], path="stacked")
    for member in pop:
        single = train(c.replace(seed=member.config.seed))
        assert member.stop_reason == single.stop_reason
        assert member.epochs_run == single.epochs_run
        assert _max_diff(member.final_state, single.final_state) < 1e-5


@pytest.mark.parametrize("per_step, kind, chunk", [
    ({1: 1.0, 2: 2.5, 3: 3.5}, "loop", 1),  # stacking is slower per member: the loop
    ({1: 1.0, 2: 2.0, 3: 3.0}, "loop", 1),  # a tie goes to the loop
    ({1: 1.0, 2: 1.9, 3: 2.85}, "loop", 1),  # and so does stacking within STACK_MARGIN of it
    ({1: 1.0, 2: 1.2, 3: 2.5}, "stacked", 2),  # chunks of 2: members 0-1 stacked, then 2 alone
    ({1: 1.0, 2: 1.2, 3: 1.2}, "stacked", 3),
])
def test_population_takes_the_path_the_probe_measures_fastest(monkeypatch, per_step, kind, chunk):
    monkeypatch.setattr(path_choice, "CHOSEN_PATHS", {})
    monkeypatch.setattr(Engine, "seconds_per_step", lambda self, steps: per_step[len(self.seeds)])
    seeds = [0, 3, 7]
    pop = train_population(cfg(epochs=2), seeds)
    for seed, member in zip(seeds, pop):
        assert (member.engine_path["kind"], member.engine_path["members_per_chunk"]) == (kind, chunk)
        probed = {str(t): {str(k): s / k for k, s in per_step.items()} for t in path_choice.thread_counts()}
        assert member.engine_path["probe_s_per_member_step"] == probed
        single = train(cfg(epochs=2, seed=seed))
        assert member.config.seed == seed
        assert _max_diff(member.final_state, single.final_state) < 1e-5
        if kind == "loop":
            assert _max_diff(member.final_state, single.final_state) == 0


def test_population_path_must_be_known():
    with pytest.raises(ValueError, match="path: got 'fast'"):
        train_population(cfg(), [0, 1], path="fast")


def test_update_norms_and_epoch_distance_against_hand_computation():
    """Full-batch steps: one step per epoch, so the epoch distance is that step's update norm."""
    c = cfg(batch_size=320, epochs=3)
    run = train(c)
    assert len(run.update_norms) == 3
    for h, u in zip(run.history, run.update_norms):
        assert h["epoch_distance"] == pytest.approx(u, rel=1e-5)
    one = train(c.replace(epochs=1))
    flat = lambda s: torch.cat([s[k].flatten() for k in s])
    expected = (flat(one.final_state) - flat(one.initial_state)).norm().item()
    assert run.update_norms[0] == pytest.approx(expected, rel=1e-5)


def test_epoch_distance_is_bounded_by_the_summed_updates():
    run = train(cfg(epochs=2))
    steps = run.history[0]["steps"]
    assert len(run.update_norms) == 2 * steps
    assert 0 < run.history[0]["epoch_distance"] <= run.update_norms[:steps].sum() * (1 + 1e-6)


def test_target_loss_stops_at_the_first_epoch_below_target():
    run = train(cfg(stop="target_loss", target_loss=2.0, epochs=50))
    losses = run.metric("train_loss")
    assert run.stop_reason == "target_loss"
    assert losses[-1] <= 2.0 and (losses[:-1] > 2.0).all()


def test_early_stop_keeps_the_best_validation_weights():
    run = train(cfg(stop="early_stop", patience=2, epochs=60, lr=0.5, batch_size=16))
    val = run.metric("val_loss")
    assert run.best_epoch == int(np.argmin(val)) + 1
    if run.stop_reason == "early_stop":
        assert run.epochs_run == run.best_epoch + 2
    ds = load_data(run.config)
    with torch.no_grad():
        loss = F.cross_entropy(run.model()(ds.X_val), ds.y_val).item()
    assert loss == pytest.approx(val.min(), rel=1e-5)


def test_early_stop_restores_batchnorm_statistics_with_the_weights():
    """The restored model is the best epoch's whole state, running statistics included."""
    epochs = 8
    run = train(cfg(model="resnet_small", width=4, stop="early_stop", patience=2, epochs=epochs, lr=1.0,
                    batch_size=64, record_snapshots=tuple(range(1, epochs + 1))))
    best = run.epoch_snapshots[run.best_epoch]  # record_snapshots keeps every epoch's state
    assert any("running_mean" in k for k in run.final_state)
    assert all(torch.equal(run.final_state[k], best[k]) for k in run.final_state)


def test_a_stopped_member_takes_no_more_snapshots():
    # one cycle per epoch; members stop at epoch 7 or 8 (checked), so the old shared list would differ
    c = cfg(schedule="cyclic_cosine", snapshots=9, epochs=9, stop="target_loss", target_loss=2.0, lr=0.2)
    for member in train_population(c, [0, 1, 2, 3], path="stacked"):
        single = train(c.replace(seed=member.config.seed))
        assert member.snapshot_steps == single.snapshot_steps
        assert len(member.snapshots) == len(single.snapshots)


@pytest.mark.parametrize("model, mode", [("mlp", "inference"), ("conv1d", "grad")])
def test_written_out_steps_run_in_inference_mode_and_what_they_keep_is_ordinary(monkeypatch, model, mode):
    """Written-out steps run in inference mode (Engine.step_mode), autograd's in grad mode; what
    outlives a step (cycle snapshots, momentum buffers, norms) is an ordinary tensor that later code
    may update in place, wherever it was made."""
    modes = []
    step = Engine.step

    def spy(self, *args):
        modes.append("inference" if torch.is_inference_mode_enabled() else "grad" if torch.is_grad_enabled() else "none")
        return step(self, *args)
    monkeypatch.setattr(Engine, "step", spy)
    c = cfg(model=model, schedule="cyclic_cosine", snapshots=3, epochs=3, momentum=0.9)
    engine = Engine(c, [0, 1], stacked=True)
    runs = engine.run()
    assert set(modes) == {mode}
    kept = [v for r in runs for snap in r.snapshots for v in snap.values()] + engine.momentum_buf + engine.norms
    assert len(kept) > 3 * 2 and not any(t.is_inference() for t in kept)
    for t in kept:
        t.add_(0)


def breaks_the_rule(row, n_classes=10):
    """The rule of engine.diverged, restated: a non-finite loss or distance, or an exploded loss."""
    values = [v for k, v in row.items() if k.endswith("_loss") or k == "epoch_distance"]
    return not all(math.isfinite(v) for v in values) or row["train_loss"] > DIVERGENCE_LOSS_FACTOR * math.log(n_classes)


def test_divergence_is_data_not_an_error():
    run = train(cfg(lr=1e4, epochs=5))
    assert run.stop_reason == "diverged"
    assert breaks_the_rule(run.history[-1]) and not any(breaks_the_rule(h) for h in run.history[:-1])


def test_loss_explosion_with_finite_losses_is_diverged_D5():
    # The run: training loss 8524 then 6209, epoch distance inf, test loss 4e20; it used to
    # stop as max_epochs and be cached as a normal run.
    run = train(RunConfig(dataset="mnist1d", n_samples=1000, model="mlp", width=32, epochs=3, lr=1e4))
    assert run.stop_reason == "diverged" and run.epochs_run == 1
    assert math.isfinite(run.history[0]["train_loss"]) and run.history[0]["train_loss"] > 1000


@pytest.mark.parametrize("row, expected", [
    (dict(train_loss=2.3, val_loss=2.3, test_loss=2.3, epoch_distance=1.0), False),
    (dict(train_loss=0.1, val_loss=30.0, test_loss=30.0, epoch_distance=1.0), False),  # overfitting
    (dict(train_loss=20 * math.log(10) - 0.01, val_loss=1.0, epoch_distance=1.0), False),
    (dict(train_loss=20 * math.log(10) + 0.01, val_loss=1.0, epoch_distance=1.0), True),
    (dict(train_loss=1.0, val_loss=math.nan, epoch_distance=1.0), True),
    (dict(train_loss=1.0, val_loss=1.0, test_loss=math.inf, epoch_distance=1.0), True),
    (dict(train_loss=1.0, val_loss=1.0, epoch_distance=math.inf), True),
    (dict(train_loss=math.nan, val_loss=1.0, epoch_distance=1.0), True),
])
def test_divergence_rule_on_loss_explosion_and_non_finite_values_D5(row, expected):
    assert diverged({"epoch": 1, "epoch_time_s": 0.1, **row}, n_classes=10) is expected


def test_aggressive_healthy_run_is_not_diverged_D5():
    # the smoke setting at the cpu lr_grid's largest LR and smallest batch: spiky, but not diverged
    runs = train_population(RunConfig(dataset="mnist1d", n_samples=1000, model="mlp", width=32, lr=0.8,
                                      batch_size=16, epochs=5), [0, 1])
    assert [r.stop_reason for r in runs] == ["max_epochs"] * 2


def test_largest_seed_shuffles_every_epoch_within_int64_D3():
    last_epoch = 1_000_002  # epochs stay below the data-seed stride
    assert data_seed(MAX_SEED) + last_epoch < 2**63 <= data_seed(MAX_SEED + 1) + last_epoch
    assert sorted(epoch_permutation(MAX_SEED, last_epoch, 10).tolist()) == list(range(10))


def test_width_that_cannot_fit_in_memory_is_refused_before_allocating_D23():
    with pytest.raises(ConfigError, match=r"^width: got 1000000; one mlp run needs ~[\d,.]+ GB by estimate") as info:
        train(cfg(width=10**6))
    assert "\n" not in str(info.value)


def test_population_beyond_memory_is_refused_with_the_most_that_fit_D4():
    import re
    with pytest.raises(ConfigError, match=r"^seeds: got 100001 seeds; they need") as info:
        train_population(cfg(width=1024), range(100001))
    most = int(re.search(r"at most (\d+) seeds", str(info.value)).group(1))
    from lossscape.footprint import check_memory
    check_memory(cfg(width=1024), most, load_data(cfg()), EVAL_CHUNK)  # the bound it states passes
    with pytest.raises(ConfigError):
        check_memory(cfg(width=1024), most + 1, load_data(cfg()), EVAL_CHUNK)


def test_memory_estimate_builds_a_builtin_model_once_and_a_users_factory_every_time(monkeypatch):
    from lossscape import footprint
    built = []
    real = footprint.build_model
    monkeypatch.setattr(footprint, "build_model", lambda name, *a: built.append(name) or real(name, *a))
    ds = load_data(cfg())
    footprint._model_sizes.cache_clear()
    first = footprint.population_bytes(cfg(width=48), ds, EVAL_CHUNK)
    assert footprint.population_bytes(cfg(width=48), ds, EVAL_CHUNK) == first and built == ["mlp"]
    footprint.population_bytes(cfg(width=40), ds, EVAL_CHUNK)  # another shape is measured again
    assert built == ["mlp", "mlp"]
    user = "lossscape.models:mlp"  # a "package.module:factory" spec: its module may change under it
    footprint.population_bytes(cfg(model=user), ds, EVAL_CHUNK)
    footprint.population_bytes(cfg(model=user), ds, EVAL_CHUNK)
    assert built == ["mlp", "mlp", user, user]


def test_batch_larger_than_training_set_is_a_config_error():
    with pytest.raises(ConfigError, match=r"^batch_size: got 321; allowed: 1\.\.320"):
        train(cfg(batch_size=321))


def test_run_model_holds_final_weights_in_eval_mode():
    run = train(cfg(epochs=1))
    m = run.model()
    assert not m.training
    assert _max_diff({k: v for k, v in m.state_dict().items()}, run.final_state) == 0


@pytest.mark.parametrize("model", ["conv1d", "vgg_small", "resnet_small", "densenet_small"])
def test_every_model_trains_on_mnist1d(model):
    run = train(cfg(model=model, width=4, epochs=1, batch_size=64))
    assert math.isfinite(run.history[-1]["train_loss"])


def test_float64_runs():
    run = train(cfg(dtype="float64", epochs=1))
    assert all(v.dtype == torch.float64 for v in run.final_state.values())


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_a_stopped_member_keeps_its_weights_when_its_update_is_not_finite(momentum):
    """A diverged member of a stacked population stops while the others train on; its update may be
    inf or NaN by then, and must not reach its weights (masking by a multiply, inf * 0, made them
    NaN). Member 1's weights are blown up so that its loss and gradients are not finite."""
    c = cfg(momentum=momentum)
    engine = Engine(c, [0, 1], stacked=True)
    with torch.no_grad():
        for p in engine.strategy.params:
            p[1].fill_(1e30)
    stopped, trained = engine.strategy.state(1), engine.strategy.state(0)
    n = len(engine.y)
    order = engine.strategy.members(torch.stack([torch.randperm(n), torch.randperm(n)]))
    for j in range(3):
        norms, factor = engine.step(*engine.batch(order, j, c.batch_size), [c.lr] * engine.n_stages,
                                    torch.tensor([True, False]))
        assert math.isfinite(engine.strategy.combine(norms * factor)[0])
    assert all(torch.equal(stopped[k], v) for k, v in engine.strategy.state(1).items())
    assert not any(torch.equal(trained[k], v) for k, v in engine.strategy.state(0).items())


# -- continuations (cfg.init_from, GEO-9) ----------------------------------------------------------

def test_full_batch_continuation_equals_the_uninterrupted_run():
    """Oracle: full-batch gradient descent does not depend on the data order, so 2 epochs from the
    seeded init then 3 more from those weights are 5 epochs of the same descent."""
    n = len(load_data(cfg()).y_train)
    parent = train(cfg(batch_size=n, epochs=2, dtype="float64"))
    child_cfg = cfg(batch_size=n, epochs=3, dtype="float64", init_from=parent.config.to_json())
    child = train(child_cfg, init={0: parent.final_state})
    whole = train(cfg(batch_size=n, epochs=5, dtype="float64"))
    assert _max_diff(child.initial_state, parent.final_state) == 0
    assert _max_diff(child.final_state, whole.final_state) < 1e-10
    assert _max_diff(child.final_state, parent.final_state) > 1e-3  # it trained


def test_population_continuation_members_equal_single_continuations():
    parents = {s: train(cfg(seed=s)).final_state for s in (0, 1)}
    c = cfg(epochs=2, init_from=cfg().to_json())
    stacked = train_population(c, [0, 1], path="stacked", init=parents)
    for s, run in zip((0, 1), stacked):
        single = train(c.replace(seed=s), init=parents)
        assert _max_diff(run.initial_state, parents[s]) == 0
        assert _max_diff(run.final_state, single.final_state) < 1e-5


def test_continuation_weights_come_exactly_with_init_from():
    state = {0: train(cfg(epochs=1)).final_state}
    with pytest.raises(ValueError, match="init"):
        train(cfg(), init=state)  # weights without a parent in the config (and its cache key)
    with pytest.raises(ValueError, match="init"):
        train(cfg(init_from=cfg().to_json()))  # a parent without its weights
    with pytest.raises(ValueError, match="seeds \\[1\\]"):
        train_population(cfg(init_from=cfg().to_json()), [0, 1], init=state)
