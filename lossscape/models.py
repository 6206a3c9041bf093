"""Model factories: every model is a sequence of stages whose forward maps inputs to logits.

config.MODELS names the built-in factories below; a config's model may also be a user's factory,
"package.module:factory", called as factory(input_shape, n_classes, width) with width None unless
the config sets one. A user's module that is not a StagedNet becomes the one stage of one (so
FreezeOut, which freezes whole stages, has nothing to freeze before the end).

Stages are the unit FreezeOut freezes (lossscape.freezeout): with `frozen_stages = k` the output
of stage k-1 is detached, so no backward pass runs through the first k stages.

Convolutional models take 1-D inputs (MNIST-1D: shape (L,) or (C, L)) with Conv1d and images
(C, H, W) with Conv2d, so the same architecture runs on every dataset in the registry.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .config import MODELS, ConfigError, RunConfig, resolve_spec


class StagedNet(nn.Module):
    """Runs `stages` in order; `frozen_stages` leading stages are cut from the backward graph."""

    def __init__(self, stages: list[nn.Module]):
        super().__init__()
        self.stages = nn.ModuleList(stages)
        self.frozen_stages = 0

    def forward(self, x):
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i + 1 == self.frozen_stages:
                x = x.detach()
        return x


def build_model(name: str, input_shape: tuple[int, ...], n_classes: int, width: int | None = None) -> StagedNet:
    """The model `name` (a key of config.MODELS or a user's "package.module:factory") for inputs
    of `input_shape`, ending in `n_classes` logits; width None: the factory's default."""
    factory = resolve_spec(MODELS.get(name, name), "model")
    model = factory(tuple(input_shape), n_classes, width)
    if not isinstance(model, nn.Module):
        raise ConfigError(f"model: {name} returned a {type(model).__name__}; allowed: a factory returning an nn.Module")
    if name not in MODELS:
        _check_logits(model, name, tuple(input_shape), n_classes)
    return model if isinstance(model, StagedNet) else StagedNet([model])


def _check_logits(model: nn.Module, name: str, input_shape: tuple[int, ...], n_classes: int) -> None:
    """A user's module must map a batch (B, *input_shape) to logits (B, n_classes): found here, with
    the field named, rather than as a traceback from the loss deep in a training step. One forward of
    two zero examples in eval mode (no BatchNorm statistics move, no dropout draws the RNG)."""
    allowed = f"allowed: a module mapping (batch, {', '.join(map(str, input_shape))}) to logits (batch, {n_classes})"
    was_training = model.training
    try:
        with torch.no_grad():
            out = model.eval()(torch.zeros(2, *input_shape))
    except Exception as e:  # the user's forward: any failure is theirs, reported in one line
        raise ConfigError(f"model: {name} failed on a batch of shape (2, {', '.join(map(str, input_shape))}) "
                          f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); {allowed}") from None
    finally:
        model.train(was_training)
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (2, n_classes):
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ConfigError(f"model: {name} returned outputs of shape {got} for a batch of 2; {allowed}")


def init_model(cfg: RunConfig, seed: int, input_shape, n_classes) -> StagedNet:
    """cfg's model with the seeded initialization of `seed`, in cfg's dtype, built without touching
    the caller's global RNG. The model is built on the CPU, so only the CPU generator is seeded:
    torch.manual_seed would also seed every CUDA, MPS and XPU generator (where CUDA is not yet
    initialized, a call queued with a formatted stack trace: 0.2-0.6 ms a model), which fork_rng
    does not restore."""
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)
        model = build_model(cfg.model, input_shape, n_classes, cfg.width)
    return model.to(getattr(torch, cfg.dtype))


def stage_of(name: str) -> int:
    """The stage a parameter belongs to: its name is 'stages.<i>....' (StagedNet)."""
    return int(name.split(".")[1])


def _spatial(input_shape):
    """(n_dims, channels, sizes) for a conv model; a flat vector is one channel of length L."""
    if len(input_shape) == 1:
        return 1, 1, input_shape
    if len(input_shape) in (2, 3):
        return len(input_shape) - 1, input_shape[0], input_shape[1:]
    raise ConfigError(f"input_shape: got {input_shape}; allowed: (L,), (C, L) or (C, H, W)")


class _AddChannel(nn.Module):
    """Flat 1-D signals (N, L) become (N, 1, L) for Conv1d."""

    def __init__(self, needed: bool):
        super().__init__()
        self.needed = needed

    def forward(self, x):
        return x.unsqueeze(1) if self.needed else x


def _ops(nd):
    return (nn.Conv1d, nn.MaxPool1d, nn.BatchNorm1d, nn.AdaptiveAvgPool1d) if nd == 1 else \
        (nn.Conv2d, nn.MaxPool2d, nn.BatchNorm2d, nn.AdaptiveAvgPool2d)


def mlp(input_shape, n_classes, width=None):
    """Source 003's model: two hidden layers of `width` (default 1024) ReLU units."""
    w, d = width or 1024, math.prod(input_shape)
    return StagedNet([
        nn.Sequential(nn.Flatten(), nn.Linear(d, w), nn.ReLU()),
        nn.Sequential(nn.Linear(w, w), nn.ReLU()),
        nn.Linear(w, n_classes),
    ])


