"""The BS-6 timing harness: one examples/s value per timed block and batch size."""
import numpy as np
import pytest

from lossscape import RunConfig
from lossscape.config import ConfigError
from lossscape.throughput import training_throughput

CFG = RunConfig(dataset="digits", model="mlp", width=8, lr=0.1)


def test_one_positive_rate_per_block_and_batch_size():
    out = training_throughput(CFG, [1, 8, 64], steps=3, repeats=2, warmup=1)
    assert list(out) == [1, 8, 64]
    for v in out.values():
        assert v.shape == (2,) and np.all(np.isfinite(v)) and np.all(v > 0)


def test_a_batch_larger_than_the_training_set_is_refused():
    with pytest.raises(ConfigError, match="batch_sizes"):
        training_throughput(CFG, [1, 10**6], steps=1, repeats=1)
