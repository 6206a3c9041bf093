"""Statistics behind every claim verdict: trend, two-group, threshold and equivalence tests, Holm.

Each test returns a `TestResult` (the evidence); `decide()` / `verdict()` turn it into one of the
calls CLAIMS.md defines:

- ``supported``: the effect and its whole CI lie in the claimed region and the (Holm-adjusted)
  one-sided p-value of the claim is below alpha;
- ``refuted``: the opposite one-sided test (effect on the other side of no-effect; for an
  equivalence claim, outside the margin) passes at the same (Holm-adjusted) level, and the effect
  lies on that side;
- ``inconclusive``: anything else, including NaN evidence. `lean()` says which side it leans to,
  and `minimum_detectable_effect()` how large an effect this n could have found.

The claimed region is ``(null, inf)`` for an increasing/greater claim, ``(-inf, null)`` for a
decreasing/less one, and ``(null - margin, null + margin)`` for an equivalence claim (TOST).

Every p-value is exact or has a demonstrated small-sample calibration (`tests/test_calibration.py`
and `benchmarks/calibration.py` measure false "supported", false "refuted" and power at every n the
profiles use):

- Trend: Kendall's S of value against level. With ``blocks`` (the seed of each value: seed s
  shares its initialization and data order at every batch size, so seeds are blocks) S is summed
  within blocks only and the permutation distribution permutes values within each block (a
  stratified Kendall test); it is computed exactly by convolving the blocks' own distributions.
  Without blocks, values are permuted over all cells (independent runs).
- Paired comparisons and per-seed thresholds: the exact sign-flip test of the mean of per-seed
  values (all 2^n sign vectors). It is exact when the per-seed values are symmetric about the
  null, which the calibration suite checks with normal and heavy-tailed (t, 3 d.f.) noise.
- Independent groups: a permutation test (exact when the arrangements fit in ``n_perm``).
- A threshold on a ratio of means of independent groups (timing contrasts): Welch's t on log
  values with Satterthwaite's degrees of freedom (a ratio of geometric means); calibrated on
  log-normal data down to 3 per group. Never the share of bootstrap replicates beyond the
  threshold, which at 3-6 seeds calls a null effect "supported" 7-140 times too often.
- TOST: Welch / paired t-tests and the matching ``1 - 2 alpha`` t-interval, so "CI inside the
  margins" and "TOST p < alpha" are the same decision.

Effect CIs are BCa bootstrap intervals (scipy) at ``1 - alpha`` two-sided; paired and blocked
designs resample whole seeds, keeping all of a seed's values together. The CI is displayed and
required for support, but the error rate is held by the exact p-value: with 5 seeds a BCa interval
alone misses on each side 4-5% of the time instead of 2.5%.

`min_p` is the smallest p-value any data could give in the design; where it is not below the
alpha a test is judged at, no data could support (or refute) the claim: the harness refuses such
a design before anything trains (`required_seeds`). Holm adjusts p-values only; CIs keep their
level.
"""

from __future__ import annotations

import functools
import itertools
import math
import warnings
from dataclasses import dataclass, field
from enum import Enum
from typing import Callable, Sequence

import numpy as np
from scipy import stats as sps

INCREASING = ("increasing", "greater")
DECREASING = ("decreasing", "less")
EQUIVALENT = "equivalent"
EFFECTS = ("ratio", "difference")
ALPHA = 0.05  # CLAIMS.md: every claim is judged at 0.05, Holm over the run
POWER = 0.8  # the power at which a minimum detectable effect is quoted (the usual convention)
# exact enumeration of sign flips up to this many values (2^16 = 65,536 vectors); Monte Carlo beyond
MAX_EXACT_SIGN_FLIPS = 16
# exact per-block permutation distributions up to this many levels in a block (8! = 40,320)
MAX_EXACT_BLOCK = 8


class Verdict(str, Enum):
    SUPPORTED = "supported"
    REFUTED = "refuted"
    INCONCLUSIVE = "inconclusive"
    VERIFIED = "verified"      # a check of an identity or of our own code: shown apart, outside Holm
    FAILED = "failed"          # such a check that did not hold

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class TestResult:
    """Evidence for one claim: a test statistic with both one-sided p-values and an effect with its CI.

    `se` and `df` describe the seed-to-seed spread of the effect on `scale` ("log" for ratios), from
    which `minimum_detectable_effect` derives what this n could detect.
    """

    __test__ = False  # a library class, not a pytest test class, wherever it is imported

    method: str
    statistic_name: str
    statistic: float
    p_value: float
    effect_name: str
    effect: float
    ci_low: float
    ci_high: float
    ci_level: float
    null_effect: float
    direction: str
    n: tuple[int, ...]
    alpha: float = 0.05
    margin: float | None = None
    p_opposite: float = math.nan   # one-sided p of the opposite claim: what "refuted" needs
    min_p: float = 0.0             # smallest p any data could give in this design
    se: float = math.nan           # standard error of the effect on `scale`
    df: float = math.inf
    scale: str = "linear"          # "log": se is on log(effect), for ratio effects
    details: dict = field(default_factory=dict)

    def mde(self, alpha: float | None = None) -> float:
        return minimum_detectable_effect(self, self.alpha if alpha is None else alpha)


