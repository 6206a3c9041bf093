"""Every verdict rule against simulated truth, and every p-value against an independent oracle.

Error-rate tests draw many data sets with fixed seeds and compare the count of wrong calls with
the 99.9% upper point of Binomial(draws, alpha): a correct rule exceeds it 1 time in 1000 (and
with fixed seeds the outcome is fixed), a rule that is anti-conservative by a few points fails.
Small n_boot / n_perm keep the whole module to a few seconds.
"""

import itertools
import math

import numpy as np
import pytest
from scipy import stats as sps

from lossscape.stats import (
    Verdict, bootstrap_ci, decide, design_min_p, holm, lean, log_ratio_test, mean_ci, minimum_detectable_effect,
    required_seeds, sign_flip_p, stratified_kendall_p, threshold_test, tost, trend_test, two_group_test, verdict,
)

ALPHA = 0.05
FAST = dict(n_boot=300, n_perm=300)
LEVELS = np.repeat([16, 64, 256, 1024], 5)  # 4 batch sizes x 5 seeds


def max_false_calls(draws, rate=ALPHA):
    return sps.binom.ppf(0.999, draws, rate)


def lognormal_trend(rng, ratio, cv=0.3, levels=LEVELS):
    """Positive per-seed metric whose mean grows by `ratio` from the smallest to the largest level."""
    pos = np.log(levels / levels.min()) / np.log(levels.max() / levels.min())
    return ratio**pos * rng.lognormal(-cv**2 / 2, cv, levels.size)


def calls(fn, draws, seed):
    rng = np.random.default_rng(seed)
    out = [verdict(fn(rng, i)) for i in range(draws)]
    return {v: out.count(v) for v in Verdict}


# -- trend ---------------------------------------------------------------------------------------

def test_trend_null_is_rarely_supported_or_refuted():
    draws = 400
    c = calls(lambda rng, i: trend_test(LEVELS, lognormal_trend(rng, 1.0), seed=i, **FAST), draws, 1)
    assert c[Verdict.SUPPORTED] <= max_false_calls(draws)
    assert c[Verdict.REFUTED] <= max_false_calls(draws)


def test_trend_planted_effect_is_found():
    # sharpness-like: 2x from bs 16 to bs 1024 with 30% seed-to-seed spread
    c = calls(lambda rng, i: trend_test(LEVELS, lognormal_trend(rng, 2.0), seed=i, **FAST), 100, 2)
    assert c[Verdict.SUPPORTED] >= 90


def test_trend_reversed_effect_is_refuted():
    c = calls(lambda rng, i: trend_test(LEVELS, lognormal_trend(rng, 1 / 2.0), seed=i, **FAST), 100, 3)
    assert c[Verdict.REFUTED] >= 90 and c[Verdict.SUPPORTED] == 0


def test_trend_decreasing_direction_and_difference_effect():
    rng = np.random.default_rng(4)
    y = np.log(lognormal_trend(rng, 1 / 3, cv=0.1))  # negative values: only a difference is meaningful
    r = trend_test(LEVELS, y, "decreasing", effect="difference", **FAST)
    assert r.null_effect == 0.0 and r.effect < 0 and verdict(r) is Verdict.SUPPORTED
    with pytest.raises(ValueError, match="positive"):
        trend_test(LEVELS, y, "decreasing", effect="ratio")


def test_trend_statistic_and_p_match_exhaustive_permutation():
    levels = np.array([1, 1, 2, 2, 3, 3])  # tied levels, as with several seeds per batch size
    values = np.array([0.3, 0.1, 0.5, 0.2, 0.9, 0.6])
    r = trend_test(levels, values, "increasing", n_boot=200)  # 720 permutations < n_perm: exact
    tau = sps.kendalltau(levels, values).statistic
    null = [sps.kendalltau(levels, np.array(p)).statistic for p in itertools.permutations(values)]
    assert r.statistic == pytest.approx(tau)
    assert r.p_value == pytest.approx(np.mean(np.array(null) >= tau - 1e-12))
    assert r.effect == pytest.approx(values[4:].mean() / values[:2].mean())
    assert r.n == (2, 2, 2)
    assert r.min_p == pytest.approx(1 / 90)  # 6! / (2! 2! 2!) arrangements


