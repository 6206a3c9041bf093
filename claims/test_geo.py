"""GEO: where minimizers sit and how sharp they are (CLAIMS.md, family GEO).

Grids (lossscape/profiles/). `minimizer` trains every batch size to the same target training
loss (0.01 on the cpu profile: a real minimizer), so GEO-1 and GEO-5..8 compare minimizers that fit
the data equally well; a run that stopped for any other reason is named in a caveat, and each
reports the gradient gate (claims/_common.gradient_gate). `budget` trains a fixed number of epochs
at the same LR: GEO-2 and GEO-3 are about the training dynamics themselves, and GEO-4 takes its
trained model from it. GEO-9 continues `minimizer_pairs`' largest-batch minimizers (grid
`escape`). Every costly number goes through `measure`, so a warm re-run only re-renders.
"""
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lossscape import geometry as g
from lossscape import stats
from lossscape.report import figures
from lossscape.stats import Verdict
from lossscape.data import load_data

from ._common import gradient_gate, keskar_first_order, keskar_phi, minimizer_caveats, per_batch, seed_trend

# GEO-4: at most this many training examples (the largest power of two that fits), so the nested
# batch sizes 1, 2, 4, ... end with one batch holding them all; 1024 x 23k per-example gradients
# of the cpu model take ~100 MB.
GEO4_MAX_EXAMPLES = 1024
# GEO-4's hypothesis check: examples whose gradients it reorders (256 x ~23k float64 = 47 MB per seed)
GEO4_PROPERTY_EXAMPLES = 256
# GEO-4: the bound is a theorem, so a merge may raise the mean norm only by float64 rounding.
GEO4_RELATIVE_TOLERANCE = 1e-9
# GEO-5: alpha from -1 to 2 in steps of 0.05 (Keskar et al.'s Fig. 3 range); the loss rise is
# taken within +-0.25 of each end, a quarter of the distance between the minimizers: wide enough
# to average over 10 points, narrow enough to stay on the minimizer's own side of the path.
GEO5_ALPHAS = np.round(np.linspace(-1.0, 2.0, 61), 10)
GEO5_DELTA = 0.25
# GEO-6: Keskar et al.'s random subspace has p = 100 columns; the matrix is seeded, so every
# minimizer is probed in the same subspace.
GEO6_SUBSPACE_DIM = 100
# GEO-7: Li et al. plot filter-normalized coordinates in [-1, 1]; at 1 every neuron's weights move
# by their own norm, far outside the basin, so the statistic averages the rise over the disc of
# radius 0.5 (the inner half of the plot). Fixed before any surface was computed.
GEO7_EXTENT = 1.0
GEO7_DISC_RADIUS = 0.5
GEO7_DIRECTION_SEEDS = (0, 1)


def _data(grid, name="train"):
    """(X, y) of a split of the grid's dataset (every config of a grid shares it)."""
    ds = load_data(next(iter(grid.configs.values())))
    return getattr(ds, f"X_{name}"), getattr(ds, f"y_{name}")


def _cis(values: dict) -> dict:
    return {bs: stats.mean_ci(v) for bs, v in values.items()}


def _mean_sd(v) -> str:
    return f"{np.mean(v):.3g} ± {np.std(v, ddof=1):.2g}"


# -- GEO-1 -----------------------------------------------------------------------------------------

@pytest.mark.claim("GEO-1", design=("trend", "minimizer"))
def test_geo1_larger_batches_end_closer_to_init(claim, grids, setting, measure):
    """GEO-1: larger batches end closer to the initial weights, for the whole network and layer by layer.

    Source 000/001: Euclidean distance from init falls with batch size (bs 32..256), monotone
    except bs 128 further than bs 64.
    Scientific parameter: batch size. Fixed: LR (the setting's), SGD without momentum, model, data;
    each seed's runs start from the same initial weights at every batch size.
    Stop rule: the target training loss (grid `minimizer`), so every distance is that of a
    minimizer fitting the training set equally well; a fixed epoch budget would instead compare a
    converged small batch with a large batch that has barely moved.
    Statistic: ||w_final - w_init|| over all parameters; trend test, claimed decreasing. Per layer
    (weights and bias of one module together): the same distance in a table with a descriptive
    Kendall tau (unadjusted p-values; the verdict rests on the total only).
    Caveat: the target is checked once per epoch, so runs end below it by different amounts. The
    gradient gate (claims/_common.gradient_gate) is reported beside the result.
    """
    grid = grids(setting, "minimizer")
    layers = {bs: [g.group_by_layer(g.layer_distances(r.initial_state, r.final_state)) for r in runs]
              for bs, runs in grid.by_batch().items()}
    total = per_batch(grid, lambda r: g.distance_from_init(r.initial_state, r.final_state))
    names = list(next(iter(layers.values()))[0])
    rows = []
    for name in names:
        per_layer = {bs: np.array([d[name] for d in ds]) for bs, ds in layers.items()}
        trend = seed_trend(per_layer, "decreasing")
        rows.append([name, *(_mean_sd(v) for v in per_layer.values()), f"{trend.statistic:.2f}", f"{trend.p_value:.2g}"])
    rows.append(["all parameters", *(_mean_sd(v) for v in total.values()), "", ""])
    figures.layer_distances(claim.figure_path("layer_distances.png"),
                            {bs: {name: float(np.mean([d[name] for d in ds])) for name in names}
                             for bs, ds in layers.items()})
    gate, gate_caveats = gradient_gate(grid, measure, *_data(grid))
    claim.check(seed_trend(total, "decreasing"), label="distance from init",
                tables=[{"title": "distance from init per layer (mean ± s.d. over seeds); Kendall tau vs batch "
                                  "size with its one-sided permutation p (descriptive, unadjusted)",
                         "columns": ["layer", *(f"bs {bs}" for bs in total), "tau", "p"], "rows": rows}, gate],
                caveats=[*minimizer_caveats(grid), *gate_caveats],
                seeds=list(grid.spec.seeds), configs=grid.config_labels())