def _claimed_region(direction: str, null_effect: float, margin: float | None = None) -> tuple[float, float]:
    """The open interval of effects the claim asserts."""
    if direction in INCREASING:
        return null_effect, math.inf
    if direction in DECREASING:
        return -math.inf, null_effect
    if direction == EQUIVALENT:
        if margin is None or not margin > 0:
            raise ValueError("an equivalence claim needs a positive margin")
        return null_effect - margin, null_effect + margin
    raise ValueError(f"unknown direction {direction!r}")


def _num(v) -> float:
    return math.nan if v is None else float(v)


def decide(*, effect, ci_low, ci_high, p_value, alpha, null_effect, direction, margin=None,
           p_opposite=None) -> Verdict:
    """The CLAIMS.md rule on plain numbers (None reads as NaN, which never decides anything)."""
    effect, ci_low, ci_high, p_value, p_opposite = map(_num, (effect, ci_low, ci_high, p_value, p_opposite))
    lo, hi = _claimed_region(direction, null_effect, margin)
    if lo < effect < hi and lo < ci_low and ci_high < hi and p_value < alpha:
        return Verdict.SUPPORTED
    if p_opposite < alpha and (effect < lo or effect > hi):  # NaN lies on neither side
        return Verdict.REFUTED
    return Verdict.INCONCLUSIVE


def verdict(result: TestResult, alpha: float | None = None, p_adjusted: float | None = None,
            p_opposite_adjusted: float | None = None) -> Verdict:
    """Verdict of `result` at `alpha` (default: its own), using the adjusted p-values when given."""
    return decide(
        effect=result.effect, ci_low=result.ci_low, ci_high=result.ci_high,
        p_value=result.p_value if p_adjusted is None else p_adjusted,
        p_opposite=result.p_opposite if p_opposite_adjusted is None else p_opposite_adjusted,
        alpha=result.alpha if alpha is None else alpha,
        null_effect=result.null_effect, direction=result.direction, margin=result.margin,
    )


def lean(effect, null_effect, direction, margin=None) -> str:
    """Which way an inconclusive result points: "supported", "refuted" or "" (no effect estimate)."""
    effect = _num(effect)
    if math.isnan(effect):
        return ""
    lo, hi = _claimed_region(direction, null_effect, margin)
    return "supported" if lo < effect < hi else "refuted"