def test_blocked_trend_p_matches_within_seed_enumeration():
    """The stratified test against brute force: every within-seed permutation, ties included."""
    levels, blocks = np.repeat([1, 2, 3], 3), np.tile(np.arange(3), 3)
    values = np.array([0.2, 1.0, 0.5, 0.2, 0.7, 0.9, 0.8, 0.7, 1.4])  # a tie in seed 0, one in seed 1
    groups = [np.flatnonzero(blocks == b) for b in range(3)]

    def s_of(v):
        return sum(np.sign(levels[i] - levels[j]) * np.sign(v[i] - v[j])
                   for g in groups for a, i in enumerate(g) for j in g[a + 1:])

    null = []
    for perms in itertools.product(*[list(itertools.permutations(g)) for g in groups]):
        v = values.copy()
        for g, p in zip(groups, perms):
            v[g] = values[list(p)]
        null.append(s_of(v))
    null, observed = np.array(null), s_of(values)
    s, p_hi, p_lo, floor = stratified_kendall_p(levels, values, blocks)
    assert s == observed
    assert p_hi == pytest.approx(np.mean(null >= observed)) and p_lo == pytest.approx(np.mean(null <= observed))
    assert floor == pytest.approx(np.mean(null == null.max()))
    r = trend_test(levels, values, "increasing", blocks=blocks, n_boot=200)
    assert (r.p_value, r.p_opposite) == pytest.approx((p_hi, p_lo))
    assert r.effect == pytest.approx(values[levels == 3].mean() / values[levels == 1].mean())


def test_blocked_trend_ignores_seed_effects_that_swamp_the_pooled_test():
    """Seeds as blocks: a consistent within-seed rise under large seed-to-seed offsets is found by
    the stratified test and missed by permutations over all cells."""
    rng = np.random.default_rng(21)
    levels, blocks = np.repeat([16, 64, 256, 1024], 5), np.tile(np.arange(5), 4)
    values = 10 + 3 * rng.standard_normal(5)[blocks] + 0.3 * np.repeat(np.arange(4), 5) + 0.1 * rng.standard_normal(20)
    blocked = trend_test(levels, values, blocks=blocks, effect="difference", **FAST)
    pooled = trend_test(levels, values, effect="difference", **FAST)
    assert blocked.p_value < 1e-4 < 0.05 < pooled.p_value


def test_blocked_trend_ci_resamples_whole_seeds():
    """A seed's values stay together: with identical within-seed differences the CI is a point."""
    levels, blocks = np.repeat([1, 2], 4), np.tile(np.arange(4), 2)
    values = np.concatenate([[1.0, 5.0, 9.0, 3.0], [2.0, 6.0, 10.0, 4.0]])
    r = trend_test(levels, values, blocks=blocks, effect="difference", n_boot=300)
    assert r.ci_low == r.ci_high == 1.0


def test_trend_constant_values_are_inconclusive():
    r = trend_test(LEVELS, np.ones(LEVELS.size), **FAST)
    assert verdict(r) is Verdict.INCONCLUSIVE


# -- two groups ----------------------------------------------------------------------------------

@pytest.mark.parametrize("paired", [False, True])
def test_two_group_null_is_rarely_supported_or_refuted(paired):
    draws = 400
    # 10 per group: with 5 the exact p can never go below 1/252 (1/32 paired); here it can
    c = calls(lambda rng, i: two_group_test(rng.lognormal(0, 0.3, 10), rng.lognormal(0, 0.3, 10),
                                            paired=paired, seed=i, **FAST), draws, 5)
    assert c[Verdict.SUPPORTED] <= max_false_calls(draws)
    assert c[Verdict.REFUTED] <= max_false_calls(draws)


def test_two_group_planted_and_reversed():
    def run(ratio):
        return lambda rng, i: two_group_test(ratio * rng.lognormal(0, 0.2, 8), rng.lognormal(0, 0.2, 8),
                                             "greater", seed=i, **FAST)
    assert calls(run(1.5), 100, 6)[Verdict.SUPPORTED] >= 90
    assert calls(run(1 / 1.5), 100, 7)[Verdict.REFUTED] >= 90


