"""LR-5's per-seed best LR (claims/test_lr.py: best_log2_lr) against values worked out by hand."""
import math

import numpy as np
import pytest

from claims.test_lr import best_log2_lr

LRS = [2.0 ** k for k in range(-3, 4)]  # log2 LR = -3..3


def test_a_parabola_gives_its_vertex_between_grid_points():
    """(x - 0.5)^2 + 1 ties at x = 0 and 1; the fit through x = -2..2 (argmin x = 0, two steps each
    side) recovers 0.5 exactly, which no argmin can."""
    losses = [(math.log2(lr) - 0.5) ** 2 + 1 for lr in LRS]
    assert best_log2_lr(LRS, losses) == pytest.approx(0.5, abs=1e-9)


def test_a_flat_valley_gives_its_centre_not_its_noise():
    """Flat near 1.0 over x = -1..1 with its lowest point (noise, 0.99) at x = 1, rising at x = 2, 3.
    The window is x = -1..3; with u = x - 1 = -2..2 (symmetric), least squares gives
    b = sum(u y) / sum(u^2) = 9 / 10 and a = sum((u^2 - 2) y) / sum((u^2 - 2)^2) = 7.02 / 14, so the
    vertex is u = -b / 2a = -12.6 / 14.04, x = 4/39 ~ 0.10: inside the valley, where the argmin says 1."""
    losses = [9.0, 2.0, 1.0, 1.0, 0.99, 2.0, 5.0]
    assert best_log2_lr(LRS, losses) == pytest.approx(4 / 39, abs=1e-9)


def test_a_parabola_opening_downwards_or_too_few_finite_points_gives_the_argmin():
    concave = [-(math.log2(lr) ** 2) + 10 for lr in LRS]  # argmin at the edge x = -3, a = -1 < 0
    assert best_log2_lr(LRS, concave) == -3.0
    diverged = [math.inf, math.inf, 1.0, 0.9, math.inf, math.inf, math.inf]  # 2 finite in the window
    assert best_log2_lr(LRS, diverged) == 0.0


def test_the_vertex_never_leaves_the_fit_window():
    rng = np.random.default_rng(0)
    for _ in range(200):
        losses = rng.normal(1.0, 0.05, len(LRS))
        i = int(np.argmin(losses))
        x = best_log2_lr(LRS, losses)
        assert max(i - 2, 0) - 3 <= x <= min(i + 2, len(LRS) - 1) - 3
