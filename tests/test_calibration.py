"""Error rates of every verdict rule at every n the profiles use (lossscape.calibration).

For each test as the claims use it, 2,000 data sets are drawn under the null (the effect exactly at
the claim's boundary, with seed effects where the design has them), under a planted effect and
under the reversed one, at n = 3, 5, 6, 8, 11, 12 and alpha = 0.05 and 0.01:

- false "supported" (p < alpha under the null) and false "refuted" (opposite p < alpha under the
  null) stay within the 99.9% binomial bound of alpha: a rule that holds its level exceeds it once
  in a thousand, and the draws are seeded, so the outcome is fixed;
- where the design can reach alpha at all (its smallest p below alpha), the planted effect is found
  more often than alpha and the reversed one refuted more often than alpha, and the planted effect
  is never called refuted (nor the reversed one supported) beyond the same bound.

Run `python benchmarks/calibration.py` for the table with the power figures.
"""
import pytest

from lossscape import calibration as cal
from lossscape import stats

DRAWS = 2000


def _floor(case, n):
    """The smallest p the case's design can give at n (0 for the t-based tests)."""
    if case.name.startswith("trend"):
        return stats.design_min_p("trend", n, len(cal.LEVELS))
    if "sign-flip" in case.name:
        return stats.design_min_p("paired", n)
    return 0.0


@pytest.fixture(scope="module", params=cal.CASES, ids=[c.name for c in cal.CASES])
def case_rates(request):
    case = request.param
    return case, {n: cal.rates(case, n, DRAWS) for n in cal.NS}


@pytest.mark.parametrize("alpha", cal.ALPHAS)
def test_null_is_called_supported_or_refuted_at_most_alpha(case_rates, alpha):
    case, by_n = case_rates
    bound = cal.binomial_bound(DRAWS, alpha)
    for n, r in by_n.items():
        false_supported, false_refuted = r[("null", alpha)]
        assert false_supported <= bound, (case.name, n, alpha, false_supported, bound)
        assert false_refuted <= bound, (case.name, n, alpha, false_refuted, bound)


@pytest.mark.parametrize("alpha", cal.ALPHAS)
def test_planted_effect_is_found_and_reversed_one_refuted(case_rates, alpha):
    case, by_n = case_rates
    bound = cal.binomial_bound(DRAWS, alpha)
    reachable = [n for n in by_n if _floor(case, n) < alpha]
    assert reachable, f"{case.name}: no n reaches alpha {alpha}"
    for n in reachable:
        found, wrong_way = by_n[n][("planted", alpha)]
        wrong_way_r, refuted = by_n[n][("reversed", alpha)]
        assert found > bound and refuted > bound, (case.name, n, alpha, found, refuted)
        assert wrong_way <= bound and wrong_way_r <= bound, (case.name, n, alpha, wrong_way, wrong_way_r)
    largest = max(reachable)
    assert by_n[largest][("planted", alpha)][0] >= 0.5, (case.name, largest, "power below one half")


@pytest.mark.parametrize("alpha", cal.ALPHAS)
def test_unreachable_designs_never_call_anything(case_rates, alpha):
    """Below its floor a design cannot support or refute: the harness refuses it before training."""
    case, by_n = case_rates
    for n, r in by_n.items():
        if _floor(case, n) >= alpha:
            assert all(v == (0.0, 0.0) for k, v in r.items() if k[1] == alpha), (case.name, n)
