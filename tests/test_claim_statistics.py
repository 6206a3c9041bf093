"""The statistics the claim modules compute themselves, on hand-computed cases: X-1's critical
batch size fit, X-1/X-2's steps to a target, GEO-5's rise around a minimizer, BS-4/DP-2/LR-2's time
to the minimum and LR-1/LR-4's gap-closed rule; the rules also on null, planted and reversed data.

They are imported where the claims define them (claims/ is a package beside tests/)."""
import math

import numpy as np
import pytest

from claims._common import session_time_to_minimum_test
from lossscape.throughput import StepTimes
from claims.test_geo import GEO5_ALPHAS, _rise_around
from claims.test_lr import GAP_CLOSED, check_gap_closed
from claims.test_x import _critical_batch_size, _steps_to_target
from lossscape import stats
from lossscape.stats import Verdict


class FakeRun:
    """What the helpers read of a Run: per-epoch metrics, the best epoch, the seed."""

    def __init__(self, seed=0, best_epoch=None, **metrics):
        self.best_epoch = best_epoch
        self.metrics = metrics
        self.config = type("Cfg", (), {"seed": seed})()

    def metric(self, name):
        return np.array(self.metrics[name], dtype=float)


class FakeGrid:
    """A grid's runs by batch size, as Grid.by_batch gives them."""

    def __init__(self, runs_by_batch, population=True):
        self.runs_by_batch = runs_by_batch
        self.batch_sizes = sorted(runs_by_batch)
        self.spec = type("Spec", (), {"population": population, "name": "fake"})()

    def by_batch(self):
        return self.runs_by_batch


# -- B_crit = E_min / S_min from S(B) = S_min + E_min / B -------------------------------------

def test_critical_batch_size_two_points_by_hand():
    # S_min + E_min = 3 and S_min + E_min / 2 = 2: E_min = 2, S_min = 1, B_crit = 2
    b_crit, s_min, e_min = _critical_batch_size([1, 2], [3.0, 2.0])
    assert (float(s_min), float(e_min), float(b_crit)) == pytest.approx((1.0, 2.0, 2.0))


def test_critical_batch_size_recovers_a_planted_curve_and_fits_rows_at_once():
    sizes = np.array([16, 32, 64, 128, 256, 512, 1024])
    exact = 100 + 6400 / sizes  # S_min 100, E_min 6400: B_crit 64
    noisy = exact * np.exp(np.random.default_rng(0).normal(0, 0.05, (200, sizes.size)))
    b_crit, s_min, e_min = _critical_batch_size(sizes, np.vstack([exact, noisy]))
    assert (b_crit[0], s_min[0], e_min[0]) == pytest.approx((64, 100, 6400))
    assert b_crit.shape == (201,) and 0.7 < np.median(b_crit[1:]) / 64 < 1.4


def test_critical_batch_size_is_least_squares_on_relative_residuals():
    sizes = np.array([8, 16, 64, 256])
    steps = np.array([900.0, 420.0, 200.0, 190.0])
    b_crit, s_min, e_min = _critical_batch_size(sizes, steps)
    design = np.stack([1 / steps, 1 / (sizes * steps)], axis=1)  # (S_min + E_min / B) / S, target 1
    (s_ref, e_ref), *_ = np.linalg.lstsq(design, np.ones(len(sizes)), rcond=None)
    assert (float(s_min), float(e_min), float(b_crit)) == pytest.approx((s_ref, e_ref, e_ref / s_ref))


def test_critical_batch_size_without_saturation_or_without_a_scaling_regime():
    # steps fall faster than 1/B: S_min + E_min = 100, S_min + E_min / 2 = 40 gives S_min = -20: no saturation
    assert float(_critical_batch_size([1, 2], [100.0, 40.0])[0]) == math.inf
    # steps rise with the batch (reversed): E_min = -20 < 0, no regime where a larger batch helps
    assert float(_critical_batch_size([1, 2], [10.0, 20.0])[0]) == 0.0


def test_a_batch_size_that_never_reached_the_target_drops_out_of_the_fit():
    with_inf = _critical_batch_size([1, 2, 4], [3.0, 2.0, math.inf])
    assert [float(v) for v in with_inf] == pytest.approx([float(v) for v in _critical_batch_size([1, 2], [3.0, 2.0])])


# -- optimizer steps until the validation loss first reaches the target ---------------