def minimum_detectable_effect(result: TestResult, alpha: float, power: float = POWER) -> float:
    """The effect this design would detect with probability `power` at one-sided level `alpha`.

    Normal-theory approximation from the result's own seed-to-seed spread: the null shifted by
    (t_{1-alpha} + t_{power}) standard errors (df of the result) in the claimed direction, on the
    log scale for ratios. For an equivalence claim: the smallest margin the data could establish
    when the true difference is 0. Infinite where the design's smallest p cannot reach alpha.
    """
    if result.min_p >= alpha:
        return math.inf if result.direction not in DECREASING else -math.inf
    if not math.isfinite(result.se):
        return math.nan
    df = result.df if result.df > 0 else math.inf
    if result.direction == EQUIVALENT:
        return float((sps.t.ppf(1 - alpha, df) + sps.t.ppf((1 + power) / 2, df)) * result.se)
    shift = float((sps.t.ppf(1 - alpha, df) + sps.t.ppf(power, df)) * result.se)
    sign = 1.0 if result.direction in INCREASING else -1.0
    if result.scale == "log":
        return float(result.null_effect * math.exp(sign * shift))
    return float(result.null_effect + sign * shift)


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm step-down adjusted p-values, in the input order.

    Sorted ascending, p_(i) becomes max_{j<=i} min(1, (m - j + 1) p_(j)), so the adjusted values are
    monotone in p and capped at 1. NaN entries (claims without a p-value) stay NaN and do not
    count towards m.
    """
    p = np.asarray(p_values, dtype=float)
    adjusted = np.full(p.shape, np.nan)
    finite = np.isfinite(p)
    q = p[finite]
    order = np.argsort(q, kind="stable")
    steps = np.maximum.accumulate((q.size - np.arange(q.size)) * q[order])
    out = np.empty(q.size)
    out[order] = np.minimum(steps, 1.0)
    adjusted[finite] = out
    return adjusted


# -- design floors: what the harness checks before anything trains ---------------------------------

def design_min_p(design: str, seeds: int, levels: int = 2) -> float:
    """Smallest p-value a design can give: "trend" (stratified Kendall over `levels` per seed),
    "paired" (sign flips of `seeds` per-seed values) or "continuous" (a t-based test: no floor)."""
    if design == "trend":
        return 1.0 / math.factorial(levels) ** seeds
    if design == "paired":
        return 0.5 ** seeds
    if design == "continuous":
        return 0.0
    raise ValueError(f"design must be trend, paired or continuous, not {design!r}")


def required_seeds(design: str, alpha: float, levels: int = 2) -> int:
    """The fewest seeds for which `design` can reach p < alpha."""
    s = 1
    while design_min_p(design, s, levels) >= alpha:
        s += 1
    return s


# -- bootstrap CIs -----------------------------------------------------------------------------------

def bootstrap_ci(samples, statistic: Callable, *, paired=False, n_boot=2000, seed=0, confidence=0.95):
    """BCa bootstrap CI of a vectorized ``statistic(*samples, axis=-1)``.

    Each sample is resampled on its own (seeds within a group), or jointly when `paired` (whole
    seeds). Returns (low, high, bootstrap_distribution). BCa is undefined where the bootstrap
    distribution is degenerate (a discrete statistic on which every seed agrees, as an argmin LR):
    a constant distribution then gives the point interval [c, c], and a merely lumpy one the
    percentile interval, so that unanimous seeds count as evidence instead of as NaN.
    """
    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        # degenerate data are handled below, not a problem to warn about
        warnings.simplefilter("ignore", sps.DegenerateDataWarning)
        res = sps.bootstrap(
            tuple(np.asarray(s, dtype=float) for s in samples), statistic, n_resamples=n_boot,
            confidence_level=confidence, method="BCa", paired=paired, vectorized=True,
            random_state=np.random.default_rng(seed),
        )
    lo, hi, dist = float(res.confidence_interval.low), float(res.confidence_interval.high), res.bootstrap_distribution
    finite = dist[np.isfinite(dist)]
    if (math.isnan(lo) or math.isnan(hi)) and finite.size == dist.size:
        if np.ptp(finite) == 0:
            lo = hi = float(finite[0])
        else:
            tail = (1 - confidence) / 2
            lo, hi = (float(q) for q in np.quantile(finite, [tail, 1 - tail]))
    return lo, hi, dist


def mean_ci(x, *, n_boot=2000, seed=0, confidence=0.95) -> tuple[float, float]:
    """BCa CI of one group's mean: the per-batch-size error bars of figures and tables."""
    lo, hi, _ = bootstrap_ci((x,), lambda v, axis=-1: np.mean(v, axis=axis), n_boot=n_boot, seed=seed,
                             confidence=confidence)
    return lo, hi


def _effect_statistic(effect: str) -> Callable:
    if effect == "ratio":
        return lambda a, b, axis=-1: np.mean(a, axis=axis) / np.mean(b, axis=axis)
    if effect == "difference":
        return lambda a, b, axis=-1: np.mean(a, axis=axis) - np.mean(b, axis=axis)
    raise ValueError(f"effect must be one of {EFFECTS}, not {effect!r}")


def _alternative(direction: str) -> str:
    if direction in INCREASING:
        return "greater"
    if direction in DECREASING:
        return "less"
    raise ValueError(f"direction must be one of {INCREASING + DECREASING}, not {direction!r}")


def _check_groups(effect: str, *groups: np.ndarray) -> None:
    if any(g.size < 2 for g in groups):
        raise ValueError("each compared group needs at least 2 observations for a bootstrap CI")
    if effect == "ratio" and any(np.any(g <= 0) for g in groups):
        raise ValueError("a ratio of means needs positive values; use effect='difference'")


def _spread(a, b, effect: str, paired: bool) -> tuple[float, float]:
    """(se, df) of the effect between two groups, on the log scale for a ratio: the MDE's input."""
    f = np.log if effect == "ratio" else (lambda v: v)
    a, b = f(np.asarray(a, dtype=float)), f(np.asarray(b, dtype=float))
    if paired:
        d = a - b
        return float(np.std(d, ddof=1) / math.sqrt(d.size)), float(d.size - 1)
    va, vb = np.var(a, ddof=1) / a.size, np.var(b, ddof=1) / b.size
    se = math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (a.size - 1) + vb**2 / (b.size - 1)) if va + vb > 0 else math.inf
    return float(se), float(df)


