"""lossscape.losses against F.cross_entropy, the function it computes: equal to float rounding,
values and gradients, at the shapes it meets (a batch, a whole split, a stacked population's rows)."""
import pytest
import torch
import torch.nn.functional as F

from lossscape import losses


@pytest.mark.parametrize("n, classes", [(1, 10), (17, 10), (64, 10), (4096, 10), (33, 2), (50, 100)])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cross_entropy_equals_torch_to_rounding(n, classes, reduction, dtype):
    gen = torch.Generator().manual_seed(n + classes)
    logits = (torch.randn(n, classes, generator=gen, dtype=dtype) * 5).requires_grad_(True)
    y = torch.randint(0, classes, (n,), generator=gen)
    mine, ref = losses.cross_entropy(logits, y, reduction), F.cross_entropy(logits, y, reduction=reduction)
    tol = dict(rtol=1e-6, atol=1e-6) if dtype == torch.float32 else dict(rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(mine, ref, **tol)
    (g_mine,), (g_ref,) = (torch.autograd.grad(t.sum(), logits) for t in (mine, ref))
    torch.testing.assert_close(g_mine, g_ref, **tol)


def test_log_softmax_is_the_last_dimension_of_the_logits():
    """A wrong axis (over the examples) would still give finite numbers: each row must sum to one."""
    logits = torch.randn(7, 10)
    out = losses.log_softmax(logits)
    assert out.shape == (7, 10)
    torch.testing.assert_close(out.exp().sum(1), torch.ones(7))
    torch.testing.assert_close(out, torch.log_softmax(logits, 1))


def test_class_probabilities_are_taken_as_torch_takes_them():
    gen = torch.Generator().manual_seed(0)
    logits, p = torch.randn(9, 4, generator=gen), torch.rand(9, 4, generator=gen).softmax(1)
    torch.testing.assert_close(losses.cross_entropy(logits, p), F.cross_entropy(logits, p))
