"""A model wrapper that counts forward passes: the geometry tests' measure of work (a vmapped pass
over many points is one)."""
from torch import nn


class CountingForward(nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner, self.calls = inner, 0

    def forward(self, X):
        self.calls += 1
        return self.inner(X)
