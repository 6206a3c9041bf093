"""The training engine: `Engine(cfg, seeds, stacked=...).run()` -> one Run per seed.

The epoch loop in named steps: each step takes a `batch` of every member, makes one SGD `step`,
and takes the cycle snapshots that fall on it; each epoch ends by recording the update norms and
the epoch distance, `evaluate`-ing the splits read after every epoch (cfg.epoch_splits: the stop
rules' and cfg.eval_every_epoch), and handing each member its history row, where its `stop` rules
(lossscape.engine.Member) decide whether it trains on. When training ends, every member's last
row gets the splits it lacks from the final weights and, under early_stop, its best epoch's row
from the best weights it kept (`complete_rows`): evaluation is a forward pass per split, so it
is spent where something reads it (lossscape.run says which rows carry which splits).

One engine serves a single model and a population: a strategy (lossscape.strategies) holds the
parameters as the module's own tensors, or as tensors with a leading member dimension when a
population of seeds trains as one stacked model. The SGD step is written out with foreach ops so
that the per-step update norm is the update itself (computed in the gradient's place), not a
second flatten-and-copy, and so that stopped members of a population keep their weights exactly
while the others train on; where the gradients are written out, parameters and gradients are
views of two flat buffers and a plain step of all of them is one fused multiply-add, as
torch.optim.SGD's (`_flat_step`), whose update norm is the rate times the gradient's. Each step's
norms are combined into its update norm once per epoch, for all its steps. The loss is
lossscape.losses' cross-entropy, F.cross_entropy's up to rounding.
Models made only of Linear, ReLU and Flatten layers take their gradients from
lossscape.stacked_mlp's written-out backward, autograd's arithmetic up to rounding without its
per-node overhead; every other model (and DDP) from autograd.

Every member has its own initialization (torch seeded with its seed while the model is built) and
its own data order (lossscape.data_order), so member s of a population equals a single run of
cfg.replace(seed=s) up to float rounding of batched vs plain matmuls.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np
import torch
from torch import Tensor, nn

from . import freezeout, stacked_mlp
from .config import ConfigError, RunConfig
from .data import load_data
from .data_order import epoch_permutation
from .losses import cross_entropy
from .models import build_model, init_model, stage_of
from .run import Run
from .schedules import batch_size_at, lr_at, snapshot_steps
from .strategies import SingleModel, StackedModels, cpu_state, flat_views

# Member-examples per forward pass when a whole split is evaluated: a single model's examples, or
# a stacked population's examples times its members. Passes of 4,096 examples for every member
# held activations of several MB, which each pass faulted in again: 8 stacked mlp members
# evaluated MNIST-1D's 3,200 training examples 1.21x faster at width 64 and 1.39x faster at width
# 256 in passes of 4,096 member-examples (benchmarks/bench_engine.py, section 4; one CPU thread).
EVAL_CHUNK = 4096
# An epoch is gathered into its data order at once up to this size (MNIST-1D: 0.5 MB a model, 4 MB
# for 8 stacked members), and its batches are then slices: two index_selects fewer per step, 15 us
# of a 0.6 ms step at width 256, batch 64 on one CPU thread, and 18 us of 8 members' 0.3 ms at
# width 64, batch 16. Larger training sets (CIFAR-10: 600 MB) gather per step.
EPOCH_GATHER_BYTES = 64 * 2**20
# Steps a probe (seconds_per_step) takes untimed before it times a block of them: the first steps
# after other work find the caches cold. At mlp w256 bs64 on one CPU thread, a single run's first
# step after a stacked population's took 0.8-1.6 ms, its third 0.54-0.65 ms, as in a running epoch.
PROBE_WARMUP_STEPS = 2
# The training loss, in multiples of ln(n_classes), beyond which a run has diverged (see diverged).
DIVERGENCE_LOSS_FACTOR = 20


def diverged(row: dict, n_classes: int) -> bool:
    """The divergence rule, checked on each epoch's history row; a member that meets it stops with
    stop_reason "diverged".

    A run has diverged when, at the end of an epoch:
    - a recorded loss (train, val or test: the row holds the training loss at every epoch, the
      others at the epochs that evaluate them, cfg.epoch_splits, and at the last epoch, where
      `complete_rows` applies the rule again) or the epoch distance is not finite. The epoch distance
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


