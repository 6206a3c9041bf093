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


def test_cuda_blocks_are_timed_by_events_after_a_synchronize(monkeypatch):
    """The CUDA path without a GPU: stand-in events record the order of calls; the time returned
    is the events' elapsed time (ms -> s), read only after the end event has completed."""
    import torch

    from lossscape.throughput import block_timer

    calls = []

    class Event:
        def __init__(self, enable_timing):
            assert enable_timing
            self.name = "start" if not any(c.endswith("created") for c in calls) else "end"
            calls.append(f"{self.name} created")

        def record(self):
            calls.append(f"{self.name} recorded")

        def synchronize(self):
            calls.append(f"{self.name} synchronized")

        def elapsed_time(self, other):
            assert calls[-1] == "end synchronized"
            return 250.0

    monkeypatch.setattr(torch.cuda, "Event", Event)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: calls.append("device synchronized"))
    seconds = block_timer(torch.device("cuda"))(lambda: calls.append("work"))
    assert seconds == 0.25
    assert calls == ["start created", "end created", "device synchronized", "start recorded", "work",
                     "end recorded", "end synchronized"]