# -- GEO-2 -----------------------------------------------------------------------------------------

# GEO-2's ratio part. Burn-in: the first epoch, fixed before the statistic was computed: it starts
# from the random initialization, where every batch size takes its largest steps (a transient all
# runs share, not "during training"), and issue 12 found the straight-line slope rode on it.
# Horizon: the early-stopping horizon of the smallest batch, i.e. its best-validation epoch within
# the budget (the sources train to their early-stopping minimum); the shortest over seeds, so every
# seed contributes the same epochs, and at least GEO2_MIN_EPOCHS after the burn-in.
GEO2_BURN_IN = 1
GEO2_MIN_EPOCHS = 5


@pytest.mark.claim("GEO-2", design=("trend", "budget"))
@pytest.mark.parametrize("part", ["mean_epoch_distance", "ratio_trend"])
def test_geo2_larger_batches_travel_less_per_epoch(claim, grids, setting, part):
    """GEO-2: larger batches travel a shorter distance per epoch; the small/large ratio grows during training.

    Source 001: epoch distance 0.15-0.4 (bs 32) vs 0.02-0.04 (bs 256) (000 prints 0.2-0.4).
    Scientific parameter: batch size. Fixed: LR, SGD without momentum, model, data.
    Stop rule: the fixed epoch budget (grid `budget`, 11 seeds): the claim is about the same epochs
    of training, so every batch size is compared epoch by epoch.
    The claim has two parts, so the test gives two results (two Holm hypotheses):
    - `mean_epoch_distance`: per run, the mean over the budget's epochs of ||w_end - w_start||;
      trend test, claimed decreasing.
    - `ratio_trend`: per seed, the ratio of the smallest batch's epoch distance to the largest's
      (same seed, hence same init), over the epochs after a burn-in of GEO2_BURN_IN = 1 epoch up to
      the early-stopping horizon H (the smallest batch's best-validation epoch within the budget,
      the shortest over seeds, at least 5 epochs after the burn-in); claimed increasing in the
      epoch: stratified Kendall trend test with the seeds as blocks (ratios permuted over epochs
      within each seed), effect = mean ratio at H over the mean at the first epoch after burn-in.
      A rank statistic within seeds: no single epoch can carry it, unlike the former least-squares slope.
    Caveat: the budget's epochs bound the horizon; where the smallest batch's validation loss was
    still falling at the budget's end, the horizon is censored there (said in a caveat).
    """
    grid = grids(setting, "budget")
    by_batch = grid.by_batch()
    common = dict(seeds=list(grid.spec.seeds), configs=grid.config_labels())
    if part == "mean_epoch_distance":
        figures.training_curves(claim.figure_path("epoch_distance.png"),
                                {bs: np.array([r.metric("epoch_distance") for r in runs]) for bs, runs in by_batch.items()},
                                ylabel=r"distance per epoch $\|w_{end} - w_{start}\|$", logy=True)
        values = per_batch(grid, lambda r: r.metric("epoch_distance").mean())
        claim.check(seed_trend(values, "decreasing"), label="mean distance per epoch", **common)
        return
    small, large = min(by_batch), max(by_batch)
    ratio = np.array([a.metric("epoch_distance") / b.metric("epoch_distance")
                      for a, b in zip(by_batch[small], by_batch[large])])  # (seeds, epochs)
    n_epochs = ratio.shape[1]
    best = np.array([int(np.argmin(r.metric("val_loss"))) + 1 for r in by_batch[small]])
    horizon = min(max(int(best.min()), GEO2_BURN_IN + GEO2_MIN_EPOCHS), n_epochs)
    epochs = np.arange(GEO2_BURN_IN + 1, horizon + 1)
    window = ratio[:, epochs - 1]
    figures.ratio_over_epochs(claim.figure_path("ratio_over_epochs.png"), np.arange(1, n_epochs + 1), ratio,
                              ylabel=f"epoch distance, bs {small} / bs {large}")
    result = stats.trend_test(np.tile(epochs, len(window)), window.ravel(), "increasing",
                              blocks=np.repeat(np.arange(len(window)), len(epochs)))
    caveats = [f"horizon: epochs {epochs[0]}-{horizon} (burn-in {GEO2_BURN_IN}; bs {small}'s best-validation epoch "
               f"per seed {best.min()}-{best.max()} within the budget's {n_epochs})"]
    if np.any(best == n_epochs):
        caveats.append(f"bs {small}'s validation loss was still falling at the budget's last epoch for some seeds, so "
                       f"their early-stopping horizon is censored at {n_epochs}")
    claim.check(result, label=f"epoch-distance ratio bs {small}/bs {large} over epochs {epochs[0]}-{horizon} (mean "
                              f"{window[:, 0].mean():.3g} -> {window[:, -1].mean():.3g}):",
                caveats=caveats, **common)