def test_two_group_p_matches_exhaustive_enumeration():
    a, b = np.array([3.1, 2.5, 4.0, 3.3]), np.array([2.0, 2.9, 1.7, 2.2])
    pooled = np.concatenate([a, b])
    obs = a.mean() - b.mean()
    null = [pooled[list(i)].mean() - np.delete(pooled, list(i)).mean()
            for i in itertools.combinations(range(8), 4)]
    r = two_group_test(a, b, "greater", n_boot=200)
    assert r.p_value == pytest.approx(np.mean(np.array(null) >= obs - 1e-12))
    assert r.effect == pytest.approx(a.mean() / b.mean())


def test_paired_p_matches_sign_flip_enumeration():
    a, b = np.array([3.1, 2.5, 4.0, 3.3, 2.8]), np.array([2.0, 2.9, 1.7, 2.2, 2.7])
    d = a - b
    null = [np.mean(d * s) for s in itertools.product([1, -1], repeat=5)]
    r = two_group_test(a, b, "greater", paired=True, effect="difference", n_boot=200)
    assert r.p_value == pytest.approx(np.mean(np.array(null) >= d.mean() - 1e-12))
    assert r.p_opposite == pytest.approx(np.mean(np.array(null) <= d.mean() + 1e-12))
    assert r.min_p == 1 / 32


# -- threshold -----------------------------------------------------------------------------------

def test_threshold_test_is_the_sign_flip_test_of_values_minus_threshold():
    values = np.array([0.31, 0.18, 0.42, 0.27, 0.35, 0.22])
    d = values - 0.2
    null = [np.sum(d * s) for s in itertools.product([1, -1], repeat=6)]
    r = threshold_test(values, 0.2, "greater")
    assert r.p_value == pytest.approx(np.mean(np.array(null) >= d.sum() - 1e-12))
    assert r.p_opposite == pytest.approx(np.mean(np.array(null) <= d.sum() + 1e-12))
    assert r.min_p == 1 / 64 and r.effect == pytest.approx(values.mean())
    t_lo, t_hi = sps.ttest_1samp(values, 0.2).confidence_interval(0.95)
    assert (r.ci_low, r.ci_high) == pytest.approx((t_lo, t_hi))


def test_threshold_on_the_log_scale_tests_the_geometric_mean():
    ratios = np.array([1.3, 1.1, 1.6, 1.2, 1.4, 1.25, 1.5, 1.35, 1.15, 1.45, 1.3])
    r = threshold_test(ratios, 1.0, "greater", scale="log")
    assert r.effect == pytest.approx(np.exp(np.log(ratios).mean()))
    assert r.p_value == 0.5**11 and verdict(r) is Verdict.SUPPORTED
    assert verdict(threshold_test(1 / ratios, 1.0, "greater", scale="log")) is Verdict.REFUTED


def test_sign_flip_beyond_the_exact_range_is_monte_carlo_with_its_floor():
    x = np.random.default_rng(22).normal(3.0, 1.0, 20)  # no random flip beats the observed sum
    p_hi, p_lo, floor = sign_flip_p(x, n_mc=999)
    assert floor == 1 / 1000 and p_hi == pytest.approx(1 / 1000) and p_lo > 0.99


def test_log_ratio_matches_welch_on_log_values():
    a, b = np.array([2.0, 2.2, 1.9, 2.1]), np.array([1.0, 1.2, 0.9])
    r = log_ratio_test((a, b), (1, -1), 1.5, "greater")
    welch = sps.ttest_ind(np.log(a) - np.log(1.5), np.log(b), equal_var=False, alternative="greater")
    assert r.p_value == pytest.approx(welch.pvalue)
    assert r.effect == pytest.approx(sps.gmean(a) / sps.gmean(b))
    assert r.p_opposite == pytest.approx(1 - welch.pvalue)


# -- TOST ----------------------------------------------------------------------------------------

def test_tost_equal_groups_are_equivalent_and_shifted_ones_are_not():
    margin = 1.0  # one standard deviation
    equal = calls(lambda rng, i: tost(rng.normal(0, 1, 30), rng.normal(0, 1, 30), margin), 100, 11)
    shifted = calls(lambda rng, i: tost(rng.normal(3 * margin, 1, 30), rng.normal(0, 1, 30), margin), 100, 12)
    assert equal[Verdict.SUPPORTED] >= 90
    assert shifted[Verdict.SUPPORTED] == 0 and shifted[Verdict.REFUTED] >= 90


