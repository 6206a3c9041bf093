"""Statistics behind every claim verdict: trend and two-group tests, bootstrap CIs, TOST, Holm.

Each test returns a `TestResult` (the evidence) and `verdict()` turns evidence into one of the three
calls that CLAIMS.md defines:

- ``supported``: the effect lies in the claimed region, the whole CI lies in it, and the (Holm-
  adjusted) p-value is below alpha;
- ``refuted``: the whole CI lies outside the claimed region (on the opposite side of no-effect);
- ``inconclusive``: anything else, including NaN evidence.

The claimed region is ``(null, inf)`` for an increasing/greater claim, ``(-inf, null)`` for a
decreasing/less one, and ``(null - margin, null + margin)`` for an equivalence claim (TOST).

Choices, and why:

- Trend: Kendall's tau-b of the per-seed values against batch size. Several seeds share each batch
  size, so the levels are heavily tied; tau-b handles ties, and its p-value here comes from a
  permutation test (values shuffled across observations) instead of scipy's normal approximation,
  so it stays valid at 3 seeds x 3 batch sizes. Jonckheere-Terpstra would test the same ordered
  alternative; tau-b was kept because scipy computes it and the tests can check it against scipy.
- Two groups: a one-sided permutation test on the difference of means (sign flips of the paired
  differences when paired), exact whenever the number of distinct permutations fits.
- Effect CIs: BCa bootstrap (scipy), resampling seeds within each group, two-sided at level
  ``1 - alpha`` (95%) although the claims are one-sided. With 5 seeds per group every bootstrap
  interval is too narrow (BCa's 95% interval misses on each side 4-5% of the time instead of
  2.5%; the percentile interval 6-7%), and the wider level pays for that. Under no effect
  `tests/test_stats.py` measures "supported" at 2-3% (the permutation p caps it at alpha anyway)
  and "refuted", which CLAIMS.md bases on the CI alone, at 5-6.5% for 5-10 seeds per group; the
  tests bound both by alpha's 99.9% binomial limit.
- TOST uses Welch/paired t-tests and the matching ``1 - 2 alpha`` t-interval: that pairing makes
  "CI inside the margins" and "TOST p < alpha" the same decision.
- Holm adjusts p-values only; CIs keep their level (simultaneous intervals would be a different,
  much wider, object and the verdict already needs the adjusted p).
"""

from __future__ import annotations

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


class Verdict(str, Enum):
    SUPPORTED = "supported"
    REFUTED = "refuted"
    INCONCLUSIVE = "inconclusive"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class TestResult:
    """Evidence for one claim: a test statistic with its p-value and an effect with its CI."""

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
    details: dict = field(default_factory=dict)


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


def decide(*, effect, ci_low, ci_high, p_value, alpha, null_effect, direction, margin=None) -> Verdict:
    """The CLAIMS.md rule on plain numbers (None reads as NaN, which never supports anything)."""
    effect, ci_low, ci_high, p_value = (math.nan if v is None else float(v) for v in (effect, ci_low, ci_high, p_value))
    lo, hi = _claimed_region(direction, null_effect, margin)
    if lo < effect < hi and lo < ci_low and ci_high < hi and p_value < alpha:
        return Verdict.SUPPORTED
    if ci_high < lo or ci_low > hi:
        return Verdict.REFUTED
    return Verdict.INCONCLUSIVE


def verdict(result: TestResult, alpha: float | None = None, p_adjusted: float | None = None) -> Verdict:
    """Verdict of `result` at `alpha` (default: its own), using `p_adjusted` when given."""
    return decide(
        effect=result.effect, ci_low=result.ci_low, ci_high=result.ci_high,
        p_value=result.p_value if p_adjusted is None else p_adjusted,
        alpha=result.alpha if alpha is None else alpha,
        null_effect=result.null_effect, direction=result.direction, margin=result.margin,
    )


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