# -- GEO-3 -----------------------------------------------------------------------------------------

def _nominal_step_norms(run, n_train: int) -> np.ndarray:
    """The run's update norms without each epoch's ragged last step: that step averages only
    n_train mod bs examples, so it is not an update at the nominal batch size."""
    steps = run.history[0]["steps"]
    norms = run.update_norms.reshape(-1, steps)  # (epochs, steps): one batch size throughout
    return (norms[:, :-1] if n_train % run.config.batch_size else norms).ravel()


@pytest.mark.claim("GEO-3", design=("trend", "budget"))
def test_geo3_larger_batches_take_smaller_steps(claim, grids, setting):
    """GEO-3: each step's update is smaller for larger batches.

    Source 000/001: median step norm 3.3e-3 (bs 32) vs 1.5e-3 (bs 256).
    Scientific parameter: batch size. Fixed: LR (so ||delta w|| = lr ||g_batch||), SGD without
    momentum, model, data.
    Stop rule: the fixed epoch budget (grid `budget`); the statistic is the median over all of a
    run's steps of ||delta w||, excluding each epoch's ragged last step when the batch size does
    not divide the training set; trend test, claimed decreasing.
    Caveat: after the same epochs a larger batch is less trained (a larger full-batch gradient),
    which works against the claim.
    """
    grid = grids(setting, "budget")
    n_train = len(_data(grid)[1])
    norms = {bs: [_nominal_step_norms(r, n_train) for r in runs] for bs, runs in grid.by_batch().items()}
    figures.update_norm_histograms(claim.figure_path("update_norms.png"),
                                   {bs: np.concatenate(v) for bs, v in norms.items()})
    medians = {bs: np.array([np.median(v) for v in vs]) for bs, vs in norms.items()}
    claim.check(seed_trend(medians, "decreasing"), label="median update norm",
                caveats=["after the same epochs a larger batch is less trained (a larger full-batch gradient), "
                         "which works against the claim",
                         f"each epoch's ragged last step ({n_train} mod bs examples) is left out for the batch "
                         f"sizes that do not divide the {n_train} training examples"],
                seeds=list(grid.spec.seeds), configs=grid.config_labels())


# -- GEO-4 -----------------------------------------------------------------------------------------

def _nested_update_norms(model, X, y, batch_sizes, lr) -> list[float]:
    # float64 once: mean_batch_update_norm would otherwise convert the whole matrix at every size
    grads = g.per_example_grads(model, X, y).double()
    return [g.mean_batch_update_norm(grads, b, lr) for b in batch_sizes]


@pytest.mark.claim("GEO-4", check=True)
def test_geo4_mean_update_norm_never_grows_when_batches_merge(claim, grids, setting, measure):
    """GEO-4: the triangle-inequality bound on real per-example gradients.

    Source 000/001: for per-example gradients a, b, (|a| + |b|)/2 >= |a + b|/2, equality only for
    a and b pointing the same way; so for n vectors the mean update shrinks as batches grow.
    A `verified` check, outside Holm: the bound is a theorem for every set of vectors, so seeds add
    no evidence and a p-value would be meaningless; the check can still fail, on a wrong gradient
    or a wrong norm. The property for any vectors is tested with hypothesis in
    tests/test_geometry_updates.py, and on these gradients by the next test.
    Setting: each seed's final weights of the smallest batch size in grid `budget` (a model
    trained as the sources train), the first 2^k training examples (k the largest with
    2^k <= min(n_train, 1024)), batch sizes 1, 2, 4, ..., 2^k as consecutive, nested blocks of
    those examples; mean_batch_update_norm at the setting's LR.
    Verified when, for every seed, every merge leaves the mean update norm no larger (relative
    tolerance 1e-9, float64 rounding) and the update at the largest batch is strictly smaller than
    at batch 1 (real gradients are not collinear); failed otherwise. The report also gives how far
    the shrinkage sits between the collinear bound (no shrinkage) and independent noise (1/sqrt(b)).
    """
    grid = grids(setting, "budget")
    runs = grid.by_batch()[min(grid.batch_sizes)]
    X, y = _data(grid)
    n = 2 ** int(np.log2(min(len(y), GEO4_MAX_EXAMPLES)))
    sizes = [2**k for k in range(int(np.log2(n)) + 1)]
    norms = np.array([
        measure(r, _nested_update_norms, X[:n], y[:n], batch_sizes=sizes, lr=r.config.lr) for r in runs])  # (seeds, batch sizes)
    growth = norms[:, 1:] / norms[:, :-1] - 1.0
    bound_holds = bool(np.all(growth <= GEO4_RELATIVE_TOLERANCE))
    shrinks = bool(np.all(norms[:, -1] < norms[:, 0] * (1 - GEO4_RELATIVE_TOLERANCE)))
    shrink = norms[:, -1] / norms[:, 0]
    figures.metric_vs_batch(claim.figure_path("update_norm_vs_batch.png"),
                            {b: norms[:, i] for i, b in enumerate(sizes)},
                            ylabel=f"mean batch-update norm (lr {runs[0].config.lr:g})", logy=True)
    rows = [[b, _mean_sd(norms[:, i]), f"{np.mean(norms[:, i] / norms[:, 0]):.3g}", f"{b ** -0.5:.3g}"]
            for i, b in enumerate(sizes)]
    claim.check(
        Verdict.VERIFIED if bound_holds and shrinks else Verdict.FAILED,
        measured_text=(f"mean update norm at batch {n} / batch 1: {shrink.mean():.3g} (seeds {shrink.min():.3g}-"
                       f"{shrink.max():.3g}; collinear gradients would give 1, independent noise "
                       f"1/sqrt({n}) = {n ** -0.5:.3g}); largest relative change at a merge {growth.max():+.2g} "
                       f"(tolerance +{GEO4_RELATIVE_TOLERANCE:g})"),
        method="deterministic check of the bound on every seed, every merge",
        n_seeds=len(runs),
        tables=[{"title": f"mean batch-update norm over {n} training examples (mean ± s.d. over seeds)",
                 "columns": ["batch size", "mean update norm", "ratio to batch 1", "1/sqrt(b)"], "rows": rows}],
        details={"batch_sizes": sizes, "norms": norms.tolist(), "bound_holds": bound_holds, "shrinks": shrinks},
        seeds=list(grid.spec.seeds), configs=[grid.configs[(min(grid.batch_sizes), grid.lrs[0])].to_json()])


