"""The training engine: train(cfg) -> Run, and train_population(cfg, seeds) -> list[Run].

One engine serves both: parameters are held as tensors with a leading member dimension when a
population of seeds trains as one stacked model (torch.func: stack_module_state, functional_call,
vmap), and as the module's own tensors for a single run. The SGD step is written out with foreach
ops so that the per-step update norm is the update itself, not a second flatten-and-copy, and so
that stopped members of a population can be masked out. Whether a population trains stacked (and
in chunks of how many members) or as a loop of single runs is measured per step shape by a short
probe (`choose_path`); models made only of Linear/ReLU/Flatten layers run their stacked forward
without vmap (lossscape.stacked_mlp).

Every member has its own initialization (torch seeded with its seed while the model is built) and
its own data order (a torch.Generator seeded with its seed), so member s of a population equals
train(cfg.replace(seed=s)) up to float rounding of batched vs plain matmuls.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from . import freezeout, stacked_mlp
from .config import DATA_SEED_STRIDE, ConfigError, RunConfig
from .data import load_dataset
from .footprint import check_memory
from .models import build_model, has_batchnorm
from .schedules import batch_size_at, lr_at, snapshot_steps

EVAL_CHUNK = 4096
# The training loss, in multiples of ln(n_classes), beyond which a run has diverged (see diverged).
DIVERGENCE_LOSS_FACTOR = 20


@dataclass
class Run:
    config: RunConfig
    history: list[dict]
    update_norms: np.ndarray
    initial_state: dict[str, torch.Tensor]
    final_state: dict[str, torch.Tensor]
    stop_reason: str  # target_loss | early_stop | max_epochs | diverged
    total_time_s: float
    device: str
    input_shape: tuple[int, ...]
    n_classes: int
    snapshots: list[dict[str, torch.Tensor]] = field(default_factory=list)
    snapshot_steps: list[int] = field(default_factory=list)
    best_epoch: int | None = None  # early_stop: the epoch whose weights final_state holds
    # how the run was trained: {"kind": "single" | "loop" | "stacked", "members_per_chunk", "threads",
    # and for a probed population "probe_s_per_member_step"} (train_population's choice)
    engine_path: dict = field(default_factory=dict)

    def model(self, state: dict[str, torch.Tensor] | None = None) -> nn.Module:
        """A fresh module holding the final weights (or `state`), in eval mode, on the CPU."""
        m = build_model(self.config.model, self.input_shape, self.n_classes, self.config.width)
        m = m.to(getattr(torch, self.config.dtype))
        m.load_state_dict(state if state is not None else self.final_state)
        return m.eval()

    @property
    def epochs_run(self) -> int:
        return len(self.history)

    def metric(self, name: str) -> np.ndarray:
        return np.array([h[name] for h in self.history], dtype=float)


def train(cfg: RunConfig, *, progress: Callable[[int, dict], None] | None = None,
          init: dict[int, dict] | None = None) -> Run:
    """Train one configuration; a world_size > 1 config runs data-parallel (lossscape.parallel).

    `init` ({seed: state dict}) is given exactly when cfg.init_from names a parent run: the run
    starts from init[cfg.seed] instead of its seeded initialization (a continuation).
    A config whose estimated memory exceeds the device's is refused first (lossscape.footprint)."""
    _check_init(cfg, init, [cfg.seed])
    check_memory(cfg, 1, load_data(cfg), EVAL_CHUNK)
    if cfg.world_size > 1:
        from .parallel import train_ddp
        return train_ddp(cfg, progress=progress)
    run = _Engine(cfg, [cfg.seed], stacked=False, progress=progress, init=init).run()[0]
    run.engine_path = {"kind": "single", "members_per_chunk": 1, "threads": torch.get_num_threads()}
    return run