def bootstrap_ci(samples, statistic: Callable, *, paired=False, n_boot=2000, seed=0, confidence=0.95):
    """BCa bootstrap CI of a vectorized ``statistic(*samples, axis=-1)``.

    Each sample is resampled on its own (seeds within a group), or jointly when `paired`.
    Returns (low, high, bootstrap_distribution). BCa is undefined where the bootstrap
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


def trend_test(levels, values, direction="increasing", *, effect="ratio", n_boot=2000, n_perm=9999,
               seed=0, alpha=0.05) -> TestResult:
    """Monotone trend of `values` (one per seed and level) in `levels` (e.g. batch sizes).

    Statistic: Kendall's tau-b, one-sided permutation p-value. Effect: mean at the largest level
    over (or minus) the mean at the smallest level, BCa CI resampling seeds within each group.
    """
    x = np.asarray(levels, dtype=float)
    y = np.asarray(values, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError("levels and values must be 1-D arrays of the same length")
    uniq, counts = np.unique(x, return_counts=True)
    if uniq.size < 2:
        raise ValueError("a trend needs at least two distinct levels")
    top, bottom = y[x == uniq[-1]], y[x == uniq[0]]
    _check_groups(effect, top, bottom)

    # tau-b = S / sqrt((n0 - ties_x)(n0 - ties_y)); both tie counts are invariant when values are
    # permuted, so the permutation distribution of tau-b is that of S rescaled.
    sx = np.sign(x[:, None] - x[None, :])
    n0 = x.size * (x.size - 1) / 2
    tied_y = np.count_nonzero(np.triu(y[:, None] == y[None, :], 1))
    denom = math.sqrt((n0 - np.count_nonzero(np.triu(sx == 0, 1))) * (n0 - tied_y))

    def tau_b(v, axis=-1):
        v = np.moveaxis(v, axis, -1)
        sy = np.sign(v[..., :, None] - v[..., None, :])
        return (sx * sy).sum(axis=(-1, -2)) / 2 / denom

    if denom == 0:  # every value equal: no ordering to test
        tau, p = math.nan, 1.0
    else:
        perm = sps.permutation_test((y,), tau_b, permutation_type="pairings", vectorized=True,
                                    n_resamples=n_perm, batch=1000, alternative=_alternative(direction),
                                    random_state=np.random.default_rng(seed))
        tau, p = float(perm.statistic), float(perm.pvalue)
    lo, hi, _ = bootstrap_ci((top, bottom), _effect_statistic(effect), n_boot=n_boot, seed=seed,
                             confidence=1 - alpha)
    means = [float(y[x == u].mean()) for u in uniq]
    return TestResult(
        method="Kendall tau-b, one-sided permutation test; BCa bootstrap CI of the extreme-level effect",
        statistic_name="kendall_tau_b", statistic=tau, p_value=p,
        effect_name=effect, effect=float(_effect_statistic(effect)(top, bottom)), ci_low=lo, ci_high=hi,
        ci_level=1 - alpha, null_effect=1.0 if effect == "ratio" else 0.0, direction=direction,
        n=tuple(int(c) for c in counts), alpha=alpha,
        details={"levels": uniq.tolist(), "means": means,
                 # the smallest p any data could give: one arrangement out of n! / prod(n_k!)
                 "min_p": 1.0 / _multinomial(counts)},
    )


def _multinomial(counts) -> float:
    return math.factorial(int(sum(counts))) / math.prod(math.factorial(int(c)) for c in counts)


def two_group_test(a, b, direction="greater", *, paired=False, effect="ratio", n_boot=2000, n_perm=9999,
                   seed=0, alpha=0.05) -> TestResult:
    """One-sided comparison of group `a` against group `b` ("greater": a's mean exceeds b's).

    Permutation test on the difference of means (sign flips of the differences when `paired`);
    BCa CI of mean(a)/mean(b) or mean(a) - mean(b).
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if paired and a.shape != b.shape:
        raise ValueError("paired groups must have the same length")
    _check_groups(effect, a, b)
    diff = _effect_statistic("difference")
    # a ratio claim and a difference claim assert the same ordering of positive means
    perm = sps.permutation_test((a, b), diff, permutation_type="samples" if paired else "independent",
                                vectorized=True, n_resamples=n_perm, alternative=_alternative(direction),
                                random_state=np.random.default_rng(seed))
    lo, hi, _ = bootstrap_ci((a, b), _effect_statistic(effect), paired=paired, n_boot=n_boot, seed=seed,
                             confidence=1 - alpha)
    min_p = 0.5 ** a.size if paired else 1.0 / math.comb(a.size + b.size, a.size)
    return TestResult(
        method=("paired sign-flip" if paired else "two-sample") + " permutation test on the mean difference; "
               "BCa bootstrap CI",
        statistic_name="mean_difference", statistic=float(perm.statistic), p_value=float(perm.pvalue),
        effect_name=effect, effect=float(_effect_statistic(effect)(a, b)), ci_low=lo, ci_high=hi,
        ci_level=1 - alpha, null_effect=1.0 if effect == "ratio" else 0.0, direction=direction,
        n=(a.size, b.size), alpha=alpha,
        details={"mean_a": float(a.mean()), "mean_b": float(b.mean()), "min_p": min_p},
    )


