"""FO: FreezeOut (CLAIMS.md, family FO; Brock et al. 2017 as source 004 reports it).

The claims are about models, not the profile's settings: grid `freezeout` names its own data and
optimizer, and each model trains at its default width. The primary setting is the reference
implementation's default (t0 = 0.8 before the cube, cubic, scaled rates; SGD with Nesterov momentum
0.9, lr 0.1, weight decay 1e-4), at a budget where the unfrozen baseline has plateaued (a rule
fixed before its pilot; the profile files give the pilot's numbers, and every FO result shows the
rule on the profile's own unfrozen runs). params.fo.secondary adds the README's "out of the box"
t0 = 0.5 with linear spacing as a second row. "Unfrozen" is the same config with freeze_t0 = 1:
every stage keeps the same cosine-annealed LR to the end and nothing freezes.

Time is measured in this session, never read from a cached run (issue 12): the engine's own step
(momentum, Nesterov, weight decay included) is timed at every frozen prefix of every FO model in
one interleaved sweep (lossscape.throughput.engine_step_times), and a run's training time is the
sum over its schedule's steps of the step time at that step's frozen prefix
(lossscape.step_cost.freezeout_time_ratio); each timed block gives one value, and a variant adds
the grid's evaluation passes (one per epoch).
"""
import numpy as np
import pytest

from lossscape import stats
from lossscape.claim_runs import FO3_MODEL, FO_MODELS, UNFROZEN_T0, fo_rows, freezeout_config
from lossscape.plateau import TAIL_SHARE, plateaued
from lossscape.report import figures
from lossscape.report.result import fmt
from lossscape.schedules import freezeout_fractions
from lossscape.step_cost import freezeout_flop_ratio, freezeout_time_ratio, stage_forward_flops, step_flops
from lossscape.throughput import engine_step_times, timing_context
from lossscape.data import load_data
from lossscape.models import init_model

from ._common import seed_trend

# Thresholds, fixed from CLAIMS.md and source 004 before any FO run:
# - FO1_SHARE: FreezeOut saves compute only in the backward of frozen stages, so the saving to
#   expect is the FLOP model's (lossscape.step_cost). On small models much of a step is per-step
#   overhead (Python, optimizer, BatchNorm) that freezing does not remove, so the claim is held to
#   half of the predicted saving: measured 1 - T_frozen / T_unfrozen >= 0.5 x (1 - FLOP ratio).
# - FO_REL_ERROR: "little or no accuracy loss" is the source's own envelope (the reference README:
#   "speedups below 20% should be within a 3% relative error envelope"): test error of FreezeOut
#   over the unfrozen model's, minus 1, below 0.03.
FO1_SHARE = 0.5
FO_REL_ERROR = 0.03
# Every FO test times steps in the session: under xdist each runs while no other test does.
pytestmark = pytest.mark.timing


def _paired_runs(store, profile, model, **changes):
    """(FreezeOut runs with `changes` to the grid's config, unfrozen runs), one of each per seed."""
    cfg = freezeout_config(profile, model, **changes)
    frozen, unfrozen = [], []
    for s in profile.grid("freezeout").seeds:
        frozen.append(store.get_or_train(cfg.replace(seed=s)))
        unfrozen.append(store.get_or_train(cfg.replace(seed=s, freeze_t0=UNFROZEN_T0)))
    return frozen, unfrozen


def _accuracy(run) -> float:
    return run.history[-1]["test_acc"]


def _relative_error(frozen, unfrozen) -> np.ndarray:
    """Per seed: FreezeOut's test error over the unfrozen twin's (same init and data order), minus 1."""
    return np.array([(1 - _accuracy(f)) / (1 - _accuracy(u)) - 1 for f, u in zip(frozen, unfrozen)])


_SWEEPS: dict = {}  # one timing sweep per profile in a session: FO-1, FO-2 and FO-3 read the same blocks