# -- exact p-values ----------------------------------------------------------------------------------

def _upper_p(null: np.ndarray, observed: float) -> float:
    """P(null >= observed), with a relative tolerance so float noise in equal sums counts as equal."""
    tol = 1e-9 * max(1.0, abs(observed))
    return float(np.mean(null >= observed - tol))


def t_pvalues(x, mu):
    """One-sample t-test of mean(x) against `mu` along the last axis: (p for mean > mu, p for
    mean < mu, standard error, df). Vectorized over leading axes like sign_flip_p."""
    x = np.asarray(x, dtype=float)
    n = x.shape[-1]
    se = np.std(x, ddof=1, axis=-1) / math.sqrt(n)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (np.mean(x, axis=-1) - mu) / se
    return sps.t.sf(t, n - 1), sps.t.cdf(t, n - 1), se, n - 1


def welch_log_contrast(logs, exponents):
    """sum_i e_i mean(log group i), its standard error and Satterthwaite's df, along the last axis
    of each group (leading axes are batches)."""
    e = np.asarray(exponents, dtype=float)
    contrast = sum(ei * np.mean(l, axis=-1) for ei, l in zip(e, logs))
    parts = [ei**2 * np.var(l, ddof=1, axis=-1) / l.shape[-1] for ei, l in zip(e, logs)]
    var = sum(parts)
    with np.errstate(divide="ignore", invalid="ignore"):
        df = var**2 / sum(p**2 / (l.shape[-1] - 1) for p, l in zip(parts, logs))
    return contrast, np.sqrt(var), df


def sign_flip_p(x, *, n_mc=65535, seed=0):
    """Sign-flip test of mean(x) = 0 along the last axis: (p for mean > 0, p for mean < 0, smallest p).

    Exact over all 2^n sign vectors up to MAX_EXACT_SIGN_FLIPS values; beyond, `n_mc` random
    vectors with the observed one counted (p >= 1 / (n_mc + 1)). `x` may carry leading batch axes
    (many data sets at once, as the calibration suite draws them); the p-values then do too.
    """
    x = np.asarray(x, dtype=float)
    n = x.shape[-1]
    if n <= MAX_EXACT_SIGN_FLIPS:
        signs = 1 - 2 * ((np.arange(2**n)[:, None] >> np.arange(n)) & 1)
        floor = 0.5**n
    else:
        rng = np.random.default_rng(seed)
        signs = np.concatenate([np.ones((1, n)), rng.choice([-1.0, 1.0], size=(n_mc, n))])
        floor = max(0.5**n, 1 / (n_mc + 1))
    null = x @ signs.T                      # [..., vectors]; the all-plus vector is the observed sum
    observed = x.sum(axis=-1, keepdims=True)
    tol = 1e-9 * np.maximum(1.0, np.abs(observed))  # float noise in equal sums counts as equal
    p_hi = np.mean(null >= observed - tol, axis=-1)
    p_lo = np.mean(null <= observed + tol, axis=-1)
    if x.ndim == 1:
        return float(p_hi), float(p_lo), floor
    return p_hi, p_lo, floor


def _pairs_sign(v: np.ndarray) -> np.ndarray:
    """sign(v_i - v_j) for i < j along the last axis, flattened: the pairs Kendall's S counts."""
    i, j = _pairs(v.shape[-1])
    return np.sign(v[..., i] - v[..., j])


@functools.lru_cache(maxsize=64)
def _pairs(k: int) -> tuple[np.ndarray, np.ndarray]:
    return np.triu_indices(k, 1)


def _dense_ranks(v: np.ndarray) -> tuple[int, ...]:
    return tuple(np.unique(v, return_inverse=True)[1].ravel().tolist())


def _tie_pattern(v: np.ndarray) -> tuple[int, ...]:
    """The multiset of a block's dense ranks: all a block's null distribution depends on."""
    return tuple(sorted(_dense_ranks(v)))


