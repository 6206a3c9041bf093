"""BS: batch size and training dynamics (CLAIMS.md, family BS)."""
import numpy as np
import pytest

from lossscape import stats
from lossscape.report import figures

from ._common import per_batch, trend_arrays


@pytest.mark.claim("BS-1")
def test_bs1_training_loss_falls_more_slowly_for_larger_batches(claim, grids, setting, profile):
    """BS-1: at a fixed LR, the larger the batch, the more slowly training loss falls per epoch.

    Source 000/001: training curves for bs 32 vs 256 (no figures beyond the plot).
    Scientific parameter: batch size. Fixed: LR (the setting's), SGD without momentum, model, data.
    Stop rule: a fixed epoch budget (grid `budget`); the statistic is the full-pass training loss
    after `bs1_epoch` epochs (profile), so every batch size is compared after the same number of
    passes over the data. Claimed direction: increasing in batch size (trend test).
    Caveat: at a fixed LR a larger batch takes fewer steps per epoch; that is the claim's point.
    """
    grid = grids(setting, "budget")
    k = profile.params["bs1_epoch"]
    values = per_batch(grid, lambda run: run.history[k - 1]["train_loss"])
    figures.training_curves(claim.figure_path("training_loss.png"),
                            {f"bs {bs}": np.array([r.metric("train_loss") for r in runs]) for bs, runs in grid.by_batch().items()})
    claim.check(stats.trend_test(*trend_arrays(values), "increasing"), label=f"training loss after {k} epochs",
                seeds=list(grid.spec.seeds), configs=grid.config_labels())
