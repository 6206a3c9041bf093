"""Snapshot ensembles (claims SE-2, SE-3): test accuracy of the snapshot ensemble against the run's
final snapshot and against a single model trained with one cosine cycle on the same budget.

    .venv/bin/python benchmarks/bench_snapshots.py [--seeds 3] [--epochs 30] [--snapshots 5] [--threads 1]

Setting: MNIST-1D (3,200 training / 1,000 test examples), an MLP 40-256-256-10, SGD with momentum
0.9 at batch 64 and lr0 0.1 (Huang et al.'s optimizer, lr0 in their range). The snapshot run
restarts the cosine M times and keeps the weights at each cycle's end; the baseline is the same
budget with M = 1, i.e. plain cosine annealing. Seeds train together as one stacked population;
the gain is paired by seed. The last table is SE-3: the baseline models of all seeds as one
independent ensemble against their mean member accuracy.
"""
from __future__ import annotations

import argparse
import statistics

import torch

from lossscape import RunConfig, train_population
from lossscape.ensembles import (independent_ensemble_accuracy, member_accuracies, snapshot_accuracies,
                                 snapshot_ensemble_accuracy)
from lossscape.data import load_data


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--snapshots", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    cfg = RunConfig(model="mlp", width=256, batch_size=64, lr=0.1, momentum=0.9, epochs=a.epochs,
                    schedule="cyclic_cosine", snapshots=a.snapshots)
    seeds = list(range(a.seeds))
    ds = load_data(cfg)
    X, y = ds.X_test, ds.y_test
    snapshot_runs = train_population(cfg, seeds)
    cosine_runs = train_population(cfg.replace(snapshots=1), seeds)

    M = a.snapshots
    print(f"Snapshot ensembles, MNIST-1D test set, mlp 40-256-256-10, {a.epochs} epochs, M = {M}, "
          f"SGD momentum 0.9, lr0 0.1, batch 64")
    print(f"{'seed':>4}{'final snapshot':>16}{f'ensemble (M={M})':>18}{'gain':>8}{'cosine (M=1)':>14}"
          f"{'gain vs cosine':>16}")
    gains, gains_cosine = [], []
    for seed, run, cosine in zip(seeds, snapshot_runs, cosine_runs):
        final = snapshot_accuracies(run, X, y)[-1]
        ens = snapshot_ensemble_accuracy(run, X, y)
        single = member_accuracies([cosine], X, y)[0]
        gains.append(ens - final)
        gains_cosine.append(ens - single)
        print(f"{seed:>4}{final:>16.3f}{ens:>18.3f}{ens - final:>+8.3f}{single:>14.3f}{ens - single:>+16.3f}")
    print(f"mean gain over the final snapshot {statistics.mean(gains):+.3f}, over the cosine model "
          f"{statistics.mean(gains_cosine):+.3f} (n = {len(seeds)} seeds)")

    print("\nensemble of the last m snapshots, mean test accuracy over seeds")
    print("".join(f"{f'm={m}':>8}" for m in range(1, M + 1)))
    print("".join(f"{statistics.mean(snapshot_ensemble_accuracy(r, X, y, m) for r in snapshot_runs):>8.3f}"
                  for m in range(1, M + 1)))

    members = member_accuracies(cosine_runs, X, y)
    print(f"\nindependent ensemble of the {len(seeds)} cosine models: mean member "
          f"{statistics.mean(members):.3f}, ensemble {independent_ensemble_accuracy(cosine_runs, X, y):.3f}")


if __name__ == "__main__":
    main()
