"""Shared test set-up: one torch thread, a trained toy network. (The hypothesis profiles are
registered in the root conftest, which the claims' GEO-4 check shares.)"""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

# One thread: the tests train tiny models, where a second OpenMP thread only adds synchronization
# (10-30x slower when the machine is busy), and results do not depend on the machine's core count.
torch.set_num_threads(1)


@pytest.fixture(scope="module")
def trained_mlp():
    """A small float64 ReLU network trained to a minimum on a toy 3-class problem: (model, X, y)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Linear(16, 3)).double()
    X = torch.randn(64, 5, dtype=torch.float64)
    y = (X[:, 0] > 0).long() + (X[:, 1] > 0).long()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    for _ in range(100):
        optimizer.zero_grad()
        F.cross_entropy(model(X), y).backward()
        optimizer.step()
    return model, X, y