@st.composite
def _orderings_and_merges(draw, n: int):
    """An ordering of n examples, a batch size b and a merge factor k with b * k <= n: batches of
    b consecutive examples of that ordering, merged k at a time (a nested partition)."""
    order = draw(st.permutations(range(n)))
    b = draw(st.integers(1, n // 2))
    k = draw(st.integers(2, n // b))
    return np.array(order), b, k


@pytest.mark.claim("GEO-4", check=True)
def test_geo4_bound_holds_for_any_partition_of_real_gradients(claim, grids, setting):
    """GEO-4 as a property of the trained runs' real per-example gradients (hypothesis).

    For each seed's gradients (the smallest batch of grid `budget`, as the previous test, on the
    first GEO4_PROPERTY_EXAMPLES training examples), hypothesis draws an ordering of the examples, a batch size b and a merge
    factor k; merging k consecutive batches of b into one of b * k must not raise the mean
    batch-update norm (both computed over the same b * k * floor(n / (b k)) leading examples, so
    the merge compares like with like; relative tolerance 1e-9). `--hypothesis-profile thorough`
    draws 1000 cases per seed instead of 50. A `verified` check: a counterexample fails it and
    hypothesis prints the ordering and partition.
    """
    grid = grids(setting, "budget")
    runs = grid.by_batch()[min(grid.batch_sizes)]
    X, y = _data(grid)
    n = min(len(y), GEO4_PROPERTY_EXAMPLES)
    cases = []
    for run in runs:  # one seed's gradients in memory at a time
        seed_grads = g.per_example_grads(run.model(), X[:n], y[:n]).double()

        @given(_orderings_and_merges(n))
        @settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
        def merging_never_raises_the_mean_update(case):
            order, b, k = case
            used = seed_grads[torch.as_tensor(order[: (n // (b * k)) * b * k])]
            before, after = g.mean_batch_update_norm(used, b), g.mean_batch_update_norm(used, b * k)
            cases.append(1)
            assert after <= before * (1 + GEO4_RELATIVE_TOLERANCE), (b, k, before, after)

        merging_never_raises_the_mean_update()
    claim.check(Verdict.VERIFIED, measured_text=f"{len(cases)} drawn orderings and nested partitions of "
                                                f"{n} real per-example gradients over {len(runs)} seeds: "
                                                "no merge raised the mean update norm",
                method="hypothesis property check on the trained runs' per-example gradients", n_seeds=len(runs),
                seeds=list(grid.spec.seeds))


# -- GEO-5 -----------------------------------------------------------------------------------------

def _interpolation(model, X, y, to, alphas):
    """The loss along the line from `model` to run `to`'s final weights, at `alphas`."""
    return g.linear_interpolation(model, to.model(), X, y, alphas)


def _rise_around(curve: np.ndarray, center: float) -> float:
    """Mean of f(a) - f(center) over the alphas within GEO5_DELTA of center, center excluded."""
    near = (np.abs(GEO5_ALPHAS - center) <= GEO5_DELTA + 1e-9) & (GEO5_ALPHAS != center)
    return float(np.mean(curve[near] - curve[GEO5_ALPHAS == center]))


@pytest.mark.claim("GEO-5", design=("paired", "minimizer_pairs"))
def test_geo5_loss_rises_more_steeply_around_the_large_batch_minimizer(claim, grids, setting, measure):
    """GEO-5: along the line joining them, the loss rises more steeply around the large-batch minimizer.

    Source 000/001 (after Keskar et al. 2017, Fig. 3): f((1-a) x_s + a x_l) for a in [-1, 2] is
    flat around a = 0 (small batch) and steep around a = 1 (large batch); a plot only.
    Scientific parameter: batch size, its two extremes. Fixed: LR, SGD without momentum, model,
    data; x_s and x_l share their seed, hence their initial weights.
    Stop rule: the target training loss (grid `minimizer_pairs`: `minimizer`'s runs at its two
    extreme batch sizes, with 11 seeds instead of 5, because 5 pairs cannot reach p < alpha / m
    under a sign-flip test whatever the data), so both ends fit the training set equally well.
    Statistic (fixed before running): for each seed, rise(c) = mean of f(a) - f(c) over the 10
    alphas with 0 < |a - c| <= 0.25, on the training loss; one-sided paired sign-flip test of
    rise(1) > rise(0) over seeds, BCa CI of the mean difference (a difference, not a ratio: a rise
    towards the other minimizer may be negative). The validation curves are in the figure and table.
    Caveat: with n seeds a paired sign-flip test cannot give p below 2^-n (the report says so
    when that floor exceeds alpha/m).
    """
    grid = grids(setting, "minimizer_pairs")
    by_batch = grid.by_batch()
    small, large = min(by_batch), max(by_batch)
    curves = {}
    for split in ("train", "val"):
        X, y = _data(grid, split)
        curves[split] = np.array([measure(a, _interpolation, X, y, to=b, alphas=GEO5_ALPHAS)
                                  for a, b in zip(by_batch[small], by_batch[large])])  # (seeds, alphas)
    gate, gate_caveats = gradient_gate(grid, measure, *_data(grid))
    rises = {(split, c): np.array([_rise_around(curve, c) for curve in curves[split]])
             for split in curves for c in (0.0, 1.0)}
    figures.interpolation_curves(claim.figure_path("interpolation.png"), GEO5_ALPHAS, curves["train"], curves["val"],
                                 ends=(f"bs {small}", f"bs {large}"))
    rows = [[seed, *(f"{rises[(split, c)][i]:.3g}" for split in curves for c in (0.0, 1.0))]
            for i, seed in enumerate(grid.spec.seeds)]
    claim.check(stats.two_group_test(rises[("train", 1.0)], rises[("train", 0.0)], "greater", paired=True,
                                     effect="difference"),
                label=f"training-loss rise within ±{GEO5_DELTA:g} of bs {large} minus of bs {small}",
                tables=[{"title": f"mean loss rise within ±{GEO5_DELTA:g} of each end, per seed",
                         "columns": ["seed", f"train, bs {small} (a=0)", f"train, bs {large} (a=1)",
                                     f"val, bs {small} (a=0)", f"val, bs {large} (a=1)"], "rows": rows}, gate],
                caveats=[*minimizer_caveats(grid), *gate_caveats],
                seeds=list(grid.spec.seeds),
                configs=[grid.configs[(bs, grid.lrs[0])].to_json() for bs in (small, large)])


# -- GEO-6 -----------------------------------------------------------------------------------------

@pytest.mark.claim("GEO-6", design=("trend", "minimizer"))
@pytest.mark.parametrize("space", ["full", "subspace100"])
@pytest.mark.parametrize("epsilon", [1e-3, 5e-4])
def test_geo6_keskar_sharpness_rises_with_batch_size(claim, grids, setting, measure, epsilon, space):
    """GEO-6: Keskar sharpness is larger for larger-batch minimizers.

    Source 000/001: bs 32: 1.14, large batches 4-7 (after LR scaling); Keskar et al. (2017):
    e.g. SB 1.23 vs LB 205 on their MNIST FC net (eps 1e-3, full space).
    Scientific parameter: batch size. Fixed: LR, SGD without momentum, model, data.
    Stop rule: the target training loss (grid `minimizer`): sharpness of an unconverged run
    measures nothing.
    Statistic: phi = max loss increase in the box |z_i| <= eps (|x_i| + 1) as a percentage of
    1 + f, f the mean loss over the whole training set, maximized by L-BFGS-B (10 iterations, as
    Keskar et al.); in the full space and in one seeded random 100-dimensional subspace (the same
    for every minimizer), eps 1e-3 and 5e-4: four results. Trend test, claimed increasing.
    Reported beside it (full space): phi's first-order part eps sum|g_i|(|x_i|+1)/(1+f), the rise
    of the loss's linearization over the box, and its share of phi; and the gradient gate.
    Caveat: L-BFGS-B's maximum is a lower bound of the true one.
    """
    grid = grids(setting, "minimizer")
    X, y = _data(grid)
    subspace_dim = GEO6_SUBSPACE_DIM if space == "subspace100" else None
    values = per_batch(grid, lambda r: keskar_phi(measure, r, X, y, epsilon, subspace_dim))
    figures.metric_vs_batch(claim.figure_path("sharpness.png"), values, ci=_cis(values),
                            ylabel=f"Keskar sharpness (eps {epsilon:g}, {space})", logy=True)
    tables = []
    if space == "full":  # the first-order part has this closed form in the full-space box only
        first = per_batch(grid, lambda r: keskar_first_order(measure, r, X, y, epsilon)["first_order"])
        tables.append({"title": f"phi and its first-order part eps sum|g_i|(|x_i|+1)/(1+f) (eps {epsilon:g}; "
                                "mean ± s.d. over seeds)",
                       "columns": ["batch size", "phi", "first-order part", "share of phi"],
                       "rows": [[bs, _mean_sd(values[bs]), _mean_sd(first[bs]),
                                 _mean_sd(first[bs] / np.maximum(values[bs], 1e-12))] for bs in values]})
    gate, gate_caveats = gradient_gate(grid, measure, X, y)
    claim.check(seed_trend(values, "increasing"), label=f"sharpness (eps {epsilon:g}, {space})",
                tables=[*tables, gate],
                caveats=[*minimizer_caveats(grid), *gate_caveats, "L-BFGS-B's maximum (10 iterations) is a lower "
                         "bound of the largest loss in the box"],
                seeds=list(grid.spec.seeds), configs=grid.config_labels())


# -- GEO-7 -----------------------------------------------------------------------------------------

def _surface(measure, run, X, y, xs):
    """The training loss on the xs x xs grid around the run's minimizer, along the two
    filter-normalized directions every model draws with the same seeds."""
    return np.array(measure(run, _surface_around, X, y, xs=list(xs), direction_seeds=list(GEO7_DIRECTION_SEEDS)))


def _surface_around(model, X, y, xs, direction_seeds):
    dx, dy = (g.filter_normalized_direction(model, seed=s) for s in direction_seeds)
    return g.loss_surface_2d(model, X, y, dx, dy, xs, xs)


@pytest.mark.claim("GEO-7", design=("trend", "minimizer"))
def test_geo7_filter_normalized_surface_is_steeper_for_larger_batches(claim, grids, setting, profile, measure):
    """GEO-7: filter-normalized 2-D loss surfaces change more steeply around large-batch minimizers.

    Source 000/001: contour plots for bs 32 and 256 (Li et al. 2018's method); no numbers.
    Scientific parameter: batch size. Fixed: LR, SGD without momentum, model, data.
    Stop rule: the target training loss (grid `minimizer`).
    Surface: theta + x d1 + y d2, d1 and d2 Gaussian directions drawn with seeds 0 and 1 for every
    model and filter-normalized to it (biases zeroed, Li et al.'s `biasbn`), f the mean training
    loss over the whole training set.
    Statistic (fixed before running): the mean of f - f(0, 0) over the grid points other than the
    centre inside the disc x^2 + y^2 <= 0.5^2, the grid being the figure's (surface_points per
    side over [-1, 1], profile), evaluated only over [-0.5, 0.5]^2 for every run; trend test,
    claimed increasing. The full [-1, 1] grid is computed only for the figure (seed 0 of the
    smallest and the largest batch size), which keeps the cost per run at about a quarter of a full grid.
    Caveat: two random directions are a 2-D slice of a ~23k-dimensional space; filter
    normalization removes the per-neuron scale, not every reparametrization.
    """
    grid = grids(setting, "minimizer")
    by_batch = grid.by_batch()
    X, y = _data(grid)
    xs = np.round(np.linspace(-GEO7_EXTENT, GEO7_EXTENT, profile.params["surface_points"]), 10)
    inner = xs[np.abs(xs) <= GEO7_DISC_RADIUS + 1e-9]
    px, py = np.meshgrid(inner, inner)
    disc = (px**2 + py**2 <= GEO7_DISC_RADIUS**2 + 1e-9) & ((px != 0) | (py != 0))
    centre = (px == 0) & (py == 0)

    def disc_rise(run):
        z = _surface(measure, run, X, y, inner)
        return float(np.mean(z[disc] - z[centre]))

    values = per_batch(grid, disc_rise)
    small, large = min(by_batch), max(by_batch)
    figures.surface_contours(claim.figure_path("surfaces.png"), xs, xs,
                             {f"bs {bs}, seed {by_batch[bs][0].config.seed}": _surface(measure, by_batch[bs][0], X, y, xs)
                              for bs in (small, large)})
    figures.metric_vs_batch(claim.figure_path("disc_rise.png"), values, ci=_cis(values),
                            ylabel=f"mean loss rise over the disc r = {GEO7_DISC_RADIUS:g}")
    gate, gate_caveats = gradient_gate(grid, measure, X, y)
    claim.check(seed_trend(values, "increasing"),
                label=f"mean loss rise over the disc r = {GEO7_DISC_RADIUS:g} ({int(disc.sum())} grid points)",
                tables=[gate], caveats=[*minimizer_caveats(grid), *gate_caveats, "two random directions are a 2-D slice of the weight space; "
                         "filter normalization removes the per-neuron scale, not every reparametrization"],
                seeds=list(grid.spec.seeds), configs=grid.config_labels())


# -- GEO-8 -----------------------------------------------------------------------------------------

# GEO-8: Lanczos returns the top GEO8_TOP_K eigenvalues (Keskar et al.: "a significant number of large
# positive eigenvalues"). The count statistic, fixed before any run at the 0.01 target was trained:
# the eigenvalues among the top 10 at or above half the same seed's smallest-batch top eigenvalue
# (a seed-paired reference, so the count reads "how many directions are at least half as curved as
# the flat minimizer's sharpest one"); 0.5 is the conventional "comparable magnitude" cut, not tuned.
GEO8_TOP_K = 10
GEO8_LARGE_SHARE = 0.5
GEO8_HALF_LR_GRID = "minimizer_half_lr"


def _spectra_of(measure, run, X, y, n) -> list[float]:
    """The run's top GEO8_TOP_K Hessian eigenvalues over the first n examples, largest first (cached)."""
    return measure(run, g.hessian_top_eigenvalues, X[:n], y[:n], k=GEO8_TOP_K, tol=1e-4, seed=0)


def _spectra(grid, measure, X, y, n) -> dict[int, np.ndarray]:
    """batch size -> (seeds, GEO8_TOP_K) top Hessian eigenvalues, largest first."""
    return {bs: np.array([_spectra_of(measure, r, X, y, n) for r in runs]) for bs, runs in grid.by_batch().items()}


@pytest.fixture
def geo8_grid_name(profile, part):
    """GEO-8's grid for `part`. A profile without it skips the part at setup, before the claim
    fixture exists (a skip inside the test would read as a test that never called check())."""
    name = GEO8_HALF_LR_GRID if part == "top_eigenvalue_half_lr" else "minimizer"
    if name not in profile.grids:
        pytest.skip(f"profile {profile.name} has no grid `{name}` (see its TOML for why; cpu-long runs it)")
    return name


@pytest.mark.claim("GEO-8", design=("trend", "minimizer"))
@pytest.mark.parametrize("part", ["top_eigenvalue", "large_count", pytest.param(
    "top_eigenvalue_half_lr", marks=pytest.mark.claim("GEO-8", design=("trend", GEO8_HALF_LR_GRID)))])
def test_geo8_top_hessian_eigenvalue_rises_with_batch_size(geo8_grid_name, claim, grids, setting, profile, measure,
                                                           part):
    """GEO-8: larger batches find minimizers with a larger top Hessian eigenvalue, and sharp
    minimizers have a significant number of large positive eigenvalues.

    Source 002 (quoting Keskar et al. 2017): sharp minimizers have "a significant number of large
    positive eigenvalues", and large batches find them; qualitative.
    Scientific parameter: batch size. Fixed: LR, SGD without momentum, model, data.
    Stop rule: the target training loss (grid `minimizer`; `minimizer_half_lr` for the third part).
    Spectrum: the GEO8_TOP_K = 10 largest eigenvalues of the Hessian of the mean training loss over
    the first `hessian_examples` training examples (profile; the whole training set of the cpu
    profile), by Lanczos on Hessian-vector products (relative tolerance 1e-4, seeded start).
    Three results (three Holm hypotheses), each a trend test over batch size, claimed increasing:
    - `top_eigenvalue`: lambda_max at the setting's LR.
    - `large_count`: per run, the number of its top-10 eigenvalues >= 0.5 x the same seed's
      smallest-batch lambda_max (fixed before the runs; GEO8_LARGE_SHARE).
    - `top_eigenvalue_half_lr`: lambda_max at half the setting's LR (grid `minimizer_half_lr`):
      at a fixed LR, gradient descent cannot stay where lambda_max > 2/lr (Cohen et al. 2021), so a
      trend seen at one LR only could be that ceiling; halving the LR doubles it. Skipped where the
      profile has no such grid (cpu: its large-batch runs take ~3,300 epochs, see cpu.toml; cpu-long runs it).
    Reported beside each: lambda_max x lr / 2 per batch size (1 = the edge of stability), the
    mean top-10 spectrum, and the gradient gate.
    Caveat: the top eigenvalue is not scale-invariant (Dinh et al. 2017); X-3 checks an adaptive measure.
    """
    grid = grids(setting, geo8_grid_name)
    X, y = _data(grid)
    n = min(profile.params["hessian_examples"], len(y))
    spectra = _spectra(grid, measure, X, y, n)
    lr = grid.lrs[0]
    top = {bs: s[:, 0] for bs, s in spectra.items()}
    reference = top[min(top)]  # per seed: the smallest batch's lambda_max
    counts = {bs: (s >= GEO8_LARGE_SHARE * reference[:, None]).sum(axis=1).astype(float) for bs, s in spectra.items()}
    spectrum_rows = [[bs, *(f"{v:.3g}" for v in s.mean(axis=0)), _mean_sd(top[bs] * lr / 2), _mean_sd(counts[bs])]
                     for bs, s in spectra.items()]
    tables = [{"title": f"top-{GEO8_TOP_K} Hessian spectrum (mean over seeds, largest first) at lr {lr:g}; "
                        f"lambda_max x lr / 2 (1 = the edge of stability 2/lr); count of eigenvalues >= "
                        f"{GEO8_LARGE_SHARE:g} x the same seed's bs {min(top)} lambda_max",
               "columns": ["batch size", *(f"l{i + 1}" for i in range(GEO8_TOP_K)), "lambda_max lr / 2", "count"],
               "rows": spectrum_rows}]
    gate, gate_caveats = gradient_gate(grid, measure, X, y)
    values = counts if part == "large_count" else top
    label = (f"eigenvalues >= {GEO8_LARGE_SHARE:g} x bs {min(top)}'s lambda_max (of the top {GEO8_TOP_K})"
             if part == "large_count" else f"top Hessian eigenvalue at lr {lr:g}")
    figures.metric_vs_batch(claim.figure_path("top_eigenvalue.png"), values, ci=_cis(values),
                            ylabel=label, logy=part != "large_count")
    edge = max(float(np.max(t * lr / 2)) for t in top.values())
    claim.check(seed_trend(values, "increasing"), label=label, tables=[*tables, gate],
                caveats=[*minimizer_caveats(grid), *gate_caveats,
                         f"largest lambda_max x lr / 2 over the runs: {edge:.3g} (1 is the edge of stability)",
                         "the top eigenvalue changes under reparametrizations that leave the function unchanged "
                         "(Dinh et al. 2017); X-3 checks an adaptive measure"],
                seeds=list(grid.spec.seeds), configs=grid.config_labels())


# -- GEO-9 -----------------------------------------------------------------------------------------

GEO9_PARENT_GRID = "minimizer_pairs"  # each seed's largest-batch minimizer, 11 seeds
GEO9_GRID = "escape"                  # the continuations: smallest and largest batch, same LR and epochs


def _continuations(grid_spec, setting, parents, store):
    """batch size -> each seed's continuation of its parent (same seed, same LR), trained through
    the cache; the config names its parent (init_from), so the key says where the weights came from."""
    init = {r.config.seed: r.final_state for r in parents}
    parent_cfg = parents[0].config.to_json()
    return {bs: store.get_or_train_population(cfg.replace(init_from=parent_cfg), grid_spec.seeds, init=init)
            for (bs, _), cfg in sorted(grid_spec.configs(setting).items())}


@pytest.mark.claim("GEO-9", design=("paired", GEO9_GRID))
@pytest.mark.parametrize("part", ["small_batch_falls", "small_below_large"])
@pytest.mark.parametrize("sharpness", ["phi", "top_eigenvalue"])
def test_geo9_small_batches_escape_sharp_basins(claim, grids, setting, profile, store, measure, sharpness, part):
    """GEO-9: large-batch training is attracted to sharp basins and cannot escape them; small-batch
    training escapes to flatter regions.

    Source 002 (quoting Keskar et al. 2017): large-batch methods "are attracted to regions with sharp
    minimizers and, unlike small-batch methods, are unable to escape the basins of attraction".
    Scientific parameter: the continuation's batch size (the grid's smallest and largest).
    Fixed: the starting point (each seed's largest-batch minimizer of grid `minimizer_pairs`, 11
    seeds, stopped at training loss 0.01), the LR (the setting's, the one it was trained at), the
    number of epochs (grid `escape`: the epochs the smallest batch needs to reach the minimizer
    target from initialization, in the pilot: time enough to find a minimizer of its own), SGD
    without momentum, model, data; each continuation keeps its seed's data order.
    Sharpness, before (the parent) and after each continuation: Keskar et al.'s phi (eps 1e-3, full
    space, GEO-6's measurement) and the top Hessian eigenvalue (GEO-8's Lanczos); one result each.
    Per seed: d_B = log(sharpness after the continuation at batch B / sharpness before).
    Two parts per measure (four Holm hypotheses), paired by seed:
    - `small_batch_falls`: d_small < 0, exact sign-flip test over seeds (stats.threshold_test),
      effect = mean of d_small (exp of it is the geometric-mean ratio after/before).
    - `small_below_large`: d_small < d_large ("unlike small-batch methods"), exact sign-flip test
      of the per-seed differences. d_large with its CI is reported beside it.
    Caveat: the continuations end wherever their epochs end, not at a matched training loss; their
    final training losses are in the table.
    """
    parents = grids(setting, GEO9_PARENT_GRID)
    start = parents.by_batch()[max(parents.batch_sizes)]
    spec = profile.grid(GEO9_GRID)
    if tuple(spec.seeds) != tuple(parents.spec.seeds):
        raise ValueError(f"grid `{GEO9_GRID}` must train the seeds of `{GEO9_PARENT_GRID}` (one continuation per parent)")
    after = _continuations(spec, setting, start, store)
    X, y = _data(parents)
    n = min(profile.params["hessian_examples"], len(y))
    if sharpness == "phi":
        value, name = (lambda r: keskar_phi(measure, r, X, y)), "phi (eps 1e-3, full space)"
    else:
        value, name = (lambda r: _spectra_of(measure, r, X, y, n)[0]), "top Hessian eigenvalue"
    before = np.array([value(r) for r in start])
    d = {bs: np.log(np.array([value(r) for r in runs]) / before) for bs, runs in after.items()}
    small, large = min(d), max(d)
    rows = [[f"start (bs {max(parents.batch_sizes)} minimizer)", _mean_sd(before), "",
             _mean_sd([r.history[-1]["train_loss"] for r in start])]]
    rows += [[f"after {spec.fields['epochs']} epochs at bs {bs}", _mean_sd(np.exp(d[bs]) * before),
              "{:+.3g} [{:.3g}, {:.3g}]".format(np.mean(d[bs]), *stats.mean_ci(d[bs])), _mean_sd([r.history[-1]["train_loss"] for r in runs])]
             for bs, runs in after.items()]
    tables = [{"title": f"{name} before and after each continuation (mean ± s.d. over seeds); d = log(after / before) "
                        "with its mean and 95% CI",
               "columns": ["", name, "mean d [CI]", "training loss"], "rows": rows}]
    if part == "small_batch_falls":
        result = stats.threshold_test(d[small], 0.0, "less", effect_name=f"mean log({name} after bs {small} / before)")
    else:
        result = stats.two_group_test(d[small], d[large], "less", paired=True, effect="difference")
    claim.check(result, label=f"{name}: continuation at bs {small} vs bs {large} from the bs "
                              f"{max(parents.batch_sizes)} minimizer;", tables=tables,
                caveats=[*minimizer_caveats(parents), "the continuations end after a fixed number of epochs, not at a "
                         "matched training loss (see the table)"],
                seeds=list(spec.seeds), configs=[c.to_json() for c in spec.configs(setting).values()])