def _step_sweep(profile):
    """(StepTimes keyed (model, k frozen stages), stage count per model): every FO model's step at
    every frozen prefix, in one sweep of interleaved blocks, with one evaluation pass per block."""
    if profile.name not in _SWEEPS:
        p = profile.params["fo"]
        configs, frozen, stages = {}, {}, {}
        for model in FO_MODELS:
            cfg = freezeout_config(profile, model)
            ds = load_data(cfg)
            stages[model] = len(init_model(cfg, cfg.seed, ds.input_shape, ds.n_classes).stages)
            for k in range(stages[model]):
                configs[model, k], frozen[model, k] = cfg, k
        times = engine_step_times(configs, frozen=frozen, steps=p["step_steps"], repeats=p["step_repeats"],
                                  evaluate=True)
        _SWEEPS[profile.name] = (times, stages)
    return _SWEEPS[profile.name]


def _session_saving(profile, cfg) -> tuple[np.ndarray, np.ndarray]:
    """Per timed block: 1 - T_frozen / T_unfrozen of cfg's run (training steps), and the same with
    the run's evaluation passes added to both."""
    times, stages = _step_sweep(profile)
    model, n = cfg.model, stages[cfg.model]
    per_k = {k: times.step[model, k] for k in range(n)}
    total = cfg.epochs * times.steps_per_epoch[model, 0]
    ratio = freezeout_time_ratio(cfg, n, total, per_k)
    unfrozen = total * per_k[0]
    evaluation = cfg.epochs * times.evaluation[model, 0]
    return 1 - ratio, 1 - (ratio * unfrozen + evaluation) / (unfrozen + evaluation)