@dataclass
class Member:
    """One seed's share of a training: what it recorded, kept and why it stopped."""
    seed: int
    initial: dict[str, Tensor]
    history: list[dict] = field(default_factory=list)
    snapshots: list[dict[str, Tensor]] = field(default_factory=list)
    snapshot_steps: list[int] = field(default_factory=list)
    epoch_snapshots: dict[int, dict[str, Tensor]] = field(default_factory=dict)
    stop_reason: str | None = None  # None while it trains
    best_val_loss: float = math.inf  # early_stop: the lowest validation loss so far,
    best_epoch: int | None = None    # its epoch,
    best_state: dict[str, Tensor] | None = None  # and the weights and buffers then
    waits: int = 0  # epochs since the validation loss last improved

    @property
    def active(self) -> bool:
        return self.stop_reason is None

    def end_epoch(self, row: dict, cfg: RunConfig, n_classes: int, state: Callable[[], dict]) -> None:
        """Take the epoch's row, keep the states cfg asks for (`state()` copies the member's
        current one) and apply the stop rules: divergence, then cfg.stop."""
        self.history.append(row)
        epoch = row["epoch"]
        if cfg.stop == "early_stop":
            if row["val_loss"] < self.best_val_loss:
                self.best_val_loss, self.best_epoch, self.waits = row["val_loss"], epoch, 0
                self.best_state = state()
            else:
                self.waits += 1
        if epoch in cfg.record_snapshots:
            self.epoch_snapshots[epoch] = state()
        if diverged(row, n_classes):
            self.stop_reason = "diverged"
        elif cfg.stop == "target_loss" and row["train_loss"] <= cfg.target_loss:
            self.stop_reason = "target_loss"
        elif cfg.stop == "early_stop" and self.waits >= cfg.patience:
            self.stop_reason = "early_stop"

    def add_evaluations(self, epoch: int, metrics: dict, seconds: float, n_classes: int) -> None:
        """Add splits evaluated after training (`metrics`, which took `seconds`) to the row of
        `epoch`. The last row is where the member stopped: the divergence rule reads the added
        losses there as it would have at that epoch."""
        row = self.history[epoch - 1]
        row.update(metrics)
        row["eval_time_s"] += seconds
        if epoch == len(self.history) and diverged(row, n_classes):
            self.stop_reason = "diverged"


def _metrics(evals: dict, m: int) -> dict:
    """Member m's history entries from evaluate's results: {split: (losses, accuracies)}."""
    out = {}
    for split, (loss, acc) in evals.items():
        out[f"{split}_loss"], out[f"{split}_acc"] = float(loss[m]), float(acc[m])
    return out


