"""Every speed ratio of issue 11 side by side, measured in one run (the machine is shared and noisy:
ratios taken in the same run are what count, absolute times are not).

    .venv/bin/python benchmarks/bench_speed.py [--threads 1] [--repeats 3] [--epochs 3] [--only engine hvp ...]

1. This machine's sgemm peak (a 1024^3 float32 matmul, fastest of several, measured before and
   after each configuration: the highest counts) and, per MLP
   configuration on MNIST-1D (w64 bs16, w128 bs64, w256 bs64), the engine's GFLOP/s in the
   training steps of single runs (FLOPs from lossscape.step_cost: forward, weight and input
   gradients; the fastest repeat, as the peak is the fastest multiply, and the median) and a
   population of 8 seeds on the path `train_population` chooses (stacking, chunk and threads:
   lossscape.path_choice), against a loop of 8 single runs at --threads (targets:
   >= 1.0x everywhere, >= 3x at w64 bs16; single runs >= 60% of peak at w256 bs64). The forced
   stacked path is shown beside it, and the GFLOP/s of the bare module's autograd forward and
   backward on one batch (no SGD step, no recording): what PyTorch reaches at that shape through
   autograd, which the engine's written-out gradients (lossscape.stacked_mlp) do not use.
2. One Hessian-vector product (MLP 40-256-256-10, 1,000 examples, one chunk) against a
   graph-reusing reference (create_graph gradient once, then one backward per product) and
   PyHessian's `hessian_vector_product` if pyhessian is installed (`pip install -e ".[bench]"`;
   target <= 1.0x). Hutchinson's trace against PyHessian's at equal samples on a small MLP whose
   exact trace is computed column by column: time per sample and the error against the exact trace.
3. `loss_surface_2d` (points per pass chosen by its probe) against a plain loop of full-batch
   forward passes with the same directions (target <= 1.0x), and their largest difference.
4. The share of a single run's time spent evaluating (MLP w256 on MNIST-1D, bs 64 and 1024, fixed
   epochs and early stopping): each epoch evaluating only the splits its stop rules read (the
   default) against every split every epoch (the former behaviour, forced with
   eval_every_epoch=("train", "val", "test")), arms alternating in one run; the ratio is the
   default's wall time over the former's.
5. BatchNorm populations: 8 seeds of resnet_small and densenet_small (the cpu profile's snapshot
   setting: MNIST-1D, 2,000 samples, batch 64) on the path the probe chooses and forced stacked,
   against a loop of 8 single runs, in wall time and in training-step time (target >= 1.0x).

Arms alternate within each repeat after a warm-up; medians are reported. The population speed-ups
(sections 1 and 5) are judged against their targets from the per-repeat ratios as a claim is
judged (bench_engine.Repeats.speedup: the ratio, its 95% interval, and "met", "not met" or
"inconclusive"); "met" needs --repeats 5 or more.
"""
from __future__ import annotations

import argparse
import copy
import gc
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F
from bench_engine import Repeats, alternate
from bench_geometry import full_batch_loop, mnist1d_train_set, trained_mlp
from torch import nn

from lossscape import RunConfig, path_choice, train, train_population
from lossscape import geometry as g
from lossscape.geometry.hessian import _HessianVectorProduct
from lossscape.step_cost import stage_forward_flops, step_flops
from lossscape.data import load_data
from lossscape.models import init_model

SECTIONS = ["engine", "hvp", "trace", "surface", "evaluation", "batchnorm"]
CONFIGS = [(64, 16), (128, 64), (256, 64)]
# issue 11's population targets: >= 3x the loop where steps are overhead-bound, never slower elsewhere
POPULATION_TARGETS = {(64, 16): 3.0}
SEEDS = list(range(8))


def median_alternating(arms: dict, repeats: int) -> dict[str, float]:
    """Median seconds per arm; one warm-up call each, then the arms alternate in every repeat."""
    for fn in arms.values():
        fn()
    times = {name: [] for name in arms}
    for _ in range(repeats):
        for name, fn in arms.items():
            gc.collect()  # each arm starts without the arm before's garbage to collect
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(t) for name, t in times.items()}


def sgemm_peak(n: int = 1024, repeats: int = 10) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    fastest = min(_seconds(lambda: a @ b) for _ in range(repeats))
    return 2 * n**3 / fastest / 1e9