def _flop_ratio(cfg) -> float:
    """FLOPs of cfg's FreezeOut run over the same run unfrozen."""
    ds = load_data(cfg)
    flops = stage_forward_flops(init_model(cfg, cfg.seed, ds.input_shape, ds.n_classes), ds.input_shape)
    steps = cfg.epochs * -(-len(ds.y_train) // cfg.batch_size)
    return freezeout_flop_ratio(cfg, flops, steps)


def _plateau(profile, unfrozen) -> tuple[bool, str]:
    """The budget rule on the profile's own unfrozen runs (lossscape.plateau; pilot in the profile)."""
    gain_max = profile.params["fo"]["plateau_max_gain"]
    ok, gain = plateaued([r.metric("val_acc") for r in unfrozen], gain_max)
    cfg = unfrozen[0].config
    return ok, (f"budget rule: unfrozen {cfg.model}'s validation accuracy rose {gain:+.4f} over the last "
                f"{TAIL_SHARE:.0%} of its {cfg.epochs} epochs (mean of {len(unfrozen)} seeds; rule: < {gain_max:g}): "
                + ("plateaued" if ok else "NOT plateaued, so its accuracy comparison is of an unfinished model"))


def _budget_caveat(cfg) -> str:
    first = freezeout_fractions(2, cfg.freeze_t0, cfg.freeze_spacing)[0]
    return (f"budget {cfg.epochs} epochs of batch {cfg.batch_size} ({cfg.dataset} n_samples {cfg.n_samples}); at "
            f"t0 {cfg.freeze_t0:g} ({cfg.freeze_spacing}) the first stage freezes after {first:.1%} of it")


@pytest.fixture(params=["primary", "secondary"])
def fo_row(request, profile) -> dict:
    """FO-1's row: the grid's changes for it; listed before `claim`, so a profile without
    params.fo.secondary skips that row before its claim recorder exists."""
    changes = fo_rows(profile).get(request.param)
    if changes is None:
        pytest.skip(f"profile {profile.name} has no params.fo.{request.param} row")
    return changes


def _comparison_table(cfg, frozen, unfrozen, saving, saving_eval) -> dict:
    a_f, a_u = np.array([_accuracy(r) for r in frozen]), np.array([_accuracy(r) for r in unfrozen])
    return {"title": f"{cfg.model}: FreezeOut (t0 {cfg.freeze_t0:g}, {cfg.freeze_spacing}) vs unfrozen, "
                     f"{len(frozen)} seeds; times from this session's step sweep",
            "columns": ["", "test accuracy, mean", "relative error - 1, mean", "time saving (steps), median",
                        "time saving (with evaluation), median", "FLOP saving"],
            "rows": [["unfrozen", fmt(a_u.mean()), "0", "0", "0", "0"],
                     ["FreezeOut", fmt(a_f.mean()), fmt(_relative_error(frozen, unfrozen).mean()),
                      fmt(np.median(saving)), fmt(np.median(saving_eval)), fmt(1 - _flop_ratio(cfg))]]}


def _fields(profile, frozen, unfrozen) -> dict:
    ok, rule = _plateau(profile, unfrozen)
    return dict(seeds=[r.config.seed for r in frozen], configs=[frozen[0].config.to_json(), unfrozen[0].config.to_json()],
                caveats=[rule, _budget_caveat(frozen[0].config), timing_context(frozen[0].config.device)])


@pytest.mark.claim("FO-1", design=("paired", "freezeout"))
@pytest.mark.parametrize("part", ["wall_time", "accuracy"])
@pytest.mark.parametrize("model", FO_MODELS[:2])  # resnet_small, densenet_small
def test_fo1_freezeout_saves_time_at_little_accuracy_cost(fo_row, claim, store, profile, model, part):
    """FO-1: freezing layers progressively (layer i stops at t_i, layer-wise cosine annealing
    lr_i(t) = lr_i(0)/2 (1 + cos(pi t / t_i)), lr_i(0) = lr0 / t_i when scaled, t_i spaced from
    t0 to 1, cubic) saves wall time with little or no accuracy loss.

    Source 004 (Brock et al.): up to ~20% faster for DenseNet (<= 3% accuracy cost) and ResNet (none).
    Scientific comparison: FreezeOut vs the same model unfrozen, same epochs, same seed (init and
    data order), grid `freezeout`. Rows: primary = the grid's (the reference default: t0 0.8
    pre-cubed, cubic, scaled); secondary = params.fo.secondary (t0 0.5, linear: the README's "out
    of the box" setting), skipped where the profile has none. Two parts per model and row:
    - wall_time: per timed block of this session's sweep, the saving 1 - T_frozen / T_unfrozen of
      the run's training steps (module docstring); mean >= FO1_SHARE x the FLOP model's saving;
      exact sign-flip test of the per-block savings against that threshold. The saving with the
      evaluation passes added is in the table.
    - accuracy: per seed, FreezeOut's test error over the unfrozen twin's, minus 1; mean below
      FO_REL_ERROR (the source's 3% relative error envelope); exact sign-flip test against it.
    Caveats: every result names the budget rule's outcome on these unfrozen runs; timing blocks
    are repeats in one process (timing noise, not machine variation).
    """
    cfg = freezeout_config(profile, model, **fo_row)
    saving, saving_eval = _session_saving(profile, cfg)
    label = f"{model} t0 {cfg.freeze_t0:g} {cfg.freeze_spacing}"
    if part == "wall_time":  # timed in the session from the schedule alone: no run needs training
        required = FO1_SHARE * (1 - _flop_ratio(cfg))
        n = _step_sweep(profile)[1][model]
        figures.freeze_times(claim.figure_path("freeze_times.png"), [f"stage {i}" for i in range(n)],
                             freezeout_fractions(n, cfg.freeze_t0, cfg.freeze_spacing))
        rows = [["time saving (training steps), median", fmt(np.median(saving))],
                ["time saving (with one evaluation pass per epoch), median", fmt(np.median(saving_eval))],
                ["FLOP model's saving", fmt(1 - _flop_ratio(cfg))]]
        claim.check(stats.threshold_test(saving, required, "greater", effect_name="wall-time saving"),
                    label=f"{label} (FLOP model predicts {fmt(1 - _flop_ratio(cfg))}; claimed >= {fmt(required)})",
                    tables=[{"title": f"{model}: FreezeOut run time over unfrozen, {len(saving)} timed blocks",
                             "columns": ["", "value"], "rows": rows}],
                    caveats=[_budget_caveat(cfg), timing_context(cfg.device)], seeds=[cfg.seed], configs=[cfg.to_json()])
        return
    frozen, unfrozen = _paired_runs(store, profile, model, **fo_row)
    figures.accuracy_vs_speedup(claim.figure_path("accuracy_vs_speedup.png"), [1.0, float(1 / (1 - np.median(saving)))],
                                [np.mean([_accuracy(r) for r in runs]) for runs in (unfrozen, frozen)],
                                labels=["unfrozen", f"FreezeOut t0 {cfg.freeze_t0:g} {cfg.freeze_spacing}"])
    claim.check(stats.threshold_test(_relative_error(frozen, unfrozen), FO_REL_ERROR, "less",
                                     effect_name="relative test error - 1"),
                label=f"{label}: FreezeOut test error / unfrozen - 1 (claimed < {FO_REL_ERROR:g})",
                tables=[_comparison_table(cfg, frozen, unfrozen, saving, saving_eval)], **_fields(profile, frozen, unfrozen))


@pytest.mark.claim("FO-2", design=("paired", "freezeout"))
@pytest.mark.parametrize("part", ["accuracy", "wall_time"])
def test_fo2_freezeout_gives_vgg_less_than_resnet_and_densenet(claim, store, profile, part):
    """FO-2: FreezeOut gives no benefit for VGG-style networks.

    Source 004: "no effect" on VGG, beside the gains on ResNet and DenseNet (FO-1). Read, fixed
    before running, as the contrast the source draws between architectures (issue 12: "no benefit"
    judged on VGG alone was carried by an untrained VGG): at the primary setting, VGG gets less from
    FreezeOut than ResNet and DenseNet do. Two parts (two results):
    - accuracy: per seed, VGG's relative test error change (FO-1's statistic) minus the mean of
      ResNet's and DenseNet's for the same seed; claimed > 0 (VGG pays more); exact sign-flip test.
    - wall_time: per timed block of the session's sweep, VGG's saving minus the mean of ResNet's
      and DenseNet's (all three timed in the same block); claimed < 0 (VGG saves less).
    Caveats: vgg_small has no BatchNorm; each model's budget-rule outcome is in the caveats.
    """
    vgg, others = FO_MODELS[2], FO_MODELS[:2]
    cfgs = {m: freezeout_config(profile, m) for m in FO_MODELS}
    savings = {m: _session_saving(profile, cfgs[m]) for m in FO_MODELS}
    columns = ["model", "time saving (steps), median", "time saving (with evaluation), median", "FLOP saving"]
    rows = [[m, fmt(np.median(savings[m][0])), fmt(np.median(savings[m][1])), fmt(1 - _flop_ratio(cfgs[m]))]
            for m in FO_MODELS]
    caveats = [_budget_caveat(cfgs[vgg]), timing_context(cfgs[vgg].device)]
    seeds = [cfgs[vgg].seed]
    if part == "wall_time":  # the session's sweep times all three models in the same blocks
        contrast = savings[vgg][0] - np.mean([savings[m][0] for m in others], axis=0)
        test = stats.threshold_test(contrast, 0.0, "less", effect_name="time saving, VGG - others")
        label = "VGG's time saving minus ResNet's and DenseNet's (claimed < 0)"
    else:
        runs = {m: _paired_runs(store, profile, m) for m in FO_MODELS}
        rel = {m: _relative_error(*runs[m]) for m in FO_MODELS}
        columns[1:1] = ["unfrozen test accuracy", "relative error - 1, mean"]
        rows = [[r[0], fmt(np.mean([_accuracy(u) for u in runs[r[0]][1]])), fmt(rel[r[0]].mean()), *r[1:]] for r in rows]
        caveats[:0] = [_plateau(profile, runs[m][1])[1] for m in FO_MODELS]
        seeds = [r.config.seed for r in runs[vgg][0]]
        contrast = rel[vgg] - np.mean([rel[m] for m in others], axis=0)
        test = stats.threshold_test(contrast, 0.0, "greater", effect_name="relative error change, VGG - others")
        label = "VGG's relative test error change minus ResNet's and DenseNet's (claimed > 0)"
    claim.check(test, label=label, caveats=caveats, seeds=seeds, configs=[cfgs[m].to_json() for m in FO_MODELS],
                tables=[{"title": "FreezeOut at the primary setting, per model", "columns": columns, "rows": rows}])


@pytest.mark.claim("FO-3")
@pytest.mark.parametrize("part", ["step_time", "accuracy"])
def test_fo3_frozen_share_speeds_steps_and_early_freezing_costs_accuracy(claim, store, profile, part):
    """FO-3: a frozen layer costs no backward pass, so training speeds up with the frozen share;
    freezing too early costs accuracy.

    Source 004: "freezing half the network" halves the backward, and freezing too early hurts.
    Model: resnet_small, grid `freezeout` (as FO-1). Two parts (two results):
    - step_time: seconds per step of the engine's own step (Nesterov momentum and weight decay
      included) with the first k stages frozen, k = 0 .. n-1 (the last stage always trains), from
      the session's interleaved sweep (module docstring). Claimed: decreasing in k (stratified
      Kendall trend test, each interleaved block a block; effect = time at the largest k over
      k = 0). The FLOP model's step cost per k is in the table.
    - accuracy: test accuracy after the grid's epochs at each t0 in params.fo.t0_levels (1.0 =
      unfrozen; the grid's spacing), seeds of the grid. Claimed: increasing in t0, i.e. falling as
      t0 shrinks (stratified Kendall trend test, seeds as blocks; effect = mean at the largest t0
      minus the smallest).
    """
    model = FO3_MODEL  # resnet_small
    cfg = freezeout_config(profile, model)
    if part == "step_time":
        times, stages = _step_sweep(profile)
        ds = load_data(cfg)
        flops = stage_forward_flops(init_model(cfg, cfg.seed, ds.input_shape, ds.n_classes), ds.input_shape)
        per_k = {k: times.step[model, k] for k in range(stages[model])}
        rows = [[k, fmt(step_flops(flops, k) / step_flops(flops, 0)), fmt(np.median(t) * 1e3),
                 fmt(np.median(t) / np.median(per_k[0]))] for k, t in per_k.items()]
        claim.check(seed_trend(per_k, "decreasing"),  # each interleaved block times every k: a block
                    label=f"{model} step time, {stages[model] - 1} frozen stages / none",
                    tables=[{"title": f"{model} step time vs frozen stages (batch {cfg.batch_size}, {cfg.device})",
                             "columns": ["frozen stages", "FLOP ratio to none frozen", "median step (ms)",
                                         "time ratio to none frozen"], "rows": rows}],
                    caveats=[timing_context(cfg.device)], seeds=[cfg.seed], configs=[cfg.to_json()])
        return
    levels = sorted(profile.params["fo"]["t0_levels"])
    runs = {t0: _paired_runs(store, profile, model, freeze_t0=t0)[0] for t0 in levels}
    acc = {t0: np.array([_accuracy(r) for r in rs]) for t0, rs in runs.items()}
    rows = [[f"{t0:g}", fmt(a.mean())] for t0, a in acc.items()]
    claim.check(seed_trend(acc, "increasing", effect="difference"),
                label=f"{model} test accuracy, t0 {levels[-1]:g} - t0 {levels[0]:g}",
                tables=[{"title": f"{model}: test accuracy vs t0 ({cfg.freeze_spacing})",
                         "columns": ["t0", "test accuracy, mean"], "rows": rows}],
                caveats=[_plateau(profile, runs[max(levels)])[1], _budget_caveat(runs[levels[0]][0].config)],
                seeds=[r.config.seed for r in runs[levels[0]]], configs=[rs[0].config.to_json() for rs in runs.values()])