class Engine:
    """Trains cfg once per seed: as one stacked model (`stacked`) or, for a single seed, plainly.

    rank/world: a data-parallel process (lossscape.parallel) takes every world-th example of each
    global batch, which is DistributedSampler's shard, and runs its forward through `wrap` (DDP).
    progress(seed, row) is called on rank 0 with each member's history row.
    """

    def __init__(self, cfg: RunConfig, seeds: list[int], *, stacked: bool, progress=None, data_dir=None,
                 rank: int = 0, world: int = 1, wrap: Callable[[nn.Module], nn.Module] | None = None,
                 init: dict[int, dict] | None = None):
        self.cfg, self.seeds, self.progress = cfg, seeds, progress
        self.rank, self.world = rank, world
        self.device = torch.device(cfg.device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise ConfigError("device: got 'cuda' but CUDA is not available; allowed here: cpu")
        self.ds = ds = load_data(cfg, data_dir)
        if cfg.batch_size > len(ds.y_train):
            raise ConfigError(f"batch_size: got {cfg.batch_size}; allowed: 1..{len(ds.y_train)} "
                              f"(the {cfg.dataset} training set)")
        self.X, self.y = self._put(ds.X_train), self._put(ds.y_train)
        self.splits = {"train": (self.X, self.y), "val": (self._put(ds.X_val), self._put(ds.y_val))}
        if ds.X_test is not None:
            self.splits["test"] = (self._put(ds.X_test), self._put(ds.y_test))
        models = [init_model(cfg, s, ds.input_shape, ds.n_classes).to(self.device) for s in seeds]
        if init:  # a continuation (cfg.init_from): each member starts from its seed's parent weights
            for model, s in zip(models, seeds):
                model.load_state_dict(init[s])
        self.members = [Member(s, cpu_state(m)) for s, m in zip(seeds, models)]
        self.strategy = (StackedModels(models, self._fresh_module, input_shape=ds.input_shape) if stacked
                         else SingleModel(models[0], wrap, input_shape=ds.input_shape))
        # written-out gradients where the model allows; DDP's hooks and its loss scaling need autograd
        self.written_out = self.strategy.plan is not None and world == 1 and wrap is None
        if self.written_out:
            # the gradients are written into one flat buffer and the parameters are views of
            # another, so that a plain SGD step of every parameter at one rate (flat_update) is one
            # fused multiply-add over all of them, not one per tensor: torch.optim.SGD's per element
            self.flat_params = self.strategy.flatten_params()
            self.flat_grad = torch.empty_like(self.flat_params)
            self.grad_views = flat_views(self.flat_grad, self.strategy.params)
            self.gradients = stacked_mlp.Gradients(self.strategy.plan, self.strategy.params, self.strategy.stacked,
                                                   self.grad_views)
        self.flat_update = self.written_out and not cfg.weight_decay and not cfg.momentum
        self.stages = [stage_of(k) for k in self.strategy.names]
        self.n_stages = len(self.strategy.module.stages)
        self.momentum_buf = None
        self.norms: list[Tensor] = []  # per epoch: [steps, S] update norms
        # the splits evaluated after every epoch; a dataset without a test split has none to evaluate
        self.epoch_splits = [k for k in cfg.epoch_splits if k in self.splits]

    @property
    def module(self) -> nn.Module:
        """The module whose code runs the forward (on the meta device for a stacked population)."""
        return self.strategy.module

    def _put(self, t: Tensor) -> Tensor:
        dtype = getattr(torch, self.cfg.dtype) if t.is_floating_point() else t.dtype
        return t.to(self.device, dtype)

    def _fresh_module(self) -> nn.Module:
        with torch.random.fork_rng(devices=[]):  # code only: its own initialization is never used
            m = build_model(self.cfg.model, self.ds.input_shape, self.ds.n_classes, self.cfg.width)
        return m.to(self.device, getattr(torch, self.cfg.dtype))

    # -- the steps -------------------------------------------------------------------------
    def batch(self, order: Tensor, j: int, bs: int) -> tuple[Tensor, Tensor, int]:
        """(inputs, labels, global batch size) of step j of an epoch in `order` ([S, n] stacked,
        [n] single); a data-parallel rank takes its shard of the global batch."""
        idx = order[..., j * bs:(j + 1) * bs]
        size = idx.shape[-1]
        if self.world > 1:
            idx = idx[self.rank::self.world]
        # the rows X[idx] gathers, through index_select: a fraction of advanced indexing's overhead
        flat = idx.reshape(-1)
        return (self.X.index_select(0, flat).view(*idx.shape, *self.X.shape[1:]),
                self.y.index_select(0, flat).view(idx.shape), size)

    def batches(self, order: Tensor, bs: int) -> Iterator[tuple[Tensor, Tensor, int]]:
        """batch(order, j, bs) of each step j of the epoch; the epoch (every member's, stacked) is
        gathered once where it fits (EPOCH_GATHER_BYTES) and sliced along its example dimension:
        the same rows, a stacked member's batch a view with the member's stride."""
        n = order.shape[-1]
        if self.world > 1 or order.numel() * self.X[0].nbytes > EPOCH_GATHER_BYTES:
            for j in range(math.ceil(n / bs)):
                yield self.batch(order, j, bs)
            return
        flat, dim = order.reshape(-1), order.dim() - 1
        X = self.X.index_select(0, flat).view(*order.shape, *self.X.shape[1:])
        y = self.y.index_select(0, flat).view(order.shape)
        for start in range(0, n, bs):
            size = min(bs, n - start)
            yield X.narrow(dim, start, size), y.narrow(dim, start, size), size

    def step(self, xb: Tensor, yb: Tensor, size: int, lrs: list[float], active: Tensor | None) -> tuple[Tensor, float]:
        """One SGD step at the stage learning rates `lrs`; members where `active` ([S] bool, None:
        all) is False keep their weights exactly. Returns norms per tensor and member
        (strategy.tensor_norms) and the factor that makes them the update's: the rate where they
        are the gradient's (_flat_step), else 1. `_train_epoch` scales and combines the epoch's at
        its end, one op for all steps instead of two per step: the same sums (tests/test_train.py)."""
        if self.n_stages and self.cfg.schedule == "freezeout":
            self.strategy.module.frozen_stages = freezeout.frozen_prefix(lrs)
        if self.flat_update and active is None and lrs[0] > 0 and lrs.count(lrs[0]) == len(lrs):
            return self._flat_step(xb, yb, lrs[0])
        live = [i for i, s in enumerate(self.stages) if lrs[s] > 0]
        plist = [self.strategy.params[i] for i in live]
        grads = self._gradients(xb, yb, size, live, plist)
        with torch.no_grad():
            d, owned = self._direction(live, plist, grads)
            rates = [lrs[self.stages[i]] for i in live]
            rate = rates[0] if rates.count(rates[0]) == len(rates) else rates  # one scalar: the faster foreach
            if owned:  # a fresh tensor: the update is computed in its place
                torch._foreach_mul_(d, rate)
                upd = d
            else:
                upd = torch._foreach_mul(d, rate)
            if active is not None:
                # where, not a multiply by 0: a stopped member's inf update would make its weights NaN
                upd = [torch.where(active.view(-1, *[1] * (u.dim() - 1)), u, 0.0) for u in upd]
            torch._foreach_sub_(plist, upd)
            return self.strategy.tensor_norms(upd), 1.0

    def _flat_step(self, xb: Tensor, yb: Tensor, rate: float) -> tuple[Tensor, float]:
        """`step` where every parameter takes a plain SGD step at one rate (flat_update): the
        written-out gradients into the flat buffer, then p - rate * g over all of them in one pass,
        as torch.optim.SGD's add_(g, alpha=-lr) computes it (fused where the CPU fuses it). The
        update's norm is rate times the gradient's, scaled at the epoch's end: a multiply by a
        Python number costs 5 us a step."""
        self.gradients(xb, yb, self.stages[0])
        self.flat_params.add_(self.flat_grad, alpha=-rate)
        return self.strategy.flat_norms(self.flat_grad, self.grad_views), rate

    def _gradients(self, xb: Tensor, yb: Tensor, size: int, live: list[int], plist: list[Tensor]) -> list[Tensor]:
        """The training loss's gradients of the live parameters `plist`: written out where the
        model allows (lossscape.stacked_mlp: autograd's arithmetic, into the views `grad_views` of
        the engine's gradient buffer), else by autograd. Either way tensors of this step's own,
        which it may overwrite."""
        if self.written_out:
            grads = self.gradients(xb, yb, self.stages[live[0]])
            return [grads[i] for i in live]
        for p in plist:
            p.grad = None
        self._loss(xb, yb, size).sum().backward()
        return [p.grad for p in plist]

    def _loss(self, xb: Tensor, yb: Tensor, size: int) -> Tensor:
        logits = self.strategy.forward(xb)
        if self.world > 1:
            # DDP averages the ranks' gradients: a rank's summed loss times world / |batch| makes
            # that average the global batch's mean gradient, also when a short last batch splits
            # unevenly over the ranks (or leaves one of them nothing).
            return cross_entropy(logits, yb, reduction="sum") * (self.world / size)
        return self.strategy.losses(logits, yb)

    def _direction(self, live: list[int], plist: list[Tensor], grads: list[Tensor]) -> tuple[list[Tensor], bool]:
        """The SGD direction of the live parameters: gradient, weight decay, (Nesterov) momentum;
        and whether it is a fresh tensor the step may overwrite (not the momentum buffers)."""
        cfg = self.cfg
        d = grads
        if cfg.weight_decay:
            d = torch._foreach_add(d, plist, alpha=cfg.weight_decay)
        if cfg.momentum:
            if self.momentum_buf is None:  # kept across steps, so an ordinary tensor whatever the mode
                with torch.inference_mode(False):
                    self.momentum_buf = [torch.zeros_like(p) for p in self.strategy.params]
            bufs = [self.momentum_buf[i] for i in live]
            torch._foreach_mul_(bufs, cfg.momentum)
            torch._foreach_add_(bufs, d)
            if not cfg.nesterov:
                return bufs, False
            d = torch._foreach_add(d, bufs, alpha=cfg.momentum)
        return d, True

    @torch.inference_mode(False)
    def take_snapshots(self, step: int) -> None:
        """A cycle snapshot of every member still training, after optimizer step `step`: taken
        between steps that may run in inference mode (step_mode), as ordinary tensors."""
        for m, member in enumerate(self.members):
            if member.active:
                member.snapshot_steps.append(step)
                member.snapshots.append(self.strategy.state(m))

    @torch.no_grad()
    def evaluate(self, X: Tensor, y: Tensor) -> tuple[np.ndarray, np.ndarray]:
        """Mean loss and accuracy over a whole split, per member."""
        module = self.strategy.module
        was_training = module.training
        module.eval()
        S = len(self.seeds)
        loss = torch.zeros(S, dtype=torch.float64, device=self.device)
        correct = torch.zeros(S, dtype=torch.float64, device=self.device)
        chunk = max(1, EVAL_CHUNK // S)
        for i in range(0, len(y), chunk):
            xb, yb = X[i:i + chunk], y[i:i + chunk]
            logits, yb_s = self.strategy.eval_forward(xb, yb)
            loss += self.strategy.losses(logits, yb_s).double() * len(xb)
            correct += (logits.argmax(-1) == yb_s).double().sum(-1).reshape(S)
        module.train(was_training)
        return (loss / len(y)).cpu().numpy(), (correct / len(y)).cpu().numpy()

    def record(self, epoch: int, timing: dict, dist: Tensor, schedule: dict, evals: dict) -> None:
        """Hand every member still training its history row of `epoch`; its stop rules run there."""
        for m, member in enumerate(self.members):
            if not member.active:
                continue
            row = {"epoch": epoch + 1, **timing, "epoch_distance": float(dist[m]), **schedule, **_metrics(evals, m)}
            if self.progress and self.rank == 0:
                self.progress(member.seed, row)
            member.end_epoch(row, self.cfg, self.ds.n_classes, lambda: self.strategy.state(m))

    def complete_rows(self) -> None:
        """After training: the splits no epoch evaluated, on every member's last row (its final
        weights: a stopped member of a population keeps them exactly) and, under early_stop, on
        its best epoch's row (the weights it kept there, loaded into the strategy for the pass and
        then put back). Each row's eval_time_s grows by the pass that filled it."""
        rest = [k for k in self.splits if k not in self.epoch_splits]
        if not rest:
            return
        last = {m: len(member.history) for m, member in enumerate(self.members)}
        self._evaluate_rows(last, rest)
        best = {m: member.best_epoch for m, member in enumerate(self.members)
                if member.best_epoch is not None and member.best_epoch != last[m]}
        kept = {m: self.strategy.state(m) for m in best}
        for m in best:
            self.strategy.load(m, self.members[m].best_state)
        try:
            self._evaluate_rows(best, rest)
        finally:
            for m, state in kept.items():
                self.strategy.load(m, state)

    def _evaluate_rows(self, rows: dict[int, int], splits: list[str]) -> None:
        """Evaluate `splits` with the strategy's weights as they are and add them to each member
        m's row of epoch rows[m]; one pass for all members."""
        if not rows:
            return
        t0 = time.perf_counter()  # as the epoch's evaluation is timed: evaluate's results come to the CPU
        evals = {k: self.evaluate(*self.splits[k]) for k in splits}
        seconds = time.perf_counter() - t0
        for m, epoch in rows.items():
            self.members[m].add_evaluations(epoch, _metrics(evals, m), seconds, self.ds.n_classes)

    # -- the loop --------------------------------------------------------------------------
    def run(self) -> list[Run]:
        cfg, n = self.cfg, len(self.y)
        sizes = [batch_size_at(cfg, e, n) for e in range(cfg.epochs)]
        total_steps = sum(math.ceil(n / b) for b in sizes)
        snap_at = set(snapshot_steps(total_steps, cfg.snapshots)) if cfg.snapshots else set()
        t_start = time.perf_counter()
        self.strategy.module.train()
        step = 0
        for epoch, bs in enumerate(sizes):
            order = self.strategy.members(torch.stack([epoch_permutation(s, epoch, n) for s in self.seeds]))
            start = [p.detach().clone() for p in self.strategy.params]
            t0 = self._clock()
            step, lr, norms = self._train_epoch(order.to(self.device), bs, epoch, step, total_steps, snap_at)
            timing = {"epoch_time_s": self._clock() - t0}
            with torch.no_grad():
                self.norms.append(norms.sqrt().cpu())
                moved = torch._foreach_sub([p.detach() for p in self.strategy.params], start)
                dist = self.strategy.combine(self.strategy.tensor_norms(moved)).sqrt().cpu()
            t1 = time.perf_counter()
            evals = {k: self.evaluate(*self.splits[k]) for k in self.epoch_splits}
            timing["eval_time_s"] = time.perf_counter() - t1
            self.record(epoch, timing, dist, {"lr": lr, "batch_size": bs, "steps": math.ceil(n / bs)}, evals)
            if not any(member.active for member in self.members):
                break
        self.complete_rows()
        return self._runs(time.perf_counter() - t_start)

    def _train_epoch(self, order: Tensor, bs: int, epoch: int, step: int, total_steps: int,
                     snap_at: set) -> tuple[int, float, Tensor]:
        """The epoch's steps in `order`; returns the global step count after them, the last step's
        LR and the steps' squared update norms, [steps, S]."""
        steps = math.ceil(len(self.y) / bs)
        # stopped members keep their weights: a per-member mask, the same for the whole epoch
        active = torch.tensor([m.active for m in self.members], device=self.device)
        active = None if bool(active.all()) else active
        # and their BatchNorm statistics, which a training forward moves: put back after the epoch,
        # before anything reads a stopped member's state again (its final state, in _runs)
        held = [b.clone() for b in self.strategy.buffers] if active is not None else []
        norms, factors = [], []
        with self.step_mode():
            for j, (xb, yb, size) in enumerate(self.batches(order, bs)):
                lrs = self.stage_lrs(step, total_steps, epoch + j / steps)
                n, factor = self.step(xb, yb, size, lrs, active)
                norms.append(n)
                factors.append(factor)
                step += 1
                if step in snap_at:
                    self.take_snapshots(step)
        for b, h in zip(self.strategy.buffers, held):
            b.copy_(torch.where(active.view(-1, *[1] * (b.dim() - 1)), b, h))
        if all(n.shape == norms[0].shape for n in norms):
            per_step = torch.stack(norms)
            factors = torch.tensor(factors, dtype=per_step.dtype, device=self.device)
            sq_norms = self.strategy.combine(per_step * factors.view(-1, *[1] * (per_step.dim() - 1)))
        else:  # FreezeOut's later steps update fewer tensors
            sq_norms = torch.stack([self.strategy.combine(n * f) for n, f in zip(norms, factors)])
        return step, lrs[-1] if lrs else self.cfg.lr, sq_norms

    def _runs(self, total_time: float) -> list[Run]:
        S = len(self.members)
        norms = torch.cat(self.norms).numpy() if self.norms else np.zeros((0, S))
        runs = []
        for m, member in enumerate(self.members):
            final = member.best_state if member.best_state is not None else self.strategy.state(m)
            member_norms = norms[:, m] if norms.ndim == 2 else norms
            runs.append(Run(
                config=self.cfg.replace(seed=member.seed), history=member.history,
                update_norms=member_norms[: sum(h["steps"] for h in member.history)].astype(np.float64),
                initial_state=member.initial, final_state=final, stop_reason=member.stop_reason or "max_epochs",
                total_time_s=total_time, device=self.device.type, input_shape=tuple(self.ds.input_shape),
                n_classes=self.ds.n_classes, snapshots=member.snapshots, snapshot_steps=member.snapshot_steps,
                epoch_snapshots=member.epoch_snapshots, best_epoch=member.best_epoch))
        return runs

    def stage_lrs(self, step: int, total_steps: int, epoch_f: float) -> list[float]:
        if self.cfg.schedule == "freezeout":
            return freezeout.stage_lrs(self.cfg, self.n_stages, step, total_steps)
        return [lr_at(self.cfg, step, total_steps, epoch_f)] * self.n_stages

    def seconds_per_step(self, steps: int) -> float:
        """Seconds per step of `steps` consecutive training steps on epoch 0's batches, taken as an
        epoch takes them (`batches`) after PROBE_WARMUP_STEPS untimed ones: the probe of
        lossscape.path_choice. The steps move this engine's weights: probe engines are thrown away."""
        n = len(self.y)
        bs = batch_size_at(self.cfg, 0, n)
        order = self.strategy.members(torch.stack([epoch_permutation(s, 0, n) for s in self.seeds]).to(self.device))
        lrs = self.stage_lrs(0, 1, 0.0)

        def epochs():  # as many as the steps need: a full-batch epoch is one step
            while True:
                yield from self.batches(order, bs)
        batches = epochs()
        with self.step_mode():
            for _ in range(PROBE_WARMUP_STEPS):
                self.step(*next(batches), lrs, None)
            t0 = self._clock()
            for _ in range(steps):
                self.step(*next(batches), lrs, None)
        return (self._clock() - t0) / steps

    def step_mode(self):
        """The grad mode steps run in. Written-out gradients record no graph, and run in inference
        mode, which also skips the version counters and view tracking of the tensors a step makes
        (not of the parameters and buffers it updates in place, made outside). A single mlp run's
        training steps took 1.20x less time at width 64, batch 16 and 1.02x (median 1.07x) less at
        width 256, batch 64 than under no_grad (fastest of 12 alternating runs, one CPU thread).
        Autograd's gradients need grad mode."""
        return torch.inference_mode() if self.written_out else torch.enable_grad()

    def _clock(self) -> float:
        """perf_counter after the device's queued work is done."""
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter()
