"""X-1's band and the rule that the batch grid reaches beyond it (claims/test_x.py), by hand."""
import pytest

from claims.test_x import reaches_beyond, x1_band


def test_the_band_is_a_factor_of_ten_either_way():
    assert x1_band(200.0) == pytest.approx((20.0, 2000.0))


def test_a_grid_inside_the_band_on_either_side_cannot_fail_the_claim():
    """The cpu profile's former grid 16..1024 against B_simple ~200: nothing above 2,000, so a
    B_crit beyond the band could never be measured. The cpu-long grid 8..8192 against 395 (its
    pilot): 8 < 39.5 and 8192 > 3950."""
    assert not reaches_beyond([16, 64, 256, 1024], x1_band(200.0))
    assert not reaches_beyond([8, 64, 256, 1024], x1_band(200.0))      # below it, not above
    assert not reaches_beyond([32, 256, 4096], x1_band(200.0))         # above it, not below
    assert reaches_beyond([8, 16, 64, 256, 1024, 4096, 8192], x1_band(395.0))
    assert not reaches_beyond([8, 4096], x1_band(410.0))               # 4096 < 4100: the edge itself is not beyond