def train_population(cfg: RunConfig, seeds, *, progress: Callable[[int, dict], None] | None = None,
                     path: str | None = None, init: dict[int, dict] | None = None) -> list[Run]:
    """Train cfg once per seed: as stacked models (chunks of members) or as a loop of `train`.

    path=None lets a short probe choose (`choose_path`); "stacked" (all members in one chunk) or
    "loop" force one. BatchNorm models (running statistics do not vmap cleanly) and data-parallel
    configs always loop. Either way member s equals train(cfg.replace(seed=s)), exactly in a loop
    and up to float rounding when stacked; every Run records the path in `engine_path`. A
    population whose estimated memory exceeds the device's is refused before anything is built
    (lossscape.footprint).
    """
    if path not in PATHS:
        raise ValueError(f"path: got {path!r}; allowed: {', '.join(map(repr, PATHS))}")
    seeds = [int(s) for s in seeds]
    _check_init(cfg, init, seeds)
    check_memory(cfg, len(seeds), load_data(cfg), EVAL_CHUNK)
    with torch.random.fork_rng(devices=[]):  # a probe for BatchNorm; the caller's RNG stays put
        probe = build_model(cfg.model, *_shape_and_classes(cfg), cfg.width)
    if cfg.world_size > 1 or has_batchnorm(probe) or len(seeds) == 1 or path == "loop":
        chosen = {"kind": "loop", "members_per_chunk": 1, "threads": torch.get_num_threads()}
    elif path == "stacked":
        chosen = {"kind": "stacked", "members_per_chunk": len(seeds), "threads": torch.get_num_threads()}
    else:
        chosen = choose_path(cfg, len(seeds))
    if chosen["kind"] == "loop":
        runs = [train(cfg.replace(seed=s), progress=progress, init=init) for s in seeds]
    else:
        k = chosen["members_per_chunk"]
        runs = [run for i in range(0, len(seeds), k)
                for run in _Engine(cfg, seeds[i:i + k], stacked=True, progress=progress, init=init).run()]
    for run in runs:
        run.engine_path = dict(chosen)
    return runs


PATHS = (None, "stacked", "loop")
PROBE_STEPS, PROBE_ROUNDS = 3, 3
# Stacking must beat the loop by this factor per member-step to be chosen: where it pays it pays
# 1.3-3x, and where the two were within noise on a shared machine the probe picked either, so a
# close call goes to the loop (which is also exact).
STACK_MARGIN = 0.9
_chosen_paths: dict[tuple, dict] = {}  # one probe per step shape and thread count in a process


def choose_path(cfg: RunConfig, members: int) -> dict:
    """The fastest way to train `members` seeds of cfg: a loop of single runs or stacked chunks.

    Measured, not modelled: whether stacking pays depends on how overhead-bound a step is (a
    population of 8 was 1.7-1.95x the loop at mlp w64 bs16 but 0.79-1.09x at w128-256 bs64 on one
    CPU thread) and on the device. The probe times training steps of a single run and of stacked
    chunks of half and all the members, round-robin (the fastest of each candidate's steps, as
    the machine may be shared), and takes the least time per member-step; stacking must beat the
    loop by STACK_MARGIN, so a population is not planned slower than the loop. Costs a few dozen
    steps, once per step shape in a process.
    """
    n = len(load_data(cfg).y_train)
    key = (cfg.dataset, cfg.n_samples, cfg.model, cfg.width, batch_size_at(cfg, 0, n), cfg.schedule,
           cfg.momentum, cfg.dtype, cfg.device, members, torch.get_num_threads())
    if key not in _chosen_paths:
        sizes = sorted({1, math.ceil(members / 2), members})
        engines = {k: _Engine(cfg, list(range(k)), stacked=k > 1) for k in sizes}
        per_member = {k: math.inf for k in sizes}
        for _ in range(PROBE_ROUNDS):
            for k, engine in engines.items():
                per_member[k] = min(per_member[k], engine.seconds_per_step(PROBE_STEPS) / k)
        stacked = min(sizes[1:], key=lambda k: (per_member[k], k), default=1)  # ties: the smaller chunk
        best = stacked if per_member[stacked] < STACK_MARGIN * per_member[1] else 1
        _chosen_paths[key] = {"kind": "loop" if best == 1 else "stacked", "members_per_chunk": best,
                              "threads": torch.get_num_threads(),
                              "probe_s_per_member_step": {str(k): t for k, t in per_member.items()}}
    return _chosen_paths[key]