RUN = FakeRun(steps=[10, 10, 10], val_loss=[2.0, 1.0, 0.5])  # initial validation loss 3.0


@pytest.mark.parametrize("target, steps", [
    (1.5, 15.0),       # between step 10 (2.0) and step 20 (1.0), halfway
    (1.0, 20.0),       # reached exactly at the second evaluation
    (2.5, 5.0),        # between the initial weights (3.0, step 0) and step 10 (2.0)
    (3.0, 0.0),        # the initial weights already reach it
    (0.75, 25.0),
    (0.1, math.inf),   # never reached
])
def test_steps_to_target_by_hand(target, steps):
    assert _steps_to_target(RUN, target, 3.0) == pytest.approx(steps)


def test_steps_to_target_takes_the_first_crossing_and_uneven_epochs():
    run = FakeRun(steps=[4, 8, 16], val_loss=[1.0, 2.0, 0.0])  # crosses 1.5 going down, up, down again
    assert _steps_to_target(run, 1.5, 3.0) == pytest.approx(4 * (3.0 - 1.5) / (3.0 - 1.0))
    assert _steps_to_target(run, 0.5, 3.0) == pytest.approx(12 + 16 * (2.0 - 0.5) / 2.0)


# -- GEO-5: the mean rise of the loss within 0.25 of a minimizer along the line ------------------

def test_rise_around_by_hand():
    a = GEO5_ALPHAS
    # f(a) = a^2 around 0: the mean of a^2 over a = +-0.05 .. +-0.25
    assert _rise_around(a ** 2, 0.0) == pytest.approx(2 * (0.05**2 + 0.1**2 + 0.15**2 + 0.2**2 + 0.25**2) / 10)
    # f(a) = 3 |a - 1| around 1: 3 x the mean distance 0.15
    assert _rise_around(3 * np.abs(a - 1), 1.0) == pytest.approx(0.45)
    # a straight line rises on one side as much as it falls on the other
    assert _rise_around(5 * a, 1.0) == pytest.approx(0.0, abs=1e-12)


def test_rise_around_takes_the_alphas_at_exactly_0_25_and_leaves_out_the_centre():
    a = GEO5_ALPHAS
    edge = np.where(np.isclose(np.abs(a - 1.0), 0.25), 1.0, 0.0)
    assert _rise_around(edge, 1.0) == pytest.approx(2 / 10)
    beyond = np.where(np.isclose(np.abs(a), 0.3), 1.0, 0.0) + np.where(a == 0, -7.0, 0.0)
    assert _rise_around(beyond, 0.0) == pytest.approx(7.0)  # only the centre's value counts; 0.3 is out


def test_rise_is_larger_around_the_steeper_minimizer():
    a = GEO5_ALPHAS
    curve = np.where(a < 0.5, 0.2 * a ** 2, 3.0 * (a - 1) ** 2)  # flat around 0, steep around 1
    assert _rise_around(curve, 1.0) > _rise_around(curve, 0.0) > 0


# -- BS-4 / DP-2 / LR-2: time to the minimum from this session's step times --------------------

def _time_inputs(epochs_small, epochs_large, times_small, times_large, steps=(4, 1)):
    """An early-stopping grid (best epochs per seed) and session step times per block."""
    early = FakeGrid({16: [FakeRun(s, best_epoch=e) for s, e in enumerate(epochs_small)],
                      256: [FakeRun(s, best_epoch=e) for s, e in enumerate(epochs_large)]})
    early.configs = {(16, 0.1): type("Cfg", (), {"device": "cpu"})()}
    times = StepTimes({16: np.array(times_small, float), 256: np.array(times_large, float)},
                      {16: np.full(len(times_small), 0.5), 256: np.full(len(times_large), 0.5)},
                      {16: steps[0], 256: steps[1]})
    return early, times


def test_time_to_minimum_by_hand():
    # epochs: geometric means 20 (small) and 10 (large); epoch time = steps per epoch x step time:
    # 4 x (1, 4) -> geometric mean 8 at bs 16, 1 x (3, 12) -> 6 at bs 256; ratio (10 x 6) / (20 x 8) = 0.375
    early, times = _time_inputs([10, 40], [5, 20], [1.0, 4.0], [3.0, 12.0])
    test, table, context = session_time_to_minimum_test(early, times)
    assert test.effect == pytest.approx(0.375) and test.n == (2, 2, 2, 2)
    # per batch: steps per epoch, median step (ms), mean epochs, steps-only time, time with one 0.5 s evaluation per epoch
    assert table["rows"] == [[16, 4, "2.5e+03", "25", "250", "262"], [256, 1, "7.5e+03", "12.5", "93.8", "100"]]
    assert "threads" in context


