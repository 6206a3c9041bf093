"""Training throughput (claim BS-6): examples per second of one SGD step, per batch size.

The step is the engine's (lossscape.train): gather a batch from the training tensors on the
device, forward, mean cross-entropy, backward, SGD update, on a single model (a population's
stacked step would time several models at once). Per batch size, `warmup` untimed steps come
first; then `repeats` timed blocks of `steps` steps each, interleaved over the batch sizes
(round-robin), so a change in the machine's load during the sweep falls on every size alike.
Nothing is cached: a throughput belongs to the machine and the moment it was measured on.
"""
from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F

from .config import ConfigError, RunConfig
from .train import init_model, load_data


def training_throughput(cfg: RunConfig, batch_sizes, *, steps: int = 20, repeats: int = 5,
                        warmup: int = 5) -> dict[int, np.ndarray]:
    """batch size -> examples/s of each timed block (`repeats` values), for cfg's model, data, LR and device."""
    ds = load_data(cfg)
    device = torch.device(cfg.device)
    X = ds.X_train.to(device, getattr(torch, cfg.dtype))
    y = ds.y_train.to(device)
    n = len(y)
    if any(b > n for b in batch_sizes):
        raise ConfigError(f"batch_sizes: got {sorted(batch_sizes)}; allowed: 1..{n} (the {cfg.dataset} training set)")
    model = init_model(cfg, cfg.seed, ds.input_shape, ds.n_classes).to(device).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr, foreach=True)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(cfg.seed)).to(device)
    starts = torch.Generator().manual_seed(cfg.seed + 1)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    def run_steps(bs: int, k: int) -> None:
        # batch offsets are drawn before the clock starts; the gather itself is part of the step
        offsets = torch.randint(0, n - bs + 1, (k,), generator=starts).tolist()
        for start in offsets:
            idx = order[start:start + bs]
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(model(X[idx]), y[idx]).backward()
            optimizer.step()

    for bs in batch_sizes:
        run_steps(bs, warmup)
    out = {bs: np.empty(repeats) for bs in batch_sizes}
    for r in range(repeats):
        for bs in batch_sizes:
            sync()
            t0 = time.perf_counter()
            run_steps(bs, steps)
            sync()
            out[bs][r] = bs * steps / (time.perf_counter() - t0)
    return out
