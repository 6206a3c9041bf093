"""Geometry benchmarks: vectorized loss surfaces and Lanczos vs power iteration.

    .venv/bin/python benchmarks/bench_geometry.py [--grid 21] [--repeats 1] [--threads N] [--device cuda]

Setting: MNIST-1D (Greydanus 2020; 4,000 training examples of length 40 from `mnist1d`'s own
`make_dataset`) and an MLP 40-256-256-10 trained for 5 epochs of SGD (the surface is that of a
trained network; the Hessian is measured both at initialisation and after training).

1. `loss_surface_2d` on a grid x grid filter-normalized plane against two one-point-at-a-time
   baselines: the reference plotter's way (tomgoldstein/loss-landscape plot_surface.py: write
   the point's weights into the network, then `eval_loss` over a DataLoader with its default
   batch of 128, `.item()` per batch), and a tighter loop that does the same with one
   full-batch forward per point. Every method is warmed up on a 3 x 3 grid, repeats are
   interleaved and the minimum is kept (the machine is shared); ratios come from one run.
2. Hessian top eigenvalue, at initialisation and after training: Hessian-vector products that
   Lanczos (eigsh, tol 1e-4) and power iteration (relative change < 1e-4, and < 1e-6) spend, and
   the error each ends with against a tight Lanczos run (tol 1e-10).
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F
from mnist1d.data import get_dataset_args, make_dataset
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lossscape import geometry as g


def mnist1d_train_set() -> tuple[torch.Tensor, torch.Tensor]:
    args = get_dataset_args()
    args.num_samples = 5000  # 4,000 train / 1,000 test, the package's default split
    data = make_dataset(args)
    return torch.tensor(data["x"], dtype=torch.float32), torch.tensor(data["y"], dtype=torch.int64)


def trained_mlp(X: torch.Tensor, y: torch.Tensor, epochs: int = 5) -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(40, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10)).to(X.device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(epochs):
        for idx in torch.randperm(len(X)).to(X.device).split(64):
            optimizer.zero_grad()
            F.cross_entropy(model(X[idx]), y[idx]).backward()
            optimizer.step()
    return model


def reference_plotter(model, X, y, dx, dy, xs, ys) -> np.ndarray:
    """tomgoldstein/loss-landscape: set_weights + evaluation.eval_loss, one point at a time."""
    loader = DataLoader(TensorDataset(X, y), batch_size=128, shuffle=False)
    weights = [p.data.clone() for p in model.parameters()]
    directions = [(dx[name], dy[name]) for name, _ in model.named_parameters()]
    losses = np.empty((len(ys), len(xs)))
    model.eval()
    with torch.no_grad():
        for i, b in enumerate(ys):
            for j, a in enumerate(xs):
                for p, w, (d0, d1) in zip(model.parameters(), weights, directions):
                    p.data = w + d0 * a + d1 * b
                total_loss, correct, total = 0.0, 0, 0
                for inputs, targets in loader:
                    outputs = model(inputs)
                    total_loss += F.cross_entropy(outputs, targets).item() * len(inputs)
                    correct += outputs.max(1)[1].eq(targets).sum().item()
                    total += len(inputs)
                losses[i, j] = total_loss / total
        for p, w in zip(model.parameters(), weights):
            p.data = w
    return losses


def full_batch_loop(model, X, y, dx, dy, xs, ys) -> np.ndarray:
    """One point at a time, but one full-batch forward per point and no DataLoader."""
    weights = {name: p.detach().clone() for name, p in model.named_parameters()}
    losses = np.empty((len(ys), len(xs)))
    model.eval()
    with torch.no_grad():
        for i, b in enumerate(ys):
            for j, a in enumerate(xs):
                for name, p in model.named_parameters():
                    p.copy_(weights[name] + a * dx[name] + b * dy[name])
                losses[i, j] = float(F.cross_entropy(model(X), y))
        for name, p in model.named_parameters():
            p.copy_(weights[name])
    return losses


def timed(fn):
    """(result, wall seconds, process CPU seconds): CPU time is the check on a shared machine,
    where wall time also counts other people's work."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def bench_surface(model, X, y, grid: int, repeats: int) -> None:
    dx, dy = g.filter_normalized_direction(model, seed=1), g.filter_normalized_direction(model, seed=2)
    xs = ys = np.linspace(-1.0, 1.0, grid)
    methods = {
        "reference plotter (DataLoader bs 128)": reference_plotter,
        "one point per full-batch pass": full_batch_loop,
    }
    for points in (4, 16, 64):
        methods[f"loss_surface_2d, points_per_pass={points}"] = (
            lambda m, X, y, dx, dy, xs, ys, points=points: g.loss_surface_2d(
                m, X, y, dx, dy, xs, ys, points_per_pass=points
            )
        )
    for method in methods.values():  # warm-up
        method(model, X, y, dx, dy, xs[:3], ys[:3])
    wall = {name: np.inf for name in methods}
    cpu = {name: np.inf for name in methods}
    surfaces = {}
    for _ in range(repeats):
        for name, method in methods.items():
            surfaces[name], w, c = timed(lambda: method(model, X, y, dx, dy, xs, ys))
            wall[name], cpu[name] = min(wall[name], w), min(cpu[name], c)

    ref, loop = list(methods)[:2]
    print(f"\n## loss_surface_2d: {grid}x{grid} grid, MLP 40-256-256-10, {len(X)} MNIST-1D examples on {X.device}, "
          f"{torch.get_num_threads()} torch threads, min of {repeats}")
    print("| method | wall s | CPU s | speedup vs reference (wall / CPU) | vs full-batch loop (wall / CPU) "
          "| max abs diff vs reference |")
    print("|---|---|---|---|---|---|")
    for name in methods:
        diff = np.abs(surfaces[name] - surfaces[ref]).max()
        print(f"| {name} | {wall[name]:.2f} | {cpu[name]:.2f} "
              f"| {wall[ref] / wall[name]:.1f}x / {cpu[ref] / cpu[name]:.1f}x "
              f"| {wall[loop] / wall[name]:.2f}x / {cpu[loop] / cpu[name]:.2f}x | {diff:.1e} |")