def conv1d(input_shape, n_classes, width=None):
    """A small 1-D CNN for MNIST-1D: `width` (default 32) channels throughout."""
    w = width or 32
    nd, c, size = _spatial(input_shape)
    if nd != 1:
        raise ConfigError(f"model: conv1d takes 1-D inputs; got input_shape {input_shape}; use vgg_small for images")
    length = size[0]
    return StagedNet([
        nn.Sequential(_AddChannel(len(input_shape) == 1), nn.Conv1d(c, w, 5, padding=2), nn.ReLU()),
        nn.Sequential(nn.Conv1d(w, w, 3, stride=2, padding=1), nn.ReLU()),
        nn.Sequential(nn.Conv1d(w, w, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten()),
        nn.Linear(w * _down(length, 2), n_classes),
    ])


def _down(n, times):
    for _ in range(times):
        n = (n + 1) // 2
    return n


def vgg_small(input_shape, n_classes, width=None):
    """Source 000's base model: conv3x3+ReLU -> max-pool blocks, flatten, two FC layers, no BN;
    blocks of `width` (default 32, as the source's 32, 64, 128 filters) doubling per block.

    The source's binary head is one sigmoid unit; a 2-logit softmax is the same model family
    (the sigmoid of the logit difference), so every model here ends in n_classes logits.
    """
    w = width or 32
    nd, c, size = _spatial(input_shape)
    conv, pool, _, _ = _ops(nd)
    stages, ch = [], c
    n_blocks = 3 if min(size) >= 16 else 2
    for i in range(n_blocks):
        out = w * 2 ** i
        first = [_AddChannel(len(input_shape) == 1)] if i == 0 else []
        stages.append(nn.Sequential(*first, conv(ch, out, 3, padding=1), nn.ReLU(), pool(2)))
        ch = out
    flat = ch * math.prod(s // 2 ** n_blocks for s in size)
    stages.append(nn.Sequential(nn.Flatten(), nn.Linear(flat, 4 * w), nn.ReLU()))
    stages.append(nn.Linear(4 * w, n_classes))
    return StagedNet(stages)


class _BasicBlock(nn.Module):
    def __init__(self, nd, cin, cout, stride):
        super().__init__()
        conv, _, bn, _ = _ops(nd)
        self.body = nn.Sequential(conv(cin, cout, 3, stride, 1, bias=False), bn(cout), nn.ReLU(),
                                  conv(cout, cout, 3, 1, 1, bias=False), bn(cout))
        self.skip = nn.Identity() if stride == 1 and cin == cout else \
            nn.Sequential(conv(cin, cout, 1, stride, bias=False), bn(cout))

    def forward(self, x):
        return torch.relu(self.body(x) + self.skip(x))


def resnet_small(input_shape, n_classes, width=None):
    """A CIFAR-style ResNet with three stages of one basic block each (BatchNorm), `width`
    (default 16) channels in the first."""
    w = width or 16
    nd, c, _ = _spatial(input_shape)
    conv, _, bn, gap = _ops(nd)
    return StagedNet([
        nn.Sequential(_AddChannel(len(input_shape) == 1), conv(c, w, 3, padding=1, bias=False), bn(w), nn.ReLU()),
        _BasicBlock(nd, w, w, 1),
        _BasicBlock(nd, w, 2 * w, 2),
        _BasicBlock(nd, 2 * w, 4 * w, 2),
        nn.Sequential(gap(1), nn.Flatten(), nn.Linear(4 * w, n_classes)),
    ])


class _DenseLayer(nn.Module):
    def __init__(self, nd, cin, growth):
        super().__init__()
        conv, _, bn, _ = _ops(nd)
        self.body = nn.Sequential(bn(cin), nn.ReLU(), conv(cin, growth, 3, padding=1, bias=False))

    def forward(self, x):
        return torch.cat([x, self.body(x)], 1)


def densenet_small(input_shape, n_classes, width=None):
    """DenseNet-BC-style: dense blocks of 3 layers, transitions with 1x1 conv + avg-pool; `width`
    is the growth rate (default 12, as DenseNet-40's k = 12)."""
    growth = width or 12
    nd, c, _ = _spatial(input_shape)
    conv, _, bn, gap = _ops(nd)
    avg = nn.AvgPool1d if nd == 1 else nn.AvgPool2d
    ch = 2 * growth
    stages = [nn.Sequential(_AddChannel(len(input_shape) == 1), conv(c, ch, 3, padding=1, bias=False))]
    for block in range(3):
        layers = []
        for _ in range(3):
            layers.append(_DenseLayer(nd, ch, growth))
            ch += growth
        if block < 2:
            layers += [bn(ch), nn.ReLU(), conv(ch, ch, 1, bias=False), avg(2)]
        stages.append(nn.Sequential(*layers))
    stages.append(nn.Sequential(bn(ch), nn.ReLU(), gap(1), nn.Flatten(), nn.Linear(ch, n_classes)))
    return StagedNet(stages)


def has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
