"""Helpers shared by the claim modules: per-batch-size values and the arrays a trend test takes."""
import numpy as np


def per_batch(grid, value) -> dict[int, np.ndarray]:
    """batch size -> value(run) for each seed's run."""
    return {bs: np.array([value(r) for r in runs], dtype=float) for bs, runs in grid.by_batch().items()}


def trend_arrays(values: dict) -> tuple[np.ndarray, np.ndarray]:
    """(levels, values) flattened for stats.trend_test."""
    levels = np.concatenate([[bs] * len(v) for bs, v in values.items()])
    return levels, np.concatenate(list(values.values()))