@functools.lru_cache(maxsize=4096)
def _block_pmf(level_ranks: tuple[int, ...], value_ranks: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Kendall S of one block under every permutation of its values: (support, pmf).

    It depends on the values only through their ties, so it is cached by rank pattern: a
    calibration run or a claim with many seeds computes each block shape once.
    """
    sx = _pairs_sign(np.array(level_ranks, dtype=float))
    perms = np.array(list(itertools.permutations(sorted(value_ranks))), dtype=float)
    s = np.rint(_pairs_sign(perms) @ sx).astype(int)
    support, counts = np.unique(s, return_counts=True)
    return support, counts / counts.sum()


def stratified_kendall_p(levels, values, blocks, *, n_mc=9999, seed=0):
    """Kendall's S summed within blocks, values permuted within each block.

    Returns (S, p for S large, p for S small, smallest possible p). Exact (the blocks' permutation
    distributions convolved) when every block holds at most MAX_EXACT_BLOCK values; otherwise
    Monte Carlo with `n_mc` within-block permutations. `values` may carry leading batch axes
    (the calibration suite's many data sets), whose S and p-values then come back as arrays.
    """
    x, y, b = np.asarray(levels, dtype=float), np.asarray(values, dtype=float), np.asarray(blocks)
    groups = [g for u in np.unique(b) if (g := np.flatnonzero(b == u)).size >= 2]
    observed = sum(_pairs_sign(y[..., g]) @ _pairs_sign(x[g]) for g in groups)
    if any(g.size > MAX_EXACT_BLOCK for g in groups):
        if y.ndim > 1:
            raise ValueError("batched values need blocks of at most MAX_EXACT_BLOCK values")
        rng = np.random.default_rng(seed)
        null = sum(_pairs_sign(rng.permuted(np.broadcast_to(y[g], (n_mc, g.size)), axis=1)) @ _pairs_sign(x[g])
                   for g in groups)
        null = np.concatenate([[observed], null])
        return float(observed), _upper_p(null, observed), _upper_p(-null, -observed), 1.0 / (n_mc + 1)
    flat = y.reshape(-1, y.shape[-1])
    distinct = all(np.all(np.diff(np.sort(flat[:, g], axis=1), axis=1) > 0) for g in groups)
    ties = ({tuple(tuple(range(g.size)) for g in groups)} if distinct
            else {tuple(_tie_pattern(row[g]) for g in groups) for row in flat})
    if len(ties) > 1:  # different tie patterns in a batch: each data set has its own null
        out = np.array([stratified_kendall_p(x, row, b) for row in flat])
        return tuple(out[:, i].reshape(y.shape[:-1]) for i in range(4))
    s_values, pmf = _convolved_pmf(tuple(_dense_ranks(x[g]) for g in groups), ties.pop())
    tail_hi = np.cumsum(pmf[::-1])[::-1]          # P(S >= s_values[i])
    tail_lo = np.cumsum(pmf)                      # P(S <= s_values[i])
    i = np.rint(observed).astype(int) - s_values[0]
    p_hi, p_lo = np.minimum(1.0, tail_hi[i] + 1e-12), np.minimum(1.0, tail_lo[i] + 1e-12)
    floor = float(min(pmf[0], pmf[-1]))
    if y.ndim == 1:
        return float(observed), float(p_hi), float(p_lo), floor
    return observed, p_hi, p_lo, floor


def _convolved_pmf(level_ranks: tuple, value_ranks: tuple) -> tuple[np.ndarray, np.ndarray]:
    """The null distribution of the summed S: the blocks' own distributions convolved."""
    offset, pmf = 0, np.ones(1)
    for lr, vr in zip(level_ranks, value_ranks):
        support, p = _block_pmf(lr, vr)
        full = np.zeros(support[-1] - support[0] + 1)
        full[support - support[0]] = p
        pmf = np.convolve(pmf, full)
        offset += support[0]
    return offset + np.arange(pmf.size), pmf


# -- tests ---------------------------------------------------------------------------------------------

def trend_test(levels, values, direction="increasing", *, blocks=None, effect="ratio", n_boot=2000,
               n_perm=9999, seed=0, alpha=0.05) -> TestResult:
    """Monotone trend of `values` in `levels` (e.g. batch sizes), one value per seed and level.

    With `blocks` (the seed of each value): stratified Kendall test (values permuted within each
    seed), effect CI resampling whole seeds. Without: Kendall's tau-b with values permuted over all
    cells (independent runs), CI resampling within each group. Effect: mean at the largest level
    over (or minus) the mean at the smallest.
    """
    x = np.asarray(levels, dtype=float)
    y = np.asarray(values, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError("levels and values must be 1-D arrays of the same length")
    uniq, counts = np.unique(x, return_counts=True)
    if uniq.size < 2:
        raise ValueError("a trend needs at least two distinct levels")
    alt = _alternative(direction)
    stat = _effect_statistic(effect)
    if blocks is not None:
        b = np.asarray(blocks)
        if b.shape != x.shape:
            raise ValueError("blocks must give one seed per value")
        both = [u for u in np.unique(b) if {uniq[0], uniq[-1]} <= set(x[b == u])]
        top = np.array([y[(b == u) & (x == uniq[-1])].mean() for u in both])
        bottom = np.array([y[(b == u) & (x == uniq[0])].mean() for u in both])
        _check_groups(effect, top, bottom)
        if np.ptp(y) == 0:
            s, p_hi, p_lo, min_p = math.nan, 1.0, 1.0, 0.0
        else:
            s, p_hi, p_lo, min_p = stratified_kendall_p(x, y, b, n_mc=n_perm, seed=seed)
        lo, hi, _ = bootstrap_ci((top, bottom), stat, paired=True, n_boot=n_boot, seed=seed, confidence=1 - alpha)
        se, df = _spread(top, bottom, effect, paired=True)
        method = ("stratified Kendall test (values permuted within each seed), exact; "
                  "BCa bootstrap CI of the extreme-level effect resampling whole seeds")
        statistic_name, n_blocks = "kendall_s_within_seeds", len(np.unique(b))
        p, p_opp = (p_hi, p_lo) if alt == "greater" else (p_lo, p_hi)
        extra = {"blocks": n_blocks}
    else:
        top, bottom = y[x == uniq[-1]], y[x == uniq[0]]
        _check_groups(effect, top, bottom)
        s, p, p_opp, min_p = _pooled_kendall(x, y, alt, n_perm, seed)
        lo, hi, _ = bootstrap_ci((top, bottom), stat, n_boot=n_boot, seed=seed, confidence=1 - alpha)
        se, df = _spread(top, bottom, effect, paired=False)
        method = "Kendall tau-b, one-sided permutation test; BCa bootstrap CI of the extreme-level effect"
        statistic_name, extra = "kendall_tau_b", {}
    means = [float(y[x == u].mean()) for u in uniq]
    return TestResult(
        method=method, statistic_name=statistic_name, statistic=s, p_value=p,
        effect_name=effect, effect=float(stat(top, bottom)), ci_low=lo, ci_high=hi,
        ci_level=1 - alpha, null_effect=1.0 if effect == "ratio" else 0.0, direction=direction,
        n=tuple(int(c) for c in counts), alpha=alpha, p_opposite=p_opp, min_p=min_p, se=se, df=df,
        scale="log" if effect == "ratio" else "linear",
        details={"levels": uniq.tolist(), "means": means, **extra},
    )


def _pooled_kendall(x, y, alt, n_perm, seed) -> tuple[float, float, float, float]:
    """tau-b with values permuted over all cells: (tau, p, p opposite, smallest p)."""
    _, counts = np.unique(x, return_counts=True)
    min_p = 1.0 / _multinomial(counts)
    if np.ptp(y) == 0:  # every value equal: no ordering to test
        return math.nan, 1.0, 1.0, min_p
    # tau-b = S / sqrt((n0 - ties_x)(n0 - ties_y)); both tie counts are invariant when values are
    # permuted, so the permutation distribution of tau-b is that of S rescaled.
    sx = _pairs_sign(x)
    n0 = x.size * (x.size - 1) / 2
    denom = math.sqrt((n0 - np.count_nonzero(sx == 0)) * (n0 - np.count_nonzero(_pairs_sign(y) == 0)))

    def tau_b(v, axis=-1):
        return (_pairs_sign(np.moveaxis(v, axis, -1)) @ sx) / denom

    opposite = "less" if alt == "greater" else "greater"
    p = [float(sps.permutation_test((y,), tau_b, permutation_type="pairings", vectorized=True,
                                    n_resamples=n_perm, batch=1000, alternative=a,
                                    random_state=np.random.default_rng(seed)).pvalue) for a in (alt, opposite)]
    return float(tau_b(y)), p[0], p[1], max(min_p, 1.0 / (n_perm + 1)) if _multinomial(counts) > n_perm else min_p


def _multinomial(counts) -> float:
    return math.factorial(int(sum(counts))) / math.prod(math.factorial(int(c)) for c in counts)


def two_group_test(a, b, direction="greater", *, paired=False, effect="ratio", n_boot=2000, n_perm=9999,
                   seed=0, alpha=0.05) -> TestResult:
    """One-sided comparison of group `a` against group `b` ("greater": a's mean exceeds b's).

    Paired (same seeds): exact sign-flip test of the per-seed differences. Independent: permutation
    test on the difference of means, exact whenever the arrangements fit in `n_perm`. CI: BCa of
    mean(a)/mean(b) or mean(a) - mean(b), resampling whole seeds when paired.
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if paired and a.shape != b.shape:
        raise ValueError("paired groups must have the same length")
    _check_groups(effect, a, b)
    alt = _alternative(direction)
    if paired:
        p_hi, p_lo, min_p = sign_flip_p(a - b, seed=seed)
        method = "paired sign-flip test on the mean difference (exact); BCa bootstrap CI resampling seeds"
    else:
        diff = _effect_statistic("difference")
        # a ratio claim and a difference claim assert the same ordering of positive means
        p_hi, p_lo = (float(sps.permutation_test((a, b), diff, permutation_type="independent", vectorized=True,
                                                 n_resamples=n_perm, alternative=side,
                                                 random_state=np.random.default_rng(seed)).pvalue)
                      for side in ("greater", "less"))
        arrangements = math.comb(a.size + b.size, a.size)
        min_p = 1.0 / arrangements if arrangements <= n_perm else 1.0 / (n_perm + 1)
        method = "two-sample permutation test on the mean difference; BCa bootstrap CI"
    lo, hi, _ = bootstrap_ci((a, b), _effect_statistic(effect), paired=paired, n_boot=n_boot, seed=seed,
                             confidence=1 - alpha)
    se, df = _spread(a, b, effect, paired)
    p, p_opp = (p_hi, p_lo) if alt == "greater" else (p_lo, p_hi)
    return TestResult(
        method=method, statistic_name="mean_difference", statistic=float(a.mean() - b.mean()), p_value=p,
        effect_name=effect, effect=float(_effect_statistic(effect)(a, b)), ci_low=lo, ci_high=hi,
        ci_level=1 - alpha, null_effect=1.0 if effect == "ratio" else 0.0, direction=direction,
        n=(a.size, b.size), alpha=alpha, p_opposite=p_opp, min_p=min_p, se=se, df=df,
        scale="log" if effect == "ratio" else "linear",
        details={"mean_a": float(a.mean()), "mean_b": float(b.mean())},
    )


def tost(a, b, margin: float, *, paired=False, alpha=0.05) -> TestResult:
    """Two one-sided t-tests: is mean(a) - mean(b) inside (-margin, margin)?

    `b` may be a number: then mean(a) is compared with that reference value (e.g. a slope of -0.5).
    p = max of the two one-sided p-values; CI = the matching ``1 - 2 alpha`` t-interval (Welch for
    independent groups). The opposite claim, "outside the margin", is the smaller of the two
    one-sided tests beyond each margin, doubled (Bonferroni over the two sides).
    """
    a = np.asarray(a, dtype=float)
    if not margin > 0:
        raise ValueError("margin must be positive")
    if paired and np.shape(b) != a.shape:
        raise ValueError("paired groups must have the same length")
    if np.ndim(b) == 0 or paired:
        x = a - np.asarray(b, dtype=float)
        _, _, se, df = t_pvalues(x, 0.0)
        effect, n, kind = float(x.mean()), (x.size,), "paired" if paired else "one-sample"
    else:
        b = np.asarray(b, dtype=float)
        se, df = _spread(a, b, "difference", paired=False)
        effect, n, kind = float(a.mean() - b.mean()), (a.size, b.size), "Welch"
    se, df = float(se), float(df)
    p, p_opp, t_min = (float(v) for v in tost_pvalues(effect, se, df, margin))
    half = float(sps.t.ppf(1 - alpha, df) * se)
    return TestResult(
        method=f"TOST ({kind} t-tests), margin +-{margin:g}",
        statistic_name="tost_t_min", statistic=t_min, p_value=p,
        effect_name="difference", effect=effect, ci_low=effect - half, ci_high=effect + half,
        ci_level=1 - 2 * alpha, null_effect=0.0, direction=EQUIVALENT, n=tuple(int(k) for k in n),
        alpha=alpha, margin=float(margin), p_opposite=p_opp, se=se, df=df,
    )


def tost_pvalues(d, se, df, margin):
    """TOST on an estimate `d` with standard error `se` (t with `df`): (p of equivalence, p of
    "outside the margin", the smaller one-sided t). Equivalence needs both one-sided tests, so its p
    is their maximum; "outside" needs either side, so its p is the smaller, doubled (Bonferroni).
    Vectorized: the calibration suite passes arrays."""
    with np.errstate(divide="ignore", invalid="ignore"):
        t_low, t_high = (d + margin) / se, (d - margin) / se
    p = np.maximum(sps.t.sf(t_low, df), sps.t.cdf(t_high, df))
    p_opp = np.minimum(1.0, 2 * np.minimum(sps.t.sf(t_high, df), sps.t.cdf(t_low, df)))
    return p, p_opp, np.minimum(t_low, -t_high)


def threshold_test(values, threshold: float, direction="greater", *, scale="linear", effect_name="statistic",
                   alpha=0.05, seed=0) -> TestResult:
    """Is the mean of per-seed `values` beyond `threshold` (e.g. FO-1: saving per seed >= 0.2)?

    Exact sign-flip test of values - threshold (on log values when `scale` is "log", i.e. a
    geometric mean against a ratio threshold): valid when the per-seed values are symmetric about
    the threshold under the null. CI: the t-interval of the mean at ``1 - alpha`` (back-transformed
    on the log scale), which support also requires. A threshold on a function of several groups is
    written as one per-seed value (a per-seed contrast) where the seeds are paired, or goes to
    `log_ratio_test` where they are not.
    """
    v = np.asarray(values, dtype=float)
    if v.ndim != 1 or v.size < 2:
        raise ValueError("values must be a 1-D array of at least 2 per-seed values")
    f, inv = (np.log, np.exp) if scale == "log" else (lambda z: z, lambda z: z)
    if scale == "log" and (np.any(v <= 0) or threshold <= 0):
        raise ValueError("a log-scale threshold test needs positive values and threshold")
    d = f(v) - f(threshold)
    p_hi, p_lo, min_p = sign_flip_p(d, seed=seed)
    alt = _alternative(direction)
    p, p_opp = (p_hi, p_lo) if alt == "greater" else (p_lo, p_hi)
    se, df = float(np.std(d, ddof=1) / math.sqrt(d.size)), float(d.size - 1)
    half = float(sps.t.ppf(1 - alpha / 2, df) * se)
    centre = float(f(v).mean())
    return TestResult(
        method=f"exact sign-flip test of per-seed {effect_name} against {threshold:g}"
               + (" (log scale)" if scale == "log" else "") + f"; t-interval",
        statistic_name=f"mean {effect_name}" if scale == "linear" else f"geometric mean {effect_name}",
        statistic=float(inv(centre)), p_value=p, effect_name=effect_name, effect=float(inv(centre)),
        ci_low=float(inv(centre - half)), ci_high=float(inv(centre + half)), ci_level=1 - alpha,
        null_effect=float(threshold), direction=direction, n=(v.size,), alpha=alpha, p_opposite=p_opp,
        min_p=min_p, se=se, df=df, scale=scale, details={"per_seed": v.tolist()},
    )


def log_ratio_test(groups, exponents, threshold: float, direction="greater", *, effect_name="ratio",
                   alpha=0.05) -> TestResult:
    """A product of independent groups' geometric means against a ratio threshold.

    effect = prod_i gmean(groups[i]) ** exponents[i] (exponents +1 / -1: a ratio or a ratio of
    ratios); Welch's t on the log contrast sum_i e_i mean(log g_i) with Satterthwaite's degrees of
    freedom, and the matching t-interval. For timing contrasts of independent groups, whose
    replicates are positive and roughly log-normal.
    """
    logs = [np.log(np.asarray(g, dtype=float)) for g in groups]
    if len(logs) != len(exponents) or any(l.size < 2 for l in logs):
        raise ValueError("one exponent per group, and at least 2 values in each group")
    if threshold <= 0 or any(not np.all(np.isfinite(l)) for l in logs):
        raise ValueError("a log-ratio test needs positive values and a positive threshold")
    contrast, se, df = (float(v) for v in welch_log_contrast(logs, exponents))
    if not se > 0:
        raise ValueError("a log-ratio test needs some spread within the groups")
    t = (contrast - math.log(threshold)) / se
    p_hi, p_lo = float(sps.t.sf(t, df)), float(sps.t.cdf(t, df))
    alt = _alternative(direction)
    p, p_opp = (p_hi, p_lo) if alt == "greater" else (p_lo, p_hi)
    half = float(sps.t.ppf(1 - alpha / 2, df) * se)
    return TestResult(
        method=f"Welch t on log values (Satterthwaite df {df:.1f}) of {effect_name} against {threshold:g}; "
               "t-interval", statistic_name="welch_t_log", statistic=float(t), p_value=p,
        effect_name=effect_name, effect=math.exp(contrast), ci_low=math.exp(contrast - half),
        ci_high=math.exp(contrast + half), ci_level=1 - alpha, null_effect=float(threshold), direction=direction,
        n=tuple(l.size for l in logs), alpha=alpha, p_opposite=p_opp, min_p=0.0, se=se, df=df, scale="log",
    )