def _seconds(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def population_vs_loop(cfg: RunConfig, repeats: int) -> tuple[dict, float, Repeats]:
    """The probe's choice for SEEDS of cfg and the seconds the probe itself took, then the chosen
    path, all members stacked and a loop of single runs, alternating: (chosen, probe s, the
    arms' seconds in each repeat)."""
    path_choice.CHOSEN_PATHS.clear()  # time the probe itself, then reuse its choice
    probe_s = _seconds(lambda: path_choice.choose_path(cfg, len(SEEDS)))
    chosen = path_choice.choose_path(cfg, len(SEEDS))
    timed = alternate({
        "chosen": lambda: train_population(cfg, SEEDS),
        "stacked": lambda: train_population(cfg, SEEDS, path="stacked"),
        "loop": lambda: [train(cfg.replace(seed=s)) for s in SEEDS],
    }, repeats)
    return chosen, probe_s, timed


def chosen_vs_loop(chosen: dict, timed: Repeats, target: float) -> str:
    """The chosen path's speed-up over the loop, judged against `target`; where the probe chose the
    loop on the loop's own threads the two arms run the same code, and the ratio is said to be the
    machine's noise."""
    if chosen["kind"] == "loop" and chosen["threads"] == torch.get_num_threads():
        wall = timed.median()
        return f"{wall['loop'] / wall['chosen']:.2f}x (the loop itself: noise)"
    return timed.speedup("loop", "chosen", target)


def bench_engine(epochs: int, repeats: int) -> None:
    """The peak is measured before the section and after each configuration, and the highest of
    those is what every row is a percentage of: on a shared machine a single measurement came out
    anywhere from 72 to 99 GFLOP/s, and a low one would flatter the engine. The peak is each
    measurement's fastest multiply, so the engine's rate is read the same way, from its fastest
    repeat (8 runs' training steps, summed); the median repeat's is shown beside it."""
    peaks, rows = [sgemm_peak()], []
    for width, bs in CONFIGS:
        cfg = RunConfig(dataset="mnist1d", model="mlp", width=width, batch_size=bs, lr=0.05, epochs=epochs)
        ds = load_data(cfg)
        flops = step_flops(stage_forward_flops(init_model(cfg, 0, ds.input_shape, ds.n_classes), ds.input_shape), 0)
        chosen, probe_s, timed = population_vs_loop(cfg, repeats)
        work = len(SEEDS) * epochs * len(ds.y_train) * flops / 1e9
        gflops = (work / timed.fastest()["loop"], work / timed.median("steps")["loop"])
        bare = bs * flops / bare_step_seconds(cfg, repeats) / 1e9
        rows.append((width, bs, chosen, probe_s, timed, gflops, bare))
        peaks.append(sgemm_peak())
    peak = max(peaks)
    print(f"\n## Engine: MNIST-1D MLP, {len(SEEDS)} seeds, {epochs} epochs, sgemm peak {peak:.1f} GFLOP/s "
          f"(the highest of {len(peaks)} measurements, lowest {min(peaks):.1f})")
    print("| config | single-run steps GFLOP/s, fastest repeat (median) | % of peak, fastest (median) "
          "| bare forward+backward GFLOP/s (% of peak) | chosen path "
          "| probe s | population (chosen) vs loop | stacked (all 8) vs loop |")
    print("|---|---|---|---|---|---|---|---|")
    for width, bs, chosen, probe_s, timed, (best, med), bare in rows:
        path = f"{chosen['kind']}, {chosen['members_per_chunk']} per chunk, {chosen['threads']} thread(s)"
        target = POPULATION_TARGETS.get((width, bs), 1.0)
        print(f"| w{width} bs{bs} | {best:.1f} ({med:.1f}) | {100 * best / peak:.0f}% ({100 * med / peak:.0f}%) "
              f"| {bare:.1f} ({100 * bare / peak:.0f}%) | {path} | {probe_s:.2f} "
              f"| {chosen_vs_loop(chosen, timed, target)} | {timed.speedup('loop', 'stacked', target)} |")


def bare_step_seconds(cfg: RunConfig, repeats: int, steps: int = 50) -> float:
    """Median time of the module's own forward, cross-entropy and backward on one batch: what
    PyTorch itself reaches at this shape, without the engine's SGD step and recording."""
    ds = load_data(cfg)
    model = init_model(cfg, 0, ds.input_shape, ds.n_classes)
    X, y = ds.X_train[:cfg.batch_size], ds.y_train[:cfg.batch_size]

    def block():
        for _ in range(steps):
            model.zero_grad(set_to_none=True)
            F.cross_entropy(model(X), y).backward()
    return median_alternating({"bare": block}, repeats)["bare"] / steps


def reference_hvp(model: nn.Module, X, y):
    """The graph-reusing reference: the gradient with its graph once, one backward per product."""
    params = [p for p in model.parameters()]
    grads = torch.autograd.grad(F.cross_entropy(model(X), y), params, create_graph=True)

    def product(v):
        pieces = [t.view(p.shape) for t, p in zip(torch.split(v, [p.numel() for p in params]), params)]
        return torch.cat([h.reshape(-1) for h in torch.autograd.grad(grads, params, pieces, retain_graph=True)])
    return product


def pyhessian_or_none(model, X, y):
    try:
        from pyhessian import hessian
    except ImportError:
        return None
    return hessian(copy.deepcopy(model), nn.CrossEntropyLoss(), data=(X, y), cuda=False)


def bench_hvp(X, y, repeats: int, products: int = 10) -> None:
    model = trained_mlp(X, y).eval()
    ours = _HessianVectorProduct(model, X, y, None, None)
    v = torch.randn(ours.flat.numel(), generator=torch.Generator().manual_seed(0))
    arms = {"lossscape": lambda: [ours(v) for _ in range(products)]}
    ref = reference_hvp(model, X, y)
    arms["graph-reusing reference"] = lambda: [ref(v) for _ in range(products)]
    ph = pyhessian_or_none(model, X, y)
    if ph is not None:
        from pyhessian.utils import hessian_vector_product
        pieces = [t.view(p.shape) for t, p in zip(torch.split(v, [p.numel() for p in ph.params]), ph.params)]
        arms["PyHessian"] = lambda: [hessian_vector_product(ph.gradsH, ph.params, pieces) for _ in range(products)]
    diff = float((ours(v) - ref(v)).abs().max())
    t = median_alternating(arms, repeats)
    print(f"\n## One Hessian-vector product: MLP 40-256-256-10, {len(X)} examples "
          f"(max |difference| vs reference {diff:.1e})")
    print("| method | ms per product | lossscape / method |")
    print("|---|---|---|")
    for name, seconds in t.items():
        print(f"| {name} | {1e3 * seconds / products:.2f} | {t['lossscape'] / seconds:.2f}x |")


def bench_trace(X, y, repeats: int, samples: int = 50) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(40, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for idx in torch.randperm(len(X)).split(64):
        opt.zero_grad()
        F.cross_entropy(model(X[idx]), y[idx]).backward()
        opt.step()
    model.eval()
    hvp = _HessianVectorProduct(model, X, y, None, None)
    n = hvp.flat.numel()
    exact = sum(float(hvp(basis)[i]) for i, basis in enumerate(torch.eye(n)))
    ph = pyhessian_or_none(model, X, y)
    errors = {"lossscape": [], "PyHessian": []}
    seed = iter(range(10**6))

    def ours():
        errors["lossscape"].append(g.hessian_trace(model, X, y, samples=samples, seed=next(seed))[0] - exact)

    def theirs():
        torch.manual_seed(next(seed))
        errors["PyHessian"].append(np.mean(ph.trace(maxIter=samples, tol=0.0)) - exact)

    arms = {"lossscape": ours} if ph is None else {"lossscape": ours, "PyHessian": theirs}
    t = median_alternating(arms, repeats)
    print(f"\n## Hutchinson's trace: MLP 40-32-32-10 ({n} parameters), {len(X)} examples, {samples} samples "
          f"per estimate, exact trace {exact:.4f} (from {n} products)")
    print("| method | s per estimate | RMS relative error | time x error^2 vs lossscape (> 1: less accurate per second) |")
    print("|---|---|---|---|")
    rms = {k: float(np.sqrt(np.mean(np.square(e)))) / abs(exact) for k, e in errors.items() if e}
    for name in arms:
        efficiency = (t[name] * rms[name] ** 2) / (t["lossscape"] * rms["lossscape"] ** 2)
        print(f"| {name} | {t[name]:.3f} | {rms[name]:.3f} | {efficiency:.2f} |")


def bench_surface(X, y, repeats: int, grid: int = 11) -> None:
    model = trained_mlp(X, y)
    dx, dy = g.filter_normalized_direction(model, seed=1), g.filter_normalized_direction(model, seed=2)
    xs = ys = np.linspace(-1.0, 1.0, grid)
    ours = g.loss_surface_2d(model, X, y, dx, dy, xs, ys)
    loop = full_batch_loop(model, X, y, dx, dy, xs, ys)
    t = median_alternating({
        "loss_surface_2d": lambda: g.loss_surface_2d(model, X, y, dx, dy, xs, ys),
        "plain loop": lambda: full_batch_loop(model, X, y, dx, dy, xs, ys),
    }, repeats)
    print(f"\n## Loss surface: {grid}x{grid} grid, MLP 40-256-256-10, {len(X)} examples "
          f"(max |difference| {np.abs(ours - loop).max():.1e})")
    print(f"loss_surface_2d {t['loss_surface_2d']:.2f} s, plain loop {t['plain loop']:.2f} s: "
          f"{t['loss_surface_2d'] / t['plain loop']:.2f}x the loop's time")


def bench_evaluation_share(epochs: int, repeats: int) -> None:
    """Evaluation seconds (the rows' eval_time_s, the end-of-run passes included) over evaluation
    plus training steps (epoch_time_s), medians over alternating repeats after one warm-up each."""
    print(f"\n## Evaluation share of a single run's time, {epochs} epochs: the stop rules' splits each epoch "
          f"(now) against every split every epoch (before)")
    print("| config | stop | arm | steps s | evaluation s | evaluation share | wall s | wall now / before |")
    print("|---|---|---|---|---|---|---|---|")
    for bs in (64, 1024):
        for stop in ({"stop": "epochs"}, {"stop": "early_stop", "patience": epochs}):  # patience = epochs: no early end
            now = RunConfig(dataset="mnist1d", model="mlp", width=256, batch_size=bs, lr=0.05, epochs=epochs, **stop)
            arms = {"before": now.replace(eval_every_epoch=("train", "val", "test")), "now": now}
            seen = {name: {"steps": [], "eval": [], "wall": []} for name in arms}
            for r in range(repeats + 1):
                for name, cfg in arms.items():
                    t0 = time.perf_counter()
                    run = train(cfg)
                    wall = time.perf_counter() - t0
                    if r:  # the first round warms up
                        seen[name]["wall"].append(wall)
                        for key, field in (("steps", "epoch_time_s"), ("eval", "eval_time_s")):
                            seen[name][key].append(sum(h[field] for h in run.history))
            med = {name: {k: statistics.median(v) for k, v in d.items()} for name, d in seen.items()}
            for name, m in med.items():
                ratio = f"{m['wall'] / med['before']['wall']:.2f}x" if name == "now" else ""
                print(f"| w256 bs{bs} | {stop['stop']} | {name} ({', '.join(arms[name].epoch_splits)} every epoch) | "
                      f"{m['steps']:.2f} | {m['eval']:.2f} | {100 * m['eval'] / (m['steps'] + m['eval']):.0f}% | "
                      f"{m['wall']:.2f} | {ratio} |")


def bench_batchnorm_population(epochs: int, repeats: int) -> None:
    print(f"\n## BatchNorm populations: {len(SEEDS)} seeds vs a loop of {len(SEEDS)} single runs, MNIST-1D "
          f"(2,000 samples), batch 64, {epochs} epochs")
    print("| model | chosen path | probe s | probe s per member-step (1 / half / all) "
          "| population (chosen) vs loop | stacked (all 8) vs loop | stacked vs loop, training steps only |")
    print("|---|---|---|---|---|---|---|")
    for model in ["resnet_small", "densenet_small"]:
        cfg = RunConfig(dataset="mnist1d", n_samples=2000, model=model, batch_size=64, lr=0.1, momentum=0.9,
                        epochs=epochs)
        chosen, probe_s, timed = population_vs_loop(cfg, repeats)
        per = " / ".join(f"{1e3 * t:.1f} ms" for t in chosen["probe_s_per_member_step"][str(chosen["threads"])].values())
        print(f"| {model} | {chosen['kind']}, {chosen['members_per_chunk']} per chunk, {chosen['threads']} thread(s) "
              f"| {probe_s:.2f} | {per} "
              f"| {chosen_vs_loop(chosen, timed, 1.0)} | {timed.speedup('loop', 'stacked', 1.0)} "
              f"| {timed.speedup('loop', 'stacked', 1.0, 'steps')} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--only", nargs="+", choices=SECTIONS, default=SECTIONS, help="sections to run (default: all)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), median of {a.repeats} alternating repeats")
    X, y = mnist1d_train_set()
    run = {
        "engine": lambda: bench_engine(a.epochs, a.repeats),
        "hvp": lambda: bench_hvp(X[:1000], y[:1000], a.repeats),
        "trace": lambda: bench_trace(X[:1000], y[:1000], a.repeats),
        "surface": lambda: bench_surface(X, y, a.repeats),
        "evaluation": lambda: bench_evaluation_share(a.epochs, a.repeats),
        "batchnorm": lambda: bench_batchnorm_population(a.epochs, a.repeats),
    }
    for section in SECTIONS:
        if section in a.only:
            run[section]()


if __name__ == "__main__":
    main()
