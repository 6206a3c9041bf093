"""Error rates of the verdict rules in `lossscape.stats`, by simulation at the n the profiles use.

For each test, data are drawn under the null (effect exactly at the claim's boundary: no trend, no
difference, a ratio exactly at the threshold, a TOST difference exactly at the margin; the
per-seed threshold test is the paired sign-flip test of values - threshold), under a planted effect and under a reversed one, with seed
effects where the design has them. A verdict of "supported" needs p < alpha and "refuted" needs the
opposite p < alpha (stats.decide), so the rates of those two events bound the rates of false
verdicts; the CI condition can only lower them.

`tests/test_calibration.py` asserts the bounds; `python benchmarks/calibration.py` prints the table.
Everything is seeded, so both are deterministic.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from scipy import stats as sps

from . import stats

NS = (3, 5, 6, 8, 11, 12)      # seeds (or replicates per group) used by the profiles
ALPHAS = (0.05, 0.01)
LEVELS = np.array([16, 64, 256, 1024])  # a trend grid's batch sizes


@dataclass(frozen=True)
class Case:
    """A test as a claim uses it: `draw(rng, n, effect, draws)` makes `draws` data sets, `p(data)`
    returns arrays (p for the claimed side, p for the opposite side), one entry per data set.
    `effect` is 0 under the null, +planted for the claimed direction, -planted for the reversed."""
    name: str
    draw: Callable
    p: Callable
    planted: float


def _noise(rng, size, heavy: bool):
    """Normal noise, or Student t with 3 d.f. rescaled to unit variance (heavy tails)."""
    return rng.standard_t(3, size) / np.sqrt(3.0) if heavy else rng.standard_normal(size)


def _trend_draw(rng, n, effect, draws):
    # seed effects (init and data order shared across batch sizes) much larger than the noise
    levels = np.repeat(LEVELS, n)
    position = np.repeat(np.arange(LEVELS.size), n)
    blocks = np.tile(np.arange(n), LEVELS.size)
    seed_effect = rng.normal(0.0, 3.0, (draws, n))[:, blocks]
    values = seed_effect + effect * position + rng.standard_normal((draws, position.size))
    return levels, values, blocks


def _trend_p(data):
    _, p_hi, p_lo, _ = stats.stratified_kendall_p(*data)
    return p_hi, p_lo


def _paired_draw(heavy):
    def draw(rng, n, effect, draws):
        return effect + _noise(rng, (draws, n), heavy)
    return draw


def _sign_flip(d):
    p_hi, p_lo, _ = stats.sign_flip_p(d)
    return p_hi, p_lo


def _log_ratio_draw(rng, n, effect, draws):
    # DP-2's shape: four independent groups of timings with unequal spreads; the true ratio of
    # ratios is exp(-0.2 effect), claimed < 1
    sd = (0.05, 0.3, 0.1, 0.2)
    logs = [rng.normal(0.0, s, (draws, n)) for s in sd]
    logs[3] = logs[3] + 0.2 * effect
    return logs


def _log_ratio_p(logs):
    contrast, se, df = stats.welch_log_contrast(logs, (-1, 1, 1, -1))
    t = contrast / se
    return sps.t.cdf(t, df), sps.t.sf(t, df)  # claimed "less"


def _tost_draw(rng, n, effect, draws):
    # paired differences: effect 0 puts the true difference exactly at the margin (1), effect 1
    # at 0 (equivalent), effect -1 at twice the margin
    return (1.0 - effect) + 0.5 * rng.standard_normal((draws, n))


def _tost_p(d):
    _, _, se, df = stats.t_pvalues(d, 0.0)
    p, p_opp, _ = stats.tost_pvalues(d.mean(axis=-1), se, df, 1.0)
    return p, p_opp


CASES = (
    Case("trend, seeds as blocks", _trend_draw, _trend_p, planted=0.5),
    Case("paired sign-flip, normal", _paired_draw(False), _sign_flip, planted=1.5),
    Case("paired sign-flip, t(3)", _paired_draw(True), _sign_flip, planted=1.5),
    Case("log-ratio Welch, 4 groups", _log_ratio_draw, _log_ratio_p, planted=1.5),
    Case("TOST, paired", _tost_draw, _tost_p, planted=1.0),
)


def rates(case: Case, n: int, draws: int, seed: int = 0) -> dict:
    """(label, alpha) -> (share of draws with p < alpha, share with opposite p < alpha), for the
    labels null, planted and reversed."""
    out = {}
    for k, (label, effect) in enumerate((("null", 0.0), ("planted", case.planted), ("reversed", -case.planted))):
        p, p_opp = case.p(case.draw(np.random.default_rng([seed, n, k]), n, effect, draws))
        for alpha in ALPHAS:
            out[(label, alpha)] = (float(np.mean(p < alpha)), float(np.mean(p_opp < alpha)))
    return out


def binomial_bound(draws: int, alpha: float) -> float:
    """The 99.9% upper point of the false-call rate of a rule that holds its nominal alpha."""
    return float(sps.binom.ppf(0.999, draws, alpha) / draws)
