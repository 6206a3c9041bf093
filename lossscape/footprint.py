"""How much memory a run or a population of runs needs, estimated before anything is allocated.

`train` and `train_population` check it, so that a width or a population that cannot fit is refused
with one line (a ConfigError) instead of an allocator traceback or the kernel's OOM killer part-way
through.

The estimate counts what engine.Engine holds, in the config's dtype:
- per member of a stacked population, the working set: WORKING_COPIES copies of the weights (the
  built module, the stacked parameters, their gradients, the update, the epoch-start copy for the
  distance, its difference), one more for a momentum buffer and one for weight decay's summed
  gradient, and the activations of a training batch (kept for backward, plus their gradients);
- per member in any case, what its Run keeps: the initial and final weights, a best-epoch copy
  under early stopping, and every snapshot;
- once, the dataset on the device and the activations of an evaluation pass (engine.EVAL_CHUNK
  member-examples, shared by a stacked population's members).
Data-parallel populations train one member at a time and hold one working set; any other
population may stack (BatchNorm models too), so each of its members counts one. Layers' outputs
are counted from a forward pass on the meta device, where nothing is allocated. It is an
estimate, not a bound: against the peak RSS of one stacked MNIST-1D epoch it measured 1.10x for
50 members of the width-1024 MLP (1.7 GB) and 0.17x for 200 width-64 members (0.48 GB), where
the process's fixed costs dominate; the refusal is for what cannot fit at all.
"""
from __future__ import annotations

import functools
import math
import os

import torch

from .config import MODELS, ConfigError, RunConfig
from .data import Dataset
from .models import build_model
from .schedules import batch_size_at

WORKING_COPIES = 6
KEPT_COPIES = 2  # a Run's initial_state and final_state


def check_memory(cfg: RunConfig, n_members: int, ds: Dataset, eval_chunk: int) -> None:
    """Raise a one-line ConfigError when `n_members` seeds of cfg would need more memory than the
    device has: naming the width when one run cannot fit, else the seeds with how many can."""
    fixed, per_member = population_bytes(cfg, ds, eval_chunk)
    limit = memory_limit(cfg.device)
    here = f"more than the {limit / 1e9:,.1f} GB of {cfg.device} memory here"
    if fixed + per_member > limit:
        raise ConfigError(f"width: got {cfg.width}; one {cfg.model} run needs ~{(fixed + per_member) / 1e9:,.1f} GB "
                          f"by estimate, {here}; allowed: a width (or batch size) whose run fits")
    if fixed + per_member * n_members > limit:
        raise ConfigError(f"seeds: got {n_members} seeds; they need ~{(fixed + per_member * n_members) / 1e9:,.1f} GB "
                          f"by estimate, {here}; allowed: at most {(limit - fixed) // per_member} seeds of this "
                          "configuration")


def memory_limit(device: str) -> int:
    """The memory of the device a run trains on: physical RAM, or the first GPU's memory."""
    if device == "cuda" and torch.cuda.is_available():
        return torch.cuda.get_device_properties(0).total_memory
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def population_bytes(cfg: RunConfig, ds: Dataset, eval_chunk: int) -> tuple[int, int]:
    """(fixed bytes, bytes per member) of the estimate in the module docstring: a population of n
    seeds of cfg needs about fixed + n * per_member bytes."""
    input_shape, n_train = tuple(ds.input_shape), len(ds.y_train)
    n_examples = sum(len(y) for y in (ds.y_train, ds.y_val, ds.y_test) if y is not None)
    # a user's factory ("package.module:factory") is measured every time: its code may change
    sizes = _model_sizes if cfg.model in MODELS else _model_sizes.__wrapped__
    weights, layer_outputs = sizes(cfg.model, input_shape, ds.n_classes, cfg.width)
    batch = max(batch_size_at(cfg, e, n_train) for e in (0, cfg.epochs - 1))  # a growing batch peaks last
    activations = 2 * sum(layer_outputs) * batch
    working = weights * (WORKING_COPIES + (cfg.momentum > 0) + (cfg.weight_decay > 0)) + activations
    kept = weights * (KEPT_COPIES + (cfg.stop == "early_stop") + cfg.snapshots + len(cfg.record_snapshots))
    itemsize = torch.finfo(getattr(torch, cfg.dtype)).bits // 8
    # an evaluation pass holds eval_chunk member-examples however many members share it
    fixed = n_examples * math.prod(input_shape) + 2 * max(layer_outputs) * min(eval_chunk, n_examples)
    if cfg.world_size == 1:  # a population may stack (train_population's probe decides): count it so
        return itemsize * fixed, itemsize * (working + kept)
    return itemsize * (fixed + working), itemsize * kept


@functools.lru_cache(maxsize=64)
def _model_sizes(model: str, input_shape: tuple, n_classes: int, width: int | None) -> tuple[int, tuple[int, ...]]:
    """(weight and buffer elements, _layer_output_sizes) of the model, built on the meta device;
    kept per shape for the process: the forward there cost 2-3 ms for the mlp (3% of a single
    mlp run at width 64, batch 16, 4 epochs) and ~14 ms for resnet_small, one CPU thread."""
    with torch.device("meta"):
        net = build_model(model, input_shape, n_classes, width)
        layer_outputs = tuple(_layer_output_sizes(net, input_shape))
    return sum(t.numel() for t in (*net.parameters(), *net.buffers())), layer_outputs


def _layer_output_sizes(model: torch.nn.Module, input_shape) -> list[int]:
    """Elements each leaf module outputs for one example (the model is on the meta device)."""
    sizes = []
    hooks = [m.register_forward_hook(lambda _m, _i, out: sizes.append(out[0].numel()))
             for m in model.modules() if not list(m.children())]
    try:
        with torch.no_grad():
            model.eval()(torch.empty(1, *input_shape))  # eval: BatchNorm takes a batch of one
    finally:
        for h in hooks:
            h.remove()
    return sizes or [math.prod(input_shape)]