def bench_hessian(X, y, epochs: int) -> None:
    model = trained_mlp(X, y, epochs)
    (exact,), exact_matvecs = g.hessian_top_eigenvalues(model, X, y, tol=1e-10, return_matvecs=True)
    state = f"after {epochs} epochs" if epochs else "at initialisation"
    print(f"\n## Hessian top eigenvalue, MLP {state}, {len(X)} examples "
          f"(reference: eigsh tol 1e-10 = {exact:.6f}, {exact_matvecs} HVPs)")
    print("| method | stopping rule | eigenvalue | Hessian-vector products | relative error | wall s |")
    print("|---|---|---|---|---|---|")
    runs = {
        ("Lanczos (eigsh)", "tol 1e-4"): lambda: g.hessian_top_eigenvalues(model, X, y, tol=1e-4, return_matvecs=True),
        ("power iteration", "change < 1e-4"): lambda: g.hessian_power_iteration(model, X, y, tol=1e-4),
        ("power iteration", "change < 1e-6"): lambda: g.hessian_power_iteration(model, X, y, tol=1e-6),
    }
    for (name, rule), run in runs.items():
        (value, matvecs), seconds, _ = timed(run)
        value = value[0] if isinstance(value, list) else value
        print(f"| {name} | {rule} | {value:.6f} | {matvecs} | {abs(value - exact) / abs(exact):.1e} | {seconds:.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", type=int, default=21)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where the data and models live")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    X, y = (t.to(args.device) for t in mnist1d_train_set())
    bench_surface(trained_mlp(X, y), X, y, args.grid, args.repeats)
    # What is compared is each method's HVP count; 1,000 examples keep each product cheap.
    for epochs in (0, 5):
        bench_hessian(X[:1000], y[:1000], epochs)


if __name__ == "__main__":
    main()
