"""The plateau rule that fixes FO's budget and checks SE's cycles (lossscape.plateau)."""
import pytest

from lossscape.plateau import choose_budget, cycle_gains, plateaued, tail_gain


def test_tail_gain_is_the_rise_over_the_last_fifth():
    # 10 epochs: the last 20% are epochs 9-10, measured from the end of epoch 8
    assert tail_gain([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.80, 0.85, 0.87]) == pytest.approx(0.07)
    assert tail_gain([0.5, 0.6]) == pytest.approx(0.1)  # two epochs: the tail is the last one
    with pytest.raises(ValueError, match="val_acc"):
        tail_gain([0.5])


def test_plateaued_takes_the_mean_over_seeds():
    ok, gain = plateaued([[0.5] * 9 + [0.52], [0.5] * 10], 0.01)
    assert gain == pytest.approx(0.01) and not ok  # the rule is strict: < max_gain
    assert plateaued([[0.5] * 9 + [0.51], [0.5] * 10], 0.01)[0]


def test_choose_budget_is_the_smallest_at_which_every_model_plateaus():
    gains = {10: {"a": 0.0, "b": 0.04}, 20: {"a": 0.0, "b": 0.005}, 40: {"a": 0.0, "b": 0.0}}
    assert choose_budget(gains, 0.01) == 20
    assert choose_budget({10: {"a": 0.5}}, 0.01) is None


def test_cycle_gains_split_the_curve_into_cycles():
    curve = [0.1, 0.5, 0.6, 0.2, 0.7, 0.7]
    assert cycle_gains(curve, 2) == pytest.approx([0.1, 0.0])
    with pytest.raises(ValueError, match="cycles"):
        cycle_gains(curve, 4)
