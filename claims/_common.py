"""Helpers shared by the claim modules: per-batch-size values, the arrays a trend test takes, the
minimizers' caveats and gradient gate (GEO, BS-7, X-3), and the time to the minimum validation loss
(BS-4, DP-2), timed in the session."""
import numpy as np

from lossscape import geometry, stats
from lossscape.report.result import fmt
from lossscape.throughput import engine_step_times, timing_context


def per_batch(grid, value) -> dict[int, np.ndarray]:
    """batch size -> value(run) for each seed's run."""
    return {bs: np.array([value(r) for r in runs], dtype=float) for bs, runs in grid.by_batch().items()}


def seed_trend(values: dict, direction: str, **kw) -> stats.TestResult:
    """stats.trend_test of {level: per-seed values} with the seeds as blocks.

    Every grid trains the same seeds at every level, in the same order, so position i is seed i at
    each level: seed i's runs share their initialization and data order, and the test permutes
    within a seed, never across seeds (CLAIMS.md's common protocol).
    """
    levels = np.concatenate([[lv] * len(v) for lv, v in values.items()])
    blocks = np.concatenate([np.arange(len(v)) for v in values.values()])
    return stats.trend_test(levels, np.concatenate(list(values.values())), direction, blocks=blocks, **kw)


def minimizer_caveats(grid) -> list[str]:
    """What limits the comparability of the `minimizer` grid's runs: any run that did not stop at
    the target, and how far below it each batch size ended (the target is checked once per epoch,
    so a batch size whose epoch holds many steps overshoots it)."""
    final = per_batch(grid, lambda r: r.history[-1]["train_loss"])
    spread = ", ".join(f"bs {bs}: {v.min():.3g}-{v.max():.3g}" for bs, v in final.items())
    caveats = [f"the stop rule checks the full-pass training loss after each epoch, so runs end below the "
               f"target by different amounts (final training loss {spread})"]
    missed = [f"bs {bs} seed {r.config.seed} ({r.stop_reason})"
              for bs, runs in grid.by_batch().items() for r in runs if r.stop_reason != "target_loss"]
    if missed:
        caveats.append(f"not at the target training loss {grid.spec.fields['target_loss']:g}, so not a comparable "
                       f"minimizer: {', '.join(missed)}")
    return caveats


# The gradient gate (issue 12): a minimizer's phi should measure the curvature around it, not the
# slope left where it stopped. Fixed before the runs at 0.01 were trained: a run fails the gate when
# phi's first-order part is more than half of phi (eps 1e-3, full space, GEO-6's own measurement).
GATE_EPSILON = 1e-3
GATE_MAX_FIRST_ORDER_SHARE = 0.5


def keskar_phi(measure, run, X, y, epsilon=GATE_EPSILON, subspace_dim=None) -> float:
    """Keskar et al.'s phi of the run's final weights (L-BFGS-B, 10 iterations, seed 0), cached:
    GEO-6, GEO-9, X-3 and the gradient gate share one entry per run and box."""
    return measure(run, geometry.keskar_sharpness, X, y, epsilon=epsilon, subspace_dim=subspace_dim, maxiter=10, seed=0)


def keskar_first_order(measure, run, X, y, epsilon=GATE_EPSILON) -> dict:
    """phi's first-order part, the full-batch gradient norm and the loss at the run's final weights
    (geometry.keskar_first_order), cached."""
    return measure(run, geometry.keskar_first_order, X, y, epsilon=epsilon)