def test_tost_at_margin_is_rarely_called_equivalent():
    draws = 400
    c = calls(lambda rng, i: tost(rng.normal(1.0, 1, 10), rng.normal(0, 1, 10), 1.0), draws, 13)
    assert c[Verdict.SUPPORTED] <= max_false_calls(draws)


def test_tost_matches_welch_formula():
    a, b, margin = np.array([1.0, 1.4, 0.8, 1.2, 1.1]), np.array([0.9, 1.0, 1.3, 0.7, 1.2, 1.0]), 0.5
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    se = math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (a.size - 1) + vb**2 / (b.size - 1))
    d = a.mean() - b.mean()
    p = max(sps.t.sf((d + margin) / se, df), sps.t.cdf((d - margin) / se, df))
    r = tost(a, b, margin)
    assert r.p_value == pytest.approx(p)
    half = sps.t.ppf(0.95, df) * se
    assert (r.ci_low, r.ci_high) == pytest.approx((d - half, d + half))


def test_tost_one_sample_against_reference_value():
    slopes = np.array([-0.52, -0.49, -0.50, -0.47, -0.53, -0.51])
    r = tost(slopes, -0.5, 0.1)
    assert r.effect == pytest.approx(slopes.mean() + 0.5)
    assert verdict(r) is Verdict.SUPPORTED
    assert verdict(tost(slopes, -1.0, 0.1)) is Verdict.REFUTED


# -- Holm ----------------------------------------------------------------------------------------

def test_holm_worked_example():
    # sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 = 0.04 -> carried up to 0.06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])  # capped


def test_holm_nan_is_left_out_of_the_family():
    out = holm([0.01, np.nan, 0.02])
    assert np.isnan(out[1]) and out[[0, 2]] == pytest.approx([0.02, 0.02])


def step_down_rejections(p, alpha):
    """Holm's procedure as he states it: reject in ascending order until p_(k) > alpha / (m - k)."""
    rejected = np.zeros(len(p), bool)
    for k, i in enumerate(np.argsort(p)):
        if p[i] > alpha / (len(p) - k):
            break
        rejected[i] = True
    return rejected


def test_holm_adjusted_p_reproduces_the_step_down_procedure():
    rng = np.random.default_rng(14)
    for _ in range(200):
        p = rng.uniform(0, 0.1, rng.integers(1, 12)) ** rng.uniform(1, 3)
        adj = holm(p)
        assert np.all(adj >= p) and np.all(adj <= 1)
        order = np.argsort(p)
        assert np.all(np.diff(adj[order]) >= 0)
        for alpha in (0.01, 0.05, 0.1):
            assert np.array_equal(adj <= alpha, step_down_rejections(p, alpha))


# -- the rule itself -----------------------------------------------------------------------------

@pytest.mark.parametrize("effect, lo, hi, p, p_opp, direction, expected", [
    (2.0, 1.5, 3.0, 0.001, 0.999, "increasing", Verdict.SUPPORTED),
    (2.0, 1.5, 3.0, 0.2, 0.8, "increasing", Verdict.INCONCLUSIVE),    # CI fine, p too large
    (2.0, 0.9, 3.0, 0.001, 0.999, "increasing", Verdict.INCONCLUSIVE),  # CI touches no-effect
    (0.5, 0.3, 0.8, 0.9, 0.001, "increasing", Verdict.REFUTED),
    (0.5, 0.3, 0.8, 0.9, 0.2, "increasing", Verdict.INCONCLUSIVE),     # CI alone never refutes
    (0.5, 0.3, 0.8, 0.9, None, "increasing", Verdict.INCONCLUSIVE),    # nor does a missing opposite test
    (0.5, 0.3, 0.8, 0.001, 0.999, "decreasing", Verdict.SUPPORTED),
    (2.0, 1.5, 3.0, 0.9, 0.001, "less", Verdict.REFUTED),
    (float("nan"), float("nan"), float("nan"), 0.001, 0.001, "greater", Verdict.INCONCLUSIVE),
])
def test_decide_table(effect, lo, hi, p, p_opp, direction, expected):
    got = decide(effect=effect, ci_low=lo, ci_high=hi, p_value=p, p_opposite=p_opp, alpha=ALPHA, null_effect=1.0,
                 direction=direction)
    assert got is expected


