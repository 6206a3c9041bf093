"""The report's figures: plain numbers in, a PNG path out.

Matplotlib's object API only (`Figure` + the Agg canvas): no pyplot state, safe in parallel tests.
PNGs are written without the Software/date metadata, so identical inputs give identical bytes and
a re-run that changes nothing changes no file. Batch sizes are coloured by rank on one colormap
in every figure, small = dark.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

DPI = 100


def _figure(ncols=1, width=6.0, height=4.0) -> tuple[Figure, np.ndarray]:
    fig = Figure(figsize=(width * ncols, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig, np.atleast_1d(fig.subplots(1, ncols, squeeze=False)[0])


def _save(fig: Figure, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=DPI, metadata={"Software": None})
    return path


def _colours(n: int):
    return colormaps["viridis"](np.linspace(0.0, 0.85, max(n, 1)))


def _band(ax, x, y, colour, label):
    """Mean over seeds (rows) with a +-1 s.d. band; a 1-D series is drawn as is."""
    y = np.atleast_2d(np.asarray(y, dtype=float))
    mean = y.mean(axis=0)
    ax.plot(x, mean, color=colour, label=label)
    if y.shape[0] > 1:
        sd = y.std(axis=0, ddof=1)
        ax.fill_between(x, mean - sd, mean + sd, color=colour, alpha=0.2, linewidth=0)


def training_curves(path, curves: Mapping, *, ylabel="training loss", logy=False) -> Path:
    """curves: batch size -> array (seeds, epochs). Mean over seeds with a +-1 s.d. band."""
    fig, (ax,) = _figure()
    for colour, (bs, y) in zip(_colours(len(curves)), curves.items()):
        y = np.atleast_2d(y)
        _band(ax, np.arange(1, y.shape[1] + 1), y, colour, f"bs {bs}")
    ax.set(xlabel="epoch", ylabel=ylabel, yscale="log" if logy else "linear")
    ax.legend(title=r"mean $\pm$ 1 s.d. over seeds")
    return _save(fig, path)


def update_norm_histograms(path, norms: Mapping, *, bins=50) -> Path:
    """norms: batch size -> 1-D array of per-step update norms ||delta w||; log-spaced bins."""
    fig, (ax,) = _figure()
    pooled = np.concatenate([np.asarray(v, dtype=float).ravel() for v in norms.values()])
    pooled = pooled[pooled > 0]
    edges = np.geomspace(pooled.min(), pooled.max(), bins + 1)
    for colour, (bs, v) in zip(_colours(len(norms)), norms.items()):
        ax.hist(np.asarray(v, dtype=float).ravel(), bins=edges, histtype="step", density=True, color=colour,
                label=f"bs {bs} (median {np.median(v):.2g})")
    ax.set(xscale="log", xlabel=r"update norm $\|\Delta w\|$ per step", ylabel="density")
    ax.legend()
    return _save(fig, path)


def layer_distances(path, distances: Mapping[object, Mapping[str, float]]) -> Path:
    """distances: batch size -> {layer: ||w_final - w_init||}; grouped bars per layer."""
    layers = list(next(iter(distances.values())))
    fig, (ax,) = _figure(width=max(6.0, 0.9 * len(layers) + 2))
    width = 0.8 / len(distances)
    x = np.arange(len(layers))
    for k, (colour, (bs, d)) in enumerate(zip(_colours(len(distances)), distances.items())):
        ax.bar(x + (k - (len(distances) - 1) / 2) * width, [d[name] for name in layers], width,
               color=colour, label=f"bs {bs}")
    ax.set_xticks(x, layers, rotation=30, ha="right")
    ax.set(ylabel="distance from initial weights")
    ax.legend()
    return _save(fig, path)


def interpolation_curves(path, alphas, train_loss, val_loss, *, ends=("small batch", "large batch")) -> Path:
    """1-D interpolation f((1-a) x_0 + a x_1): losses as (seeds, alphas) or (alphas,)."""
    fig, (ax,) = _figure()
    a = np.asarray(alphas, dtype=float)
    _band(ax, a, train_loss, "C0", "train")
    _band(ax, a, val_loss, "C1", "validation")
    for x, name in zip((0.0, 1.0), ends):
        ax.axvline(x, color="0.6", linestyle=":", linewidth=1)
        ax.annotate(name, (x, 1.0), xycoords=("data", "axes fraction"), ha="center", va="bottom", fontsize=8)
    ax.set(xlabel=r"$\alpha$", ylabel="loss", yscale="log")
    ax.legend()
    return _save(fig, path)


def surface_contours(path, xs, ys, surfaces: Mapping[str, np.ndarray], *, levels=20) -> Path:
    """Filled contours with contour lines, one panel per surface (e.g. smallest and largest batch).

    Z has shape (len(ys), len(xs)), Z[i, j] at (xs[j], ys[i]) (geometry.loss_surface_2d's layout);
    every panel shares the same levels (log-spaced) so steepness compares by eye.
    """
    zs = [np.asarray(z, dtype=float) for z in surfaces.values()]
    lo = min(z[z > 0].min() for z in zs)
    hi = max(z.max() for z in zs)
    bounds = np.geomspace(lo, hi, levels)
    fig, axes = _figure(ncols=len(zs), width=4.5, height=4.0)
    for ax, (name, z) in zip(axes, surfaces.items()):
        filled = ax.contourf(xs, ys, np.clip(z, lo, hi), levels=bounds, cmap="viridis",
                             norm=LogNorm(lo, hi))
        ax.contour(xs, ys, np.clip(z, lo, hi), levels=bounds, colors="white", linewidths=0.4)
        ax.plot(0, 0, marker="*", color="red")
        ax.set(title=str(name), xlabel="direction 1", ylabel="direction 2", aspect="equal")
    bar = fig.colorbar(filled, ax=list(axes), label="loss")
    bar.set_ticks(bounds[::3], labels=[f"{b:.3g}" for b in bounds[::3]])
    bar.minorticks_off()
    return _save(fig, path)


def _seeds_and_mean(ax, values: Mapping) -> tuple[np.ndarray, np.ndarray]:
    """Per-seed values as grey dots at each batch size and their mean as a line; returns (bs, means)."""
    bs = np.array(list(values), dtype=float)
    means = np.array([np.mean(v) for v in values.values()])
    for b, v in zip(bs, values.values()):
        ax.scatter(np.full(len(v), b), v, color="0.55", s=12, zorder=2)
    ax.plot(bs, means, color="C0", marker="o", zorder=3, label="mean over seeds")
    return bs, means


def metric_vs_batch(path, values: Mapping, *, ylabel, ci: Mapping | None = None, logy=False) -> Path:
    """values: batch size -> per-seed values. Seeds as dots, the mean as a line, `ci` (bs -> (lo, hi)) as bars."""
    fig, (ax,) = _figure()
    bs, means = _seeds_and_mean(ax, values)
    if ci is not None:
        lo, hi = np.array([ci[b][0] for b in values]), np.array([ci[b][1] for b in values])
        # lines, not errorbar(): a bootstrap interval need not contain the mean
        ax.vlines(bs, lo, hi, color="C0", linewidth=2, label="CI of the mean")
    ax.set(xscale="log", xlabel="batch size", ylabel=ylabel, yscale="log" if logy else "linear")
    ax.set_xticks(bs, [f"{b:g}" for b in bs])
    ax.legend()
    return _save(fig, path)


def lr_batch_heatmap(path, lrs: Sequence[float], batch_sizes: Sequence[int], values, *,
                     label="min validation loss") -> Path:
    """values[i, j] at (lrs[i], batch_sizes[j]); the best (lowest) LR per batch size is boxed."""
    v = np.asarray(values, dtype=float)
    fig, (ax,) = _figure(width=1.0 * len(batch_sizes) + 3, height=0.6 * len(lrs) + 2)
    image = ax.imshow(v, cmap="viridis_r", aspect="auto", origin="lower")
    shade = (v - np.nanmin(v)) / max(np.nanmax(v) - np.nanmin(v), 1e-300)  # 0 = lightest cell of viridis_r
    for i in range(v.shape[0]):
        for j in range(v.shape[1]):
            ax.text(j, i, f"{v[i, j]:.3g}", ha="center", va="center", fontsize=8,
                    color="black" if shade[i, j] < 0.5 else "white")
    for j, i in enumerate(np.nanargmin(v, axis=0)):
        ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=2))
    ax.set_xticks(range(len(batch_sizes)), [str(b) for b in batch_sizes])
    ax.set_yticks(range(len(lrs)), [f"{lr:g}" for lr in lrs])
    ax.set(xlabel="batch size", ylabel="learning rate")
    fig.colorbar(image, ax=ax, label=label)
    return _save(fig, path)


def ratio_over_epochs(path, epochs, ratio, *, ylabel="small / large batch ratio", slope=None, intercept=None) -> Path:
    """A ratio per epoch ((seeds, epochs) or (epochs,)); the caller's fitted line if given."""
    fig, (ax,) = _figure()
    e = np.asarray(epochs, dtype=float)
    _band(ax, e, ratio, "C0", "ratio")
    if slope is not None:
        ax.plot(e, intercept + slope * e, color="C3", linestyle="--", label=f"fit: slope {slope:.3g} / epoch")
    ax.axhline(1.0, color="0.6", linewidth=1)
    ax.set(xlabel="epoch", ylabel=ylabel)
    ax.legend()
    return _save(fig, path)


def gradient_se_loglog(path, batch_sizes, se, *, slope, intercept, reference_slope=-0.5) -> Path:
    """Standard error of the minibatch gradient vs batch size, log-log, with the caller's fit
    log(se) = intercept + slope log(m) and a reference line of `reference_slope` through the first point."""
    m = np.asarray(batch_sizes, dtype=float)
    se = np.asarray(se, dtype=float)
    fig, (ax,) = _figure()
    ax.scatter(m, se, color="C0", zorder=3, label="measured")
    ax.plot(m, np.exp(intercept) * m**slope, color="C0", label=f"fit: slope {slope:.3f}")
    ax.plot(m, se[0] * (m / m[0]) ** reference_slope, color="0.5", linestyle="--",
            label=f"slope {reference_slope:g}")
    ax.set(xscale="log", yscale="log", xlabel="batch size m", ylabel="gradient standard error")
    ax.legend()
    return _save(fig, path)


def lr_schedule(path, steps, lr, *, snapshots: Sequence[int] = ()) -> Path:
    """The learning rate per step, with the snapshot steps marked."""
    fig, (ax,) = _figure(height=3.0)
    ax.plot(steps, lr, color="C0")
    lr_at = dict(zip(np.asarray(steps).tolist(), np.asarray(lr).tolist()))
    if len(snapshots):
        ax.scatter(snapshots, [lr_at[s] for s in snapshots], color="C3", zorder=3, label="snapshot")
        ax.legend()
    ax.set(xlabel="iteration", ylabel="learning rate")
    return _save(fig, path)


def freeze_times(path, layers: Sequence[str], t_freeze: Sequence[float]) -> Path:
    """When each layer stops training, as a fraction of the run (FreezeOut's t_i)."""
    fig, (ax,) = _figure(height=0.3 * len(layers) + 1.5)
    y = np.arange(len(layers))
    ax.barh(y, t_freeze, color="C0")
    ax.set_yticks(y, layers)
    ax.invert_yaxis()
    ax.set(xlim=(0, 1), xlabel="frozen after this fraction of training")
    return _save(fig, path)


def accuracy_vs_speedup(path, speedup, accuracy, *, labels: Sequence[str] | None = None) -> Path:
    """One point per configuration: wall-time speedup over the unfrozen baseline vs accuracy."""
    fig, (ax,) = _figure()
    ax.scatter(speedup, accuracy, color="C0")
    for x, y, text in zip(speedup, accuracy, labels or ()):
        ax.annotate(text, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.axvline(1.0, color="0.6", linewidth=1)
    ax.set(xlabel="speedup (baseline time / time)", ylabel="accuracy")
    return _save(fig, path)


def steps_vs_batch(path, steps: Mapping, *, fit: tuple[float, float] | None = None,
                   marks: Mapping[str, float] | None = None, ylabel="steps to target") -> Path:
    """steps: batch size -> per-seed steps to a target, log-log: seeds as dots, the mean as a line,
    perfect scaling (steps proportional to 1 / B) through the smallest batch's mean as a dashed
    reference, McCandlish et al.'s S_min + E_min / B for `fit` = (S_min, E_min), and a vertical
    line per `marks` entry (name -> batch size, e.g. B_crit and B_simple)."""
    fig, (ax,) = _figure()
    bs, means = _seeds_and_mean(ax, steps)
    ax.plot(bs, means[0] * bs[0] / bs, color="0.5", linestyle="--", label="perfect scaling")
    if fit is not None:
        grid = np.geomspace(bs[0], bs[-1], 100)
        ax.plot(grid, fit[0] + fit[1] / grid, color="C3", label=r"fit $S_{min} + E_{min} / B$")
    for k, (name, b) in enumerate((marks or {}).items()):
        if np.isfinite(b) and b > 0:
            ax.axvline(b, color=f"C{k + 1}", linestyle=":", label=f"{name} = {b:.3g}")
    ax.set(xscale="log", yscale="log", xlabel="batch size", ylabel=ylabel)
    ax.set_xticks(bs, [f"{b:g}" for b in bs])
    ax.legend()
    return _save(fig, path)


VERDICT_COLOURS = {"supported": "#1a7f37", "refuted": "#c0392b", "inconclusive": "#b7791f"}


def forest_plot(path, rows: Sequence[Mapping]) -> Path:
    """Every result's effect and CI against its claimed threshold, one line per result.

    rows: {"label", "verdict", "x", "low", "high", "region": (lo, hi), "log": bool}, already
    relative to the threshold (the caller's choice: effect / threshold for ratios, effect -
    threshold otherwise). Ratios share a log axis, differences a symlog one (their units differ,
    so only the side of the threshold compares across rows). Intervals are drawn as rliable draws
    them: a translucent bar from low to high with a dark tick at the estimate; the claimed region
    is shaded on each row, so a supported result's bar lies inside its shade.
    """
    panels = [[r for r in rows if r["log"]], [r for r in rows if not r["log"]]]
    panels = [p for p in panels if p]
    heights = [len(p) + 1.5 for p in panels]
    fig = Figure(figsize=(9.0, 0.28 * sum(heights) + 0.8), layout="constrained")
    FigureCanvasAgg(fig)
    axes = np.atleast_1d(fig.subplots(len(panels), 1, squeeze=False, height_ratios=heights)[:, 0])
    for ax, panel in zip(axes, panels):
        log = panel[0]["log"]
        finite = [v for r in panel for v in (r["low"], r["high"], r["x"]) if v is not None and np.isfinite(v)]
        if log:
            finite = [v for v in finite if v > 0]
            span = (min(finite + [1.0]) / 1.5, max(finite + [1.0]) * 1.5)
        else:
            reach = max([abs(v) for v in finite] + [1e-12]) * 1.3
            span = (-reach, reach)
        for y, r in enumerate(panel):
            colour = VERDICT_COLOURS.get(r["verdict"], "0.5")
            lo, hi = (max(r["region"][0], span[0]), min(r["region"][1], span[1]))
            ax.add_patch(Rectangle((lo, y - 0.45), hi - lo, 0.9, color=colour, alpha=0.08, linewidth=0))
            if r["low"] is not None and r["high"] is not None:
                ax.barh(y, r["high"] - r["low"], left=r["low"], height=0.6, color=colour, alpha=0.75)
            if r["x"] is not None:
                ax.vlines(r["x"], y - 0.35, y + 0.35, color="k", alpha=0.6, linewidth=1.5)
        ax.axvline(1.0 if log else 0.0, color="0.3", linewidth=1, linestyle="--")
        if log:
            ax.set_xscale("log")
            label = "effect / claimed threshold (ratios, log scale)"
        else:
            # linear within the smallest estimate's size (not below a thousandth of the widest reach,
            # so a near-zero row does not stretch the axis over empty decades)
            small = [abs(r["x"]) for r in panel if r["x"] not in (None, 0)]
            ax.set_xscale("symlog", linthresh=max(min(small), span[1] * 1e-3) if small else 1.0)
            label = "effect - claimed threshold (differences, each in its own unit, symlog)"
        ax.set(xlim=span, ylim=(len(panel) - 0.5, -0.5), xlabel=label)
        ax.set_yticks(range(len(panel)), [f"{r['label']}  {r['verdict']}" for r in panel], fontsize=8)
        for tick, r in zip(ax.get_yticklabels(), panel):
            tick.set_color(VERDICT_COLOURS.get(r["verdict"], "0.3"))
        ax.tick_params(axis="x", labelsize=8)
        ax.grid(axis="x", color="0.9", linewidth=0.6)
    return _save(fig, path)