def _check_init(cfg: RunConfig, init, seeds) -> None:
    """A continuation's weights come with it, and only with it: the cache key (cfg.init_from) must
    say where every stored run's weights came from."""
    if (cfg.init_from is None) != (init is None):
        raise ValueError("init: give the parent runs' final states exactly when cfg.init_from names the parent")
    if init is not None and any(s not in init for s in seeds):
        raise ValueError(f"init: no state for seeds {[s for s in seeds if s not in init]}")


def load_data(cfg: RunConfig, data_dir=None):
    return load_dataset(cfg.dataset, n_samples=cfg.n_samples, data_dir=data_dir)


def _shape_and_classes(cfg):
    ds = load_data(cfg)
    return ds.input_shape, ds.n_classes


def init_model(cfg: RunConfig, seed: int, input_shape, n_classes) -> nn.Module:
    """The seeded initialization, built without touching the caller's global RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_model(cfg.model, input_shape, n_classes, cfg.width)
    return model.to(getattr(torch, cfg.dtype))


def stage_of(name: str) -> int:
    """Parameter names are 'stages.<i>....' (models.StagedNet)."""
    return int(name.split(".")[1])


def data_seed(seed: int) -> int:
    """The base of a run's data-order seeds; epoch e shuffles with data_seed(seed) + e.

    Spaced far apart so that seeds s and s + 1 never share an epoch's order. DDP ranks pass it to
    DistributedSampler(seed=...), whose per-epoch permutation is the same randperm, so k ranks see
    exactly the examples one process sees in each global batch.
    """
    return seed * DATA_SEED_STRIDE


def diverged(row: dict, n_classes: int) -> bool:
    """The divergence rule, checked on each epoch's history row; a member that meets it stops with
    stop_reason "diverged".

    A run has diverged when, at the end of an epoch:
    - a recorded loss (train, val or test) or the epoch distance is not finite. The epoch distance
      is the norm of the weights' change over the epoch, starting from finite weights (the
      initialization, or the end of an epoch that passed this check), so non-finite weights make it
      non-finite, as does a change whose square overflows the dtype; or
    - the training loss exceeds DIVERGENCE_LOSS_FACTOR * ln(n_classes), i.e. 20 times the
      cross-entropy of a uniform guess. Every model here starts there (initial training loss of all
      five models on mnist1d, 3 seeds each: 1.00-1.01 ln C) and a healthy run goes down from it,
      so the threshold cannot fire before an update has exploded. The highest epoch-end
      training loss measured on the profiles' settings is 2.95 ln C, a catapult spike in the most
      aggressive cell of the cpu lr_grid (mlp width 128, lr 0.8, batch 16; 3 seeds x 400 epochs,
      without early stopping): the threshold is ~7x above it. The other aggressive settings measured
      (40 epochs of lr 0.8 at batch 16, 64 and 1024, lr 0.4 at 16, linear scaling to lr 0.4,
      momentum 0.9 with cyclic cosine, smoke's lr 0.2 at batch 16, FreezeOut with Nesterov momentum
      on all four models) stayed below 1.6 ln C. Validation and test losses are left out of this
      part: overfitting may raise them on a healthy run.
    """
    if not all(math.isfinite(v) for k, v in row.items() if k.endswith("_loss") or k == "epoch_distance"):
        return True
    return row["train_loss"] > DIVERGENCE_LOSS_FACTOR * math.log(n_classes)


def epoch_permutation(seed: int, epoch: int, n: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(data_seed(seed) + epoch)
    return torch.randperm(n, generator=g)


class _Engine:
    """rank/world: a data-parallel process (lossscape.parallel) takes every world-th example of each
    global batch, which is DistributedSampler's shard, and runs its forward through `wrap` (DDP)."""

    def __init__(self, cfg: RunConfig, seeds: list[int], *, stacked: bool, progress=None, data_dir=None,
                 rank: int = 0, world: int = 1, wrap: Callable[[nn.Module], nn.Module] | None = None,
                 init: dict[int, dict] | None = None):
        self.cfg, self.seeds, self.stacked, self.progress = cfg, seeds, stacked, progress
        self.rank, self.world = rank, world
        self.device = torch.device(cfg.device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise ConfigError("device: got 'cuda' but CUDA is not available; allowed here: cpu")
        ds = load_data(cfg, data_dir)
        self.ds = ds
        n_train = len(ds.y_train)
        if cfg.batch_size > n_train:
            raise ConfigError(f"batch_size: got {cfg.batch_size}; allowed: 1..{n_train} (the {cfg.dataset} training set)")
        dt = getattr(torch, cfg.dtype)
        put = lambda t: None if t is None else t.to(self.device, dt if t.is_floating_point() else t.dtype)
        self.X, self.y = put(ds.X_train), put(ds.y_train)
        self.splits = {"train": (self.X, self.y), "val": (put(ds.X_val), put(ds.y_val))}
        if ds.X_test is not None:
            self.splits["test"] = (put(ds.X_test), put(ds.y_test))
        self.models = [init_model(cfg, s, ds.input_shape, ds.n_classes).to(self.device) for s in seeds]
        if init:  # a continuation (cfg.init_from): each member starts from its seed's parent weights
            for model, s in zip(self.models, seeds):
                model.load_state_dict(init[s])
        self.initial = [_cpu_state(m) for m in self.models]
        self.base = self.models[0]
        if stacked:
            params, _ = stack_module_state(self.models)
            self.names = list(params)
            self.params = [params[k].detach().requires_grad_(True) for k in self.names]
            with torch.random.fork_rng(devices=[]):  # code only: its own initialization is never used
                self.base = build_model(cfg.model, ds.input_shape, ds.n_classes, cfg.width).to(self.device, dt)
            self.base.to("meta")  # functional_call supplies every tensor; the module is only code
        else:
            self.names = [k for k, _ in self.base.named_parameters()]
            self.params = list(self.base.parameters())
        self.stages = [stage_of(k) for k in self.names]
        self.n_stages = len(self.base.stages)
        self.forward_module = wrap(self.base) if wrap else self.base
        self.plain_mlp = stacked and stacked_mlp.supports(self.base)  # no vmap needed (stacked_mlp)
        self.momentum_buf = None

    # -- forward ---------------------------------------------------------------------------
    def _logits(self, params, x):
        """x: [S, B, ...] stacked, [B, ...] single."""
        if not self.stacked:
            return self.forward_module(x)
        names = self.names
        if self.plain_mlp:
            return stacked_mlp.forward(self.base, dict(zip(names, params)), x)

        def one(p, xb):
            return functional_call(self.base, dict(zip(names, p)), (xb,))
        return vmap(one)(params, x)

    def _losses(self, logits, y):
        """Per-member mean cross-entropy: [S]."""
        if not self.stacked:
            return F.cross_entropy(logits, y).reshape(1)
        S, B = y.shape
        return F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none").view(S, B).mean(1)

    @torch.no_grad()
    def _evaluate(self, X, y):
        """Mean loss and accuracy over a whole split, per member."""
        was_training = self.base.training
        self.base.eval()
        S = len(self.seeds)
        loss = torch.zeros(S, dtype=torch.float64, device=self.device)
        correct = torch.zeros(S, dtype=torch.float64, device=self.device)
        for i in range(0, len(y), EVAL_CHUNK):
            xb, yb = X[i:i + EVAL_CHUNK], y[i:i + EVAL_CHUNK]
            if self.stacked:
                xb, yb = xb.expand(S, *xb.shape), yb.expand(S, *yb.shape)
            # the plain module, not the DDP wrapper: evaluation is local and needs no gradient sync
            logits = self._logits(self.params, xb) if self.stacked else self.base(xb)
            loss += self._losses(logits, yb).double() * len(xb if not self.stacked else xb[0])
            correct += (logits.argmax(-1) == yb).double().sum(-1).reshape(S)
        self.base.train(was_training)
        return (loss / len(y)).cpu().numpy(), (correct / len(y)).cpu().numpy()

    # -- the step --------------------------------------------------------------------------
    def _sq_norms(self, tensors):
        """Squared norm per member of a list of (stacked) tensors: [S]. One reduction kernel per
        tensor (a fused foreach norm for a single model), no concatenated copy of the update."""
        if self.stacked:
            return torch.stack([torch.linalg.vector_norm(t.flatten(1), dim=1) for t in tensors]).square().sum(0)
        return torch.stack(torch._foreach_norm(tensors)).square().sum().reshape(1)

    def _step(self, batch, lrs, masks):
        """One SGD step on the examples `batch` ([S, B] stacked, [B] single) at the stage learning
        rates `lrs`; returns the squared norm of each member's update: [S]."""
        cfg = self.cfg
        idx = batch[self.rank::self.world] if self.world > 1 else batch
        xb, yb = self.X[idx], self.y[idx]
        live = [i for i, s in enumerate(self.stages) if lrs[s] > 0]
        if self.n_stages and cfg.schedule == "freezeout":
            self.base.frozen_stages = freezeout.frozen_prefix(lrs)
        plist = [self.params[i] for i in live]
        for p in plist:
            p.grad = None
        logits = self._logits(self.params, xb)
        if self.world > 1:
            # DDP averages the ranks' gradients: a rank's summed loss times world / |batch|
            # makes that average the global batch's mean gradient, also when a short last
            # batch splits unevenly over the ranks (or leaves one of them nothing).
            loss = F.cross_entropy(logits, yb, reduction="sum") * (self.world / batch.shape[-1])
        else:
            loss = self._losses(logits, yb)
        loss.sum().backward()
        with torch.no_grad():
            d = [p.grad for p in plist]
            if cfg.weight_decay:
                d = torch._foreach_add(d, plist, alpha=cfg.weight_decay)
            if cfg.momentum:
                if self.momentum_buf is None:
                    self.momentum_buf = [torch.zeros_like(p) for p in self.params]
                bufs = [self.momentum_buf[i] for i in live]
                torch._foreach_mul_(bufs, cfg.momentum)
                torch._foreach_add_(bufs, d)
                d = torch._foreach_add(d, bufs, alpha=cfg.momentum) if cfg.nesterov else bufs
            upd = torch._foreach_mul(d, [lrs[self.stages[i]] for i in live])
            if masks is not None:
                upd = torch._foreach_mul(upd, [masks[i] for i in live])
            torch._foreach_sub_(plist, upd)
            return self._sq_norms(upd)

    def seconds_per_step(self, steps: int) -> float:
        """The fastest of `steps` timed training steps on epoch 0's first batches (the probe of
        train_population). The steps move this engine's weights: probe engines are thrown away."""
        n = len(self.y)
        bs = batch_size_at(self.cfg, 0, n)
        perms = torch.stack([epoch_permutation(s, 0, n) for s in self.seeds]).to(self.device)
        perms = perms if self.stacked else perms[0]
        lrs = self._stage_lrs(0, 1, 0.0)
        fastest = math.inf
        for j in range(steps):
            start = (j * bs) % max(1, n - bs + 1)
            self._sync()
            t0 = time.perf_counter()
            self._step(perms[..., start:start + bs], lrs, None)
            self._sync()
            fastest = min(fastest, time.perf_counter() - t0)
        return fastest

    def run(self) -> list[Run]:
        cfg, S = self.cfg, len(self.seeds)
        n = len(self.y)
        epochs_bs = [batch_size_at(cfg, e, n) for e in range(cfg.epochs)]
        total_steps = sum(math.ceil(n / b) for b in epochs_bs)
        snap_at = set(snapshot_steps(total_steps, cfg.snapshots)) if cfg.snapshots else set()
        active = torch.ones(S, dtype=torch.bool)  # members still training
        reasons = ["max_epochs"] * S
        histories = [[] for _ in range(S)]
        norms_per_epoch = []
        snapshots = [[] for _ in range(S)]
        snap_steps = [[] for _ in range(S)]  # per member: a stopped member takes no more snapshots
        best = [math.inf] * S
        best_epoch = [None] * S
        best_state = [None] * S  # early_stop: weights and buffers at the best validation epoch
        waits = [0] * S
        step = 0
        t_start = time.perf_counter()
        self.base.train()
        for epoch in range(cfg.epochs):
            bs = epochs_bs[epoch]
            steps_this = math.ceil(n / bs)
            perms = torch.stack([epoch_permutation(s, epoch, n) for s in self.seeds]).to(self.device)
            if not self.stacked:
                perms = perms[0]
            start = [p.detach().clone() for p in self.params]
            # stopped members' updates are zeroed by a per-member mask, shaped once per epoch
            mask = None if bool(active.all()) else active.to(self.device, self.params[0].dtype)
            masks = None if mask is None else [mask.view(-1, *[1] * (p.dim() - 1)) for p in self.params]
            epoch_norms = []
            self._sync()
            t0 = time.perf_counter()
            for j in range(steps_this):
                lrs = self._stage_lrs(step, total_steps, epoch + j / steps_this)
                epoch_norms.append(self._step(perms[..., j * bs:(j + 1) * bs], lrs, masks))
                step += 1
                if step in snap_at:
                    for m in range(S):
                        if active[m]:
                            snap_steps[m].append(step)
                            snapshots[m].append(self._member_state(m))
            self._sync()
            epoch_time = time.perf_counter() - t0
            with torch.no_grad():
                norms_per_epoch.append(torch.stack(epoch_norms).sqrt().cpu())
                dist = self._sq_norms(torch._foreach_sub([p.detach() for p in self.params], start)).sqrt().cpu()
            t1 = time.perf_counter()
            evals = {k: self._evaluate(*xy) for k, xy in self.splits.items()}
            eval_time = time.perf_counter() - t1
            for m in range(S):
                if not active[m]:
                    continue
                row = {"epoch": epoch + 1, "epoch_time_s": epoch_time, "eval_time_s": eval_time,
                       "epoch_distance": float(dist[m]), "lr": lrs[-1] if lrs else cfg.lr, "batch_size": bs,
                       "steps": steps_this}
                for split, (l, a) in evals.items():
                    row[f"{split}_loss"], row[f"{split}_acc"] = float(l[m]), float(a[m])
                histories[m].append(row)
                if self.progress and self.rank == 0:
                    self.progress(self.seeds[m], row)
                reason = self._stop_reason(m, row, best, waits)
                if cfg.stop == "early_stop" and row["val_loss"] < best[m]:
                    best[m], best_epoch[m], waits[m] = row["val_loss"], epoch + 1, 0
                    best_state[m] = self._member_state(m)
                if epoch + 1 in cfg.record_snapshots:
                    snapshots[m].append(self._member_state(m))
                if reason:
                    reasons[m] = reason
                    active[m] = False
            if not bool(active.any()):
                break
        total_time = time.perf_counter() - t_start
        norms = torch.cat(norms_per_epoch).numpy() if norms_per_epoch else np.zeros((0, S))
        runs = []
        for m, seed in enumerate(self.seeds):
            final = best_state[m] if best_state[m] is not None else self._member_state(m)
            member_norms = norms[:, m] if norms.ndim == 2 else norms
            runs.append(Run(
                config=cfg.replace(seed=seed), history=histories[m],
                update_norms=member_norms[: sum(h["steps"] for h in histories[m])].astype(np.float64),
                initial_state=self.initial[m], final_state=final, stop_reason=reasons[m],
                total_time_s=total_time, device=self.device.type, input_shape=tuple(self.ds.input_shape),
                n_classes=self.ds.n_classes, snapshots=snapshots[m], snapshot_steps=snap_steps[m],
                best_epoch=best_epoch[m]))
        return runs

    def _stage_lrs(self, step, total_steps, epoch_f):
        if self.cfg.schedule == "freezeout":
            return freezeout.stage_lrs(self.cfg, self.n_stages, step, total_steps)
        return [lr_at(self.cfg, step, total_steps, epoch_f)] * self.n_stages

    def _stop_reason(self, m, row, best, waits):
        cfg = self.cfg
        if diverged(row, self.ds.n_classes):
            return "diverged"
        if cfg.stop == "target_loss" and row["train_loss"] <= cfg.target_loss:
            return "target_loss"
        if cfg.stop == "early_stop" and row["val_loss"] >= best[m]:
            waits[m] += 1
            if waits[m] >= cfg.patience:
                return "early_stop"
        return None

    def _member_state(self, m):
        """Member m's weights (and buffers, for a single run) as a CPU state dict."""
        if not self.stacked:
            return _cpu_state(self.base)
        return {k: v[m].detach().cpu().clone() for k, v in zip(self.names, self.params)}

    def _sync(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize()


def _cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