def test_lean_says_which_side_an_estimate_falls():
    assert lean(1.2, 1.0, "increasing") == "supported" and lean(0.8, 1.0, "increasing") == "refuted"
    assert lean(0.05, 0.0, "equivalent", margin=0.1) == "supported" and lean(float("nan"), 0, "less") == ""


def test_design_floors_and_required_seeds():
    assert design_min_p("paired", 5) == 1 / 32 and design_min_p("trend", 3, 3) == 1 / 216
    assert design_min_p("continuous", 3) == 0.0
    assert required_seeds("paired", 0.001) == 10 and required_seeds("trend", 0.001, 4) == 3
    assert required_seeds("paired", 1 / 32) == 6  # the floor must lie strictly below alpha


def test_minimum_detectable_effect_is_the_normal_theory_shift():
    """MDE against an independent computation, and its use: a planted effect of that size is found
    about 80% of the time by the paired t-based approximation it stands for."""
    rng = np.random.default_rng(23)
    d = rng.normal(0.0, 1.0, 12)
    r = tost(d, 0.0, 1.0)  # one-sample: se = sd / sqrt(n), df = n - 1
    se = d.std(ddof=1) / math.sqrt(12)
    assert minimum_detectable_effect(r, 0.05) == pytest.approx((sps.t.ppf(0.95, 11) + sps.t.ppf(0.9, 11)) * se)
    a = rng.lognormal(0.0, 0.2, 12)
    res = threshold_test(a, 1.0, "greater", scale="log")
    shift = (sps.t.ppf(0.99, 11) + sps.t.ppf(0.8, 11)) * res.se
    assert res.mde(0.01) == pytest.approx(math.exp(shift))
    res5 = threshold_test(a[:5], 1.0, "greater", scale="log")
    assert res5.mde(0.01) == math.inf  # 2^-5 cannot go below 0.01


def test_adjusted_p_can_only_take_support_away():
    r = trend_test(LEVELS, lognormal_trend(np.random.default_rng(15), 2.0), blocks=np.tile(np.arange(5), 4), **FAST)
    assert verdict(r) is Verdict.SUPPORTED
    assert verdict(r, p_adjusted=0.5) is Verdict.INCONCLUSIVE
    assert verdict(r, alpha=r.p_value / 2) is Verdict.INCONCLUSIVE


def test_bootstrap_ci_is_seeded_and_brackets_the_estimate():
    rng = np.random.default_rng(16)
    a, b = rng.lognormal(0, 0.3, 6), rng.lognormal(0, 0.3, 6)
    ratio = lambda x, y, axis=-1: x.mean(axis) / y.mean(axis)
    first, again = bootstrap_ci((a, b), ratio, n_boot=300, seed=3), bootstrap_ci((a, b), ratio, n_boot=300, seed=3)
    assert first[:2] == again[:2]
    assert first[0] < a.mean() / b.mean() < first[1]
    assert first[2].shape == (300,)


def test_mean_ci_agrees_with_the_t_interval_for_normal_data():
    x = np.random.default_rng(17).normal(10.0, 1.0, 40)
    lo, hi = mean_ci(x, n_boot=2000)
    t_lo, t_hi = sps.ttest_1samp(x, 0.0).confidence_interval(0.95)
    assert lo == pytest.approx(t_lo, abs=0.1) and hi == pytest.approx(t_hi, abs=0.1)


def test_bootstrap_ci_of_unanimous_seeds_is_a_point_not_nan():
    """Every seed agrees within each group (a discrete statistic): the interval is the point."""
    from lossscape.stats import bootstrap_ci
    diff = lambda a, b, axis=-1: np.mean(a, axis=axis) - np.mean(b, axis=axis)
    lo, hi, _ = bootstrap_ci((np.full(5, 3.0), np.full(5, 1.0)), diff)
    assert lo == hi == 2.0
    result = trend_test(np.repeat([16, 64, 256], 5), np.repeat([1.0, 2.0, 3.0], 5), "increasing", effect="difference")
    assert result.ci_low == result.ci_high == 2.0 and verdict(result) == Verdict.SUPPORTED