def tost(a, b, margin: float, *, paired=False, alpha=0.05) -> TestResult:
    """Two one-sided t-tests: is mean(a) - mean(b) inside (-margin, margin)?

    `b` may be a number: then mean(a) is compared with that reference value (e.g. a slope of -0.5).
    p = max of the two one-sided p-values; CI = the matching ``1 - 2 alpha`` t-interval (Welch for
    independent groups).
    """
    a = np.asarray(a, dtype=float)
    if not margin > 0:
        raise ValueError("margin must be positive")
    if paired and np.shape(b) != a.shape:
        raise ValueError("paired groups must have the same length")
    if np.ndim(b) == 0 or paired:
        x = a - np.asarray(b, dtype=float)
        lower = sps.ttest_1samp(x, -margin, alternative="greater")
        upper = sps.ttest_1samp(x, margin, alternative="less")
        ci = sps.ttest_1samp(x, 0.0).confidence_interval(1 - 2 * alpha)
        effect, n, kind = float(x.mean()), (x.size,), "paired" if paired else "one-sample"
    else:
        b = np.asarray(b, dtype=float)
        lower = sps.ttest_ind(a + margin, b, equal_var=False, alternative="greater")
        upper = sps.ttest_ind(a - margin, b, equal_var=False, alternative="less")
        ci = sps.ttest_ind(a, b, equal_var=False).confidence_interval(1 - 2 * alpha)
        effect, n, kind = float(a.mean() - b.mean()), (a.size, b.size), "Welch"
    p = max(float(lower.pvalue), float(upper.pvalue))
    return TestResult(
        method=f"TOST ({kind} t-tests), margin +-{margin:g}",
        statistic_name="tost_t_min", statistic=float(min(lower.statistic, -upper.statistic)), p_value=p,
        effect_name="difference", effect=effect, ci_low=float(ci.low), ci_high=float(ci.high),
        ci_level=1 - 2 * alpha, null_effect=0.0, direction=EQUIVALENT, n=tuple(int(k) for k in n),
        alpha=alpha, margin=float(margin),
        details={"p_lower": float(lower.pvalue), "p_upper": float(upper.pvalue)},
    )


def threshold_test(samples, statistic: Callable, threshold: float, direction="greater", *, paired=False,
                   effect_name="statistic", n_boot=2000, seed=0, alpha=0.05) -> TestResult:
    """Is a statistic of several groups beyond `threshold` (e.g. LR-1: gap closed >= 0.5)?

    `statistic(*samples, axis=-1)` must be vectorized. The CI is the BCa bootstrap interval; the
    p-value for H0 "effect on the other side of the threshold" is the share of bootstrap
    replicates there (the percentile-bootstrap test inversion, +1 smoothing), so it comes from the
    same resamples as the CI.
    """
    samples = tuple(np.asarray(s, dtype=float) for s in samples)
    alt = _alternative(direction)
    lo, hi, dist = bootstrap_ci(samples, statistic, paired=paired, n_boot=n_boot, seed=seed, confidence=1 - alpha)
    beyond = np.count_nonzero(dist <= threshold if alt == "greater" else dist >= threshold)
    p = (beyond + 1) / (dist.size + 1)
    estimate = float(statistic(*samples, axis=-1))
    return TestResult(
        method=f"bootstrap test of {effect_name} against {threshold:g}; BCa CI",
        statistic_name=effect_name, statistic=estimate, p_value=float(p),
        effect_name=effect_name, effect=estimate, ci_low=lo, ci_high=hi, ci_level=1 - alpha,
        null_effect=float(threshold), direction=direction, n=tuple(s.size for s in samples), alpha=alpha,
        details={"min_p": 1.0 / (n_boot + 1)},
    )