def _lognormal(rng, centre, n=5):
    return centre * np.exp(rng.normal(0, 0.1, n))


@pytest.mark.parametrize("large_over_small, expected", [
    (3.0, Verdict.SUPPORTED),      # planted: the large batch takes 3x the time
    (1 / 3, Verdict.REFUTED),      # reversed
    (1.0, Verdict.INCONCLUSIVE),   # null: the same groups at both sizes
])
def test_time_to_minimum_null_planted_reversed(large_over_small, expected):
    rng = np.random.default_rng(1)
    epochs, times = _lognormal(rng, 20), _lognormal(rng, 1.0)
    large = (epochs, times * large_over_small) if large_over_small != 1.0 else (epochs, times)
    early, step_times = _time_inputs(epochs, large[0], times, large[1], steps=(1, 1))
    test, _, _ = session_time_to_minimum_test(early, step_times, threshold=1.0, direction="greater")
    assert stats.verdict(test) == expected


# -- LR-1 / LR-4: does linear scaling close more than half the large-batch gap? -----------------

class FakeClaim:
    def check(self, result, **fields):
        self.result, self.fields = result, fields
        return result


def _gap(scaled_shift, small_shift=-0.5, noise=(0.0, 0.0, 0.0, 0.0, 0.0), premise="greater"):
    """unscaled around 1; small = unscaled + small_shift; scaled = unscaled + scaled_shift + noise."""
    unscaled = np.array([1.0, 1.1, 0.9, 1.05, 0.95])
    small = unscaled + small_shift
    scaled = unscaled + scaled_shift + np.asarray(noise)
    claim = FakeClaim()
    check_gap_closed(claim, unscaled, scaled, small, premise=premise, quantity="loss")
    return claim


def test_gap_closed_by_hand():
    # unscaled mean 1.0, small 0.5, scaled 0.55: 90% of the gap closed; per seed (u - s) - 0.5 (u - small) = 0.2
    claim = _gap(-0.45)
    assert claim.fields["label"] == "loss: gap closed 0.9 (claimed > 0.5);"
    assert claim.result.details["per_seed"] == pytest.approx([0.2] * 5)
    assert claim.fields["tables"][0]["rows"] == [["unscaled", "1"], ["scaled", "0.55"], ["small batch", "0.5"]]
    assert GAP_CLOSED == 0.5


@pytest.mark.parametrize("scaled_shift, noise, expected", [
    (-0.45, (0.01, -0.02, 0.0, 0.02, -0.01), Verdict.SUPPORTED),   # planted: 90% of the gap closed
    (+0.05, (0.01, -0.02, 0.0, 0.02, -0.01), Verdict.REFUTED),     # reversed: scaling widens the gap
    (-0.25, (0.01, -0.01, 0.02, -0.02, 0.0), Verdict.INCONCLUSIVE),  # null: exactly half closed, noise around it
])
def test_gap_closed_null_planted_reversed(scaled_shift, noise, expected):
    assert stats.verdict(_gap(scaled_shift, noise=noise).result) == expected


def test_gap_closed_on_a_quantity_where_the_large_batch_is_lower():
    """premise "less" (an accuracy): the same rule with the gap's sign turned."""
    claim = _gap(+0.45, small_shift=+0.5, noise=(0.01, -0.02, 0.0, 0.02, -0.01), premise="less")
    assert stats.verdict(claim.result) == Verdict.SUPPORTED and "gap closed 0.9" in claim.fields["label"]


# gap_closed divides by a zero gap here (a RuntimeWarning, effect inf): the verdict is still inconclusive
@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning")
def test_no_gap_to_close_is_inconclusive_with_the_gaps_ci():
    claim = _gap(-0.45, small_shift=0.0)  # small batch no better than the unscaled large batch
    assert claim.result == Verdict.INCONCLUSIVE
    assert claim.fields["measured_text"].startswith("no loss gap to close: unscaled - small = 0 [")
    # and a gap on the wrong side of the premise is no gap to close either
    assert _gap(-0.45, small_shift=+0.5).result == Verdict.INCONCLUSIVE
