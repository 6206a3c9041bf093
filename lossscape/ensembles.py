"""Snapshot ensembles (Huang et al. 2017) and ensembles of independently trained runs.

An ensemble predicts the mean of its members' softmax outputs. A snapshot ensemble's members are
the weights a cyclic_cosine run saved at the end of each cycle (`Run.snapshots`); an independent
ensemble's are the final weights of runs that differ only in seed.

    probs = ensemble_predict(run, run.snapshots, X, m=3)      # the last 3 snapshots
    snapshot_ensemble_accuracy(run, X, y), snapshot_accuracies(run, X, y)
    independent_ensemble_accuracy(runs, X, y), member_accuracies(runs, X, y)
    snapshot_disagreement(run, X), independent_disagreement(runs, X)   # diversity

Diversity is the mean pairwise disagreement of the members' predicted classes (Huang et al.'s
measure of how different snapshots are; an ensemble of identical members gains nothing).
"""
from __future__ import annotations

from typing import Sequence

import torch

from .engine import EVAL_CHUNK
from .run import Run


@torch.no_grad()
def ensemble_predict(run: Run, states: Sequence[dict[str, torch.Tensor]], X: torch.Tensor,
                     m: int | None = None) -> torch.Tensor:
    """Mean softmax [n, classes] (float64) of the last m of `states` (all by default), each
    loaded into `run`'s architecture."""
    if not states:
        raise ValueError("states: got none; allowed: at least one state dict (a cyclic_cosine run's snapshots)")
    m = len(states) if m is None else m
    if not 1 <= m <= len(states):
        raise ValueError(f"m: got {m}; allowed: 1..{len(states)} (the states given)")
    total = None
    for state in states[-m:]:
        probs = _softmax(run.model(state), X)
        total = probs if total is None else total + probs
    return total / m


def accuracy(probs: torch.Tensor, y: torch.Tensor) -> float:
    return float((probs.argmax(-1) == y).double().mean())


def snapshot_ensemble_accuracy(run: Run, X: torch.Tensor, y: torch.Tensor, m: int | None = None) -> float:
    """Accuracy of the mean softmax of the run's last m snapshots."""
    return accuracy(ensemble_predict(run, run.snapshots, X, m), y)


def snapshot_accuracies(run: Run, X: torch.Tensor, y: torch.Tensor) -> list[float]:
    """Each snapshot's accuracy on its own, in the order they were taken (the last is the final model)."""
    return [accuracy(ensemble_predict(run, [s], X), y) for s in run.snapshots]


def independent_ensemble_accuracy(runs: Sequence[Run], X: torch.Tensor, y: torch.Tensor) -> float:
    """Accuracy of the mean softmax of the runs' final weights."""
    return accuracy(ensemble_predict(_common_architecture(runs), [r.final_state for r in runs], X), y)


def member_accuracies(runs: Sequence[Run], X: torch.Tensor, y: torch.Tensor) -> list[float]:
    return [accuracy(ensemble_predict(r, [r.final_state], X), y) for r in runs]


def pairwise_disagreement(probs: Sequence[torch.Tensor]) -> float:
    """Mean over member pairs of the share of examples whose predicted classes (argmax) differ."""
    if len(probs) < 2:
        raise ValueError(f"probs: got {len(probs)} members; allowed: at least 2")
    labels = [p.argmax(-1) for p in probs]
    pairs = [(i, j) for i in range(len(labels)) for j in range(i + 1, len(labels))]
    return float(sum((labels[i] != labels[j]).double().mean() for i, j in pairs) / len(pairs))


def snapshot_disagreement(run: Run, X: torch.Tensor) -> float:
    """Diversity of the run's snapshots."""
    return pairwise_disagreement([ensemble_predict(run, [s], X) for s in run.snapshots])


def independent_disagreement(runs: Sequence[Run], X: torch.Tensor) -> float:
    """Diversity of the runs' final models (runs of one architecture)."""
    arch = _common_architecture(runs)
    return pairwise_disagreement([ensemble_predict(arch, [r.final_state], X) for r in runs])


def _softmax(model: torch.nn.Module, X: torch.Tensor) -> torch.Tensor:
    dtype = next(model.parameters()).dtype
    return torch.cat([torch.softmax(model(X[i:i + EVAL_CHUNK].to(dtype)), -1).double()
                      for i in range(0, len(X), EVAL_CHUNK)])


def _common_architecture(runs: Sequence[Run]) -> Run:
    """The first run, once every run is checked to build the same network."""
    if not runs:
        raise ValueError("runs: got none; allowed: at least one Run")
    arch = {(r.config.model, r.config.width, r.config.dtype, tuple(r.input_shape), r.n_classes) for r in runs}
    if len(arch) > 1:
        raise ValueError(f"runs: got different architectures {sorted(arch, key=str)}; allowed: runs of one model")
    return runs[0]
