"""The cross-entropy lossscape trains, evaluates and measures with: F.cross_entropy's function,
with its log-softmax taken over the transposed logits.

On CPU, PyTorch's log-softmax along the last dimension of [examples, classes] vectorizes within a
row, and at 10 classes a row is shorter than one vector: about 0.2 us per example. Over the classes
as dim 0 of a contiguous [classes, examples] copy it vectorizes across the examples instead: 2.0
against 21.7 us at 128 examples, 10 classes, copy included (one CPU thread). The slow kernel was 8%
of a loss-surface pass over 4,000 examples, a fifth of a stacked population's evaluation, and a
tenth of a small MLP's training step. The values are the same function rounded in another order:
equal to F.cross_entropy's to float rounding (tests/test_losses.py). The written-out gradients
(lossscape.stacked_mlp) differentiate this same arrangement.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def log_softmax(logits: Tensor) -> Tensor:
    """log_softmax(logits, -1) of [N, classes] logits, as a transposed view of a [classes, N] result."""
    return log_softmax_t(logits).t()


def log_softmax_t(logits: Tensor) -> Tensor:
    """log_softmax(logits, -1).t() of [N, classes] logits, contiguous: over the classes as dim 0."""
    return torch.log_softmax(logits.t().contiguous(), 0)


def cross_entropy(logits: Tensor, y: Tensor, reduction: str = "mean") -> Tensor:
    """F.cross_entropy(logits, y, reduction=reduction) for [N, classes] logits and [N] labels;
    class probabilities ([N, classes], float) go to F.cross_entropy itself."""
    if y.is_floating_point():
        return F.cross_entropy(logits, y, reduction=reduction)
    return F.nll_loss(log_softmax(logits), y, reduction=reduction)
