"""LR and batch-size schedules (lossscape.schedules) against values worked out by hand, and the
engine's per-epoch record of them. Cyclic cosine: tests/test_ensembles.py; FreezeOut:
tests/test_freezeout.py."""
import pytest

from lossscape import RunConfig, train
from lossscape.schedules import batch_size_at, lr_at

T = 1000  # total steps: only the cyclic and FreezeOut schedules read it


def test_constant():
    cfg = RunConfig(lr=0.05)
    assert [lr_at(cfg, s, T, s / 10) for s in (0, 1, 500, 999)] == [0.05] * 4


@pytest.mark.parametrize("epoch,lr", [(0.0, 0.1), (0.5, 0.175), (1.0, 0.25), (1.5, 0.325), (2.0, 0.4), (7.3, 0.4)])
def test_linear_scaling_with_warmup(epoch, lr):
    """lr 0.1 given for batch 64, run at 256: 0.4 (Goyal et al.), reached linearly over 2 epochs."""
    cfg = RunConfig(lr=0.1, batch_size=256, base_batch_size=64, schedule="linear_scaling", warmup_epochs=2,
                    epochs=10)
    assert cfg.effective_lr == pytest.approx(0.4)
    assert lr_at(cfg, 0, T, epoch) == pytest.approx(lr, rel=1e-12)


def test_linear_scaling_without_warmup_starts_at_the_scaled_rate():
    cfg = RunConfig(lr=0.1, batch_size=32, base_batch_size=64, schedule="linear_scaling")
    assert lr_at(cfg, 0, T, 0.0) == pytest.approx(0.05, rel=1e-12)


@pytest.mark.parametrize("epoch,lr", [(0.0, 0.1), (2.99, 0.1), (3.0, 0.01), (5.5, 0.01), (6.0, 0.001), (8.9, 0.001)])
def test_step_decay_of_the_lr(epoch, lr):
    cfg = RunConfig(lr=0.1, schedule="step", decay_epochs=(3, 6), decay_factor=0.1, epochs=9)
    assert lr_at(cfg, 0, T, epoch) == pytest.approx(lr, rel=1e-12)
    assert batch_size_at(cfg, int(epoch), 10_000) == 64


@pytest.mark.parametrize("epoch,batch", [(0, 32), (1, 32), (2, 64), (3, 64), (4, 128), (5, 128)])
def test_step_decay_of_the_batch_keeps_the_lr(epoch, batch):
    """Smith et al. 2018: grow the batch by 1/decay_factor where the LR would have decayed."""
    cfg = RunConfig(lr=0.1, batch_size=32, schedule="step", decay_epochs=(2, 4), decay_factor=0.5,
                    decay_target="batch", epochs=6)
    assert batch_size_at(cfg, epoch, 10_000) == batch
    assert lr_at(cfg, 0, T, epoch + 0.5) == 0.1


def test_grown_batch_is_capped_at_the_training_set():
    cfg = RunConfig(batch_size=32, schedule="step", decay_epochs=(1, 2), decay_factor=0.2, decay_target="batch",
                    epochs=3)
    assert [batch_size_at(cfg, e, 500) for e in range(3)] == [32, 160, 500]


def test_other_schedules_keep_the_batch():
    for cfg in (RunConfig(), RunConfig(schedule="cyclic_cosine", snapshots=2), RunConfig(schedule="freezeout"),
                RunConfig(schedule="linear_scaling", base_batch_size=32, warmup_epochs=1)):
        assert batch_size_at(cfg, 5, 10_000) == cfg.batch_size


# The engine: 128 training examples (n_samples=200), so a batch of b takes ceil(128 / b) steps.
TINY = RunConfig(dataset="mnist1d", n_samples=200, model="mlp", width=8, epochs=3, seed=0)


def test_engine_grows_the_batch_per_epoch():
    run = train(TINY.replace(batch_size=16, schedule="step", decay_epochs=(1, 2), decay_factor=0.5,
                             decay_target="batch", lr=0.1))
    assert [h["batch_size"] for h in run.history] == [16, 32, 64]
    assert [h["steps"] for h in run.history] == [8, 4, 2]
    assert len(run.update_norms) == 14
    assert [h["lr"] for h in run.history] == [0.1] * 3


def test_engine_decays_the_lr_per_epoch():
    run = train(TINY.replace(batch_size=32, schedule="step", decay_epochs=(1, 2), decay_factor=0.1, lr=0.1))
    assert [h["lr"] for h in run.history] == pytest.approx([0.1, 0.01, 0.001], rel=1e-12)


def test_engine_warms_up_within_the_epoch():
    """4 steps per epoch; an epoch's last step sits at fractional epoch e + 3/4. Peak 0.05 * 32/16 = 0.1:
    0.05 + 0.05 * 0.75 / 2, then 0.05 + 0.05 * 1.75 / 2, then the peak."""
    run = train(TINY.replace(batch_size=32, base_batch_size=16, schedule="linear_scaling", warmup_epochs=2))
    assert [h["lr"] for h in run.history] == pytest.approx([0.06875, 0.09375, 0.1], rel=1e-12)
