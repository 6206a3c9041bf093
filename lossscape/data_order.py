"""The order in which a run sees its training examples: one seeded permutation per epoch.

Every run has its own data order, seeded with its seed, so the members of a stacked population
(lossscape.engine) and the ranks of a data-parallel run (lossscape.parallel) see exactly the
examples the same seed sees alone.
"""
from __future__ import annotations

import torch

from .config import DATA_SEED_STRIDE


def data_seed(seed: int) -> int:
    """The base of a run's data-order seeds; epoch e shuffles with data_seed(seed) + e.

    Spaced far apart so that seeds s and s + 1 never share an epoch's order. DDP ranks pass it to
    DistributedSampler(seed=...), whose per-epoch permutation is the same randperm, so k ranks see
    exactly the examples one process sees in each global batch.
    """
    return seed * DATA_SEED_STRIDE


def epoch_permutation(seed: int, epoch: int, n: int) -> torch.Tensor:
    """The order of the n training examples in `epoch` (0-based) of the run with `seed`."""
    g = torch.Generator().manual_seed(data_seed(seed) + epoch)
    return torch.randperm(n, generator=g)