def gradient_gate(grid, measure, X, y) -> tuple[dict, list[str]]:
    """The gradient gate of a minimizer grid: a report table (per batch size: full-batch gradient
    norm, phi, its first-order part and that part's share of phi, mean +- s.d. over seeds) and a
    caveat naming every run whose first-order part exceeds GATE_MAX_FIRST_ORDER_SHARE of phi."""
    rows, failed = [], []
    for bs, runs in grid.by_batch().items():
        first = [keskar_first_order(measure, r, X, y) for r in runs]
        phi = np.array([keskar_phi(measure, r, X, y) for r in runs])
        fo = np.array([f["first_order"] for f in first])
        share = fo / np.maximum(phi, 1e-12)
        grad = np.array([f["grad_norm"] for f in first])
        failed += [f"bs {bs} seed {r.config.seed} ({fmt(s, 2)})" for r, s in zip(runs, share)
                   if s > GATE_MAX_FIRST_ORDER_SHARE]
        rows.append([bs, *(f"{fmt(np.mean(v))} ± {fmt(np.std(v, ddof=1) if len(v) > 1 else 0.0, 2)}"
                           for v in (grad, phi, fo, share))])
    table = {"title": f"gradient gate at the stop point (eps {GATE_EPSILON:g}, full space; mean ± s.d. over seeds): "
                      f"a run passes when phi's first-order part eps sum|g_i|(|x_i|+1)/(1+f) is at most "
                      f"{GATE_MAX_FIRST_ORDER_SHARE:g} of phi",
             "columns": ["batch size", "full-batch gradient norm", "phi", "first-order part", "share of phi"],
             "rows": rows}
    caveats = [f"gradient gate failed (phi's first-order part above {GATE_MAX_FIRST_ORDER_SHARE:g} of phi, so phi "
               f"there measures the slope more than the curvature): {', '.join(failed)}"] if failed else []
    return table, caveats


_SESSION_TIMES: dict = {}  # one sweep per (profile, setting, grid) in a session: BS-3, BS-4, DP-2 and LR-2 share it


def session_epoch_times(profile, setting, grid_name: str):
    """lossscape.throughput.StepTimes of grid `grid_name`'s configs (one per batch size; the grid's
    first seed), timed in this session: the engine's own step in blocks interleaved over the batch
    sizes, with one evaluation pass per block (params.timing: steps per block, blocks).

    Issue 12: times read from cached runs carried the thread count and load of whichever session
    trained them; a time measured here belongs to this session's machine, named by timing_context.
    """
    key = (profile.name, setting.id, grid_name)
    if key not in _SESSION_TIMES:
        p = profile.params["timing"]
        spec = profile.grid(grid_name).for_setting(setting)
        configs = {bs: cfg for (bs, _), cfg in sorted(spec.configs(setting).items())}
        _SESSION_TIMES[key] = engine_step_times(configs, steps=p["steps"], repeats=p["repeats"], evaluate=True)
    return _SESSION_TIMES[key]


def session_time_to_minimum_test(early, times, threshold: float = 1.0, direction: str = "greater"):
    """Time to the minimum validation loss, the largest batch's over the smallest's, from this
    session's step times: epochs to the minimum (the run's best epoch, grid `early`) x steps per
    epoch x seconds per step (`times`, session_epoch_times of the same grid's configs).

    Claimed: ratio beyond `threshold` in `direction`. The four groups (epochs per seed and epoch
    times per timed block, at the smallest and largest batch) are independent samples, so the test
    is Welch's t on log values of the ratio of geometric means (stats.log_ratio_test). Returns the
    test and a table over every batch size, with the variant that adds one evaluation pass per
    epoch to the time (reported, not tested), and the timing context as a caveat.
    """
    small, large = early.batch_sizes[0], early.batch_sizes[-1]
    epochs = per_batch(early, lambda run: run.best_epoch)
    epoch_time = {bs: times.epoch(bs) for bs in early.batch_sizes}
    test = stats.log_ratio_test((epochs[small], epochs[large], epoch_time[small], epoch_time[large]),
                                (-1, 1, -1, 1), threshold, direction, effect_name="total time ratio")
    rows = []
    for bs in early.batch_sizes:
        step, with_eval = np.median(epoch_time[bs]), np.median(times.epoch(bs, with_evaluation=True))
        rows.append([bs, times.steps_per_epoch[bs], fmt(np.median(times.step[bs]) * 1e3), fmt(np.mean(epochs[bs])),
                     fmt(step * np.mean(epochs[bs])), fmt(with_eval * np.mean(epochs[bs]))])
    table = {"title": "time to the minimum validation loss = epochs to the minimum x steps per epoch x step time "
                      "(this session's engine step)",
             "columns": ["batch size", "steps per epoch", "median step (ms)", "mean epochs to minimum",
                         "time (s), steps only", "time (s), with evaluation"],
             "rows": rows}
    return test, table, timing_context(next(iter(early.configs.values())).device)
