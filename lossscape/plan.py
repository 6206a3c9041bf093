"""What a profile costs before it trains: `lossscape plan --profile NAME` and the pytest header.

Per grid: the runs it holds (one per cell and seed), how many the cache already has, how many are
left to train, their expected optimizer steps and an estimated time; then a total. A run that two
grids share (GEO-5's pairs reuse `minimizer`'s seeds) is counted once, under the first grid.

The estimate is a FLOP model times a measured throughput:
- FLOPs: the forward FLOPs per example of the config's model, from its layer shapes
  (lossscape.step_cost), times 3 for a training step (forward, and a backward of twice the
  forward), times the examples of an epoch and the members trained together; plus the engine's
  evaluation: a forward pass per epoch over the splits it evaluates every epoch (the config's
  epoch_splits), and one over the others at the end (two under early_stop: the last and the best
  epoch).
- Steps: exact for a fixed-epochs stop rule. A stop rule that ends runs early (target loss, early
  stopping) is bounded by its cap; where the grid states `expect_epochs` (what a pilot took at its
  smallest batch) the expected epochs grow with B / lr from there (EPOCH_GROWTH), never beyond
  the cap.
- Throughput: a probe trains a representative config (the first setting at the profile's
  smallest and largest batch, one model and a stacked population of two, two epochs each) and
  fits seconds per step = overhead + FLOPs / rate, so a small batch pays its per-step overhead
  and a large one its arithmetic. Where the profile wants CUDA and there is none, nominal H100/H200
  figures (NOMINAL_CUDA, with their reasons) stand in.

Kept out of the run cache's key on purpose, like step_cost: a cost model must not retrain runs.
The runs claims train beyond the grids (DP's k-rank copies, FO's models and t0 levels, LR-6's batch
growth) are listed by lossscape.claim_runs and planned like grid cells; X-1's retrains to a target
epoch depend on results and are not (a few short runs).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from .claim_runs import claim_cells
from .config import RunConfig
from .data import load_data
from .models import build_model, has_batchnorm, init_model
from .profiles import Profile, missing_data
from .schedules import batch_size_at
from .step_cost import stage_forward_flops
from .train import train, train_population

TRAIN_FLOPS_PER_FORWARD = 3  # forward + backward (input and weight gradients, each ~ one forward)


@dataclass(frozen=True)
class Throughput:
    """What one device does per second with these models, and what a step costs beyond FLOPs."""
    device: str
    train_flops_per_s: float
    eval_flops_per_s: float
    step_overhead_s: float      # one model's step: launches, Python, the optimizer's foreach ops
    stacked_overhead_s: float   # a stacked population's step (vmap)
    source: str                 # how the figures were obtained


# No GPU was available when the gpu profile was sized. H100 SXM's FP32 peak is 67 TFLOP/s
# (NVIDIA's H100 datasheet; H200 has the same compute). PyTorch keeps matmuls in full FP32 by
# default (TF32 is off for matmul), and models this small reach a fraction of peak: we assume
# 20% for training steps and twice that for the large evaluation chunks. A step launches on the
# order of 100 kernels at ~5 us each; a stacked (vmap) step about three times as many.
NOMINAL_CUDA = Throughput(
    device="cuda (nominal H100/H200)", train_flops_per_s=13e12, eval_flops_per_s=26e12,
    step_overhead_s=0.5e-3, stacked_overhead_s=1.5e-3,
    source="nominal: 20% of H100 FP32 peak (67 TFLOP/s) for training steps, 0.5 ms (single) / "
           "1.5 ms (stacked) per step of launch overhead; no GPU was probed")


@dataclass
class GridPlan:
    setting: str
    grid: str
    stop: str                   # the stop rule and what the expected epochs rest on
    runs: int = 0
    cached: int = 0
    shared: int = 0             # runs an earlier grid of the plan already trains
    to_train: int = 0
    steps: int = 0              # expected optimizer steps of the runs to train (per member)
    seconds: float = 0.0
    skipped: str | None = None  # the setting cannot run here (its data is absent)


@dataclass
class Plan:
    profile: str
    grids: list[GridPlan] = field(default_factory=list)
    throughput: Throughput | None = None  # None when nothing is left to train

    def total(self, name: str):
        return sum(getattr(g, name) for g in self.grids if not g.skipped)


# How the epochs a stop rule takes grow with the SGD noise scale B / lr (the schedule's effective
# LR: constant across batches under linear scaling), fitted on the smoke and cpu profiles' runs
# (bs 16..1024): a target training loss is reached in about as many steps wherever B / lr is the
# same, so its epochs grow nearly in proportion (exponent 0.8 fits bs 16 -> 256); early stopping's
# best validation loss comes sooner, in epochs growing as the square root (bs 16 -> 1024: 32, 50,
# 135, 330 epochs against 32, 64, 128, 256 predicted).
EPOCH_GROWTH = {"target_loss": 0.8, "early_stop": 0.5}


def expected_epochs(cfg: RunConfig, spec, base_lr: float) -> tuple[int, str]:
    """(epochs a run of this cell is expected to train, what that rests on)."""
    if cfg.stop == "epochs":
        return cfg.epochs, f"{cfg.epochs} epochs"
    if spec.expect_epochs is None:
        return cfg.epochs, f"{cfg.stop}, cap {cfg.epochs} assumed"
    ref_bs = min(spec.batch_sizes)
    ref_lr = cfg.replace(batch_size=ref_bs, lr=base_lr).effective_lr
    growth = EPOCH_GROWTH[cfg.stop]
    scale = ((cfg.batch_size / cfg.effective_lr) / (ref_bs / ref_lr)) ** growth
    return (min(cfg.epochs, max(1, math.ceil(spec.expect_epochs * scale))),
            f"{cfg.stop}, ~{spec.expect_epochs:g} epochs at bs {ref_bs} x (B/lr)^{growth:g}, cap {cfg.epochs}")


def forward_flops(cfg: RunConfig, ds) -> float:
    """Forward FLOPs per example of cfg's model (Linear and Conv layers)."""
    return sum(stage_forward_flops(init_model(cfg, 0, ds.input_shape, ds.n_classes), ds.input_shape))


def run_seconds(cfg: RunConfig, members: int, stacked: bool, epochs: int, ds, flops: float,
                tp: Throughput) -> tuple[int, float]:
    """(steps, seconds) of one training of `members` seeds (stacked together, or one model)."""
    n = len(ds.y_train)
    sizes = split_sizes(ds)
    every = sum(size for split, size in sizes.items() if split in cfg.epoch_splits)
    at_end = (sum(sizes.values()) - every) * (2 if cfg.stop == "early_stop" else 1)
    overhead = tp.stacked_overhead_s if stacked else tp.step_overhead_s
    steps = sum(math.ceil(n / batch_size_at(cfg, e, n)) for e in range(epochs))
    compute = members * flops * (epochs * TRAIN_FLOPS_PER_FORWARD * n / tp.train_flops_per_s
                                 + (epochs * every + at_end) / tp.eval_flops_per_s)
    return steps, steps * overhead + compute


def split_sizes(ds) -> dict[str, int]:
    """Examples per split the engine evaluates (a dataset may have no test split)."""
    sizes = {"train": len(ds.y_train), "val": len(ds.y_val)}
    if ds.y_test is not None:
        sizes["test"] = len(ds.y_test)
    return sizes


def probe(cfg: RunConfig, small: int, large: int) -> Throughput:
    """Fit the step overheads and FLOP rates from two short trainings per batch size of cfg."""
    ds = load_data(cfg)
    n = len(ds.y_train)
    small, large = min(small, n), min(large, n)
    flops = forward_flops(cfg, ds)
    n_eval = sum(split_sizes(ds).values())  # the last epoch's row: every split, its eval_time_s all of them
    base = RunConfig(**{**cfg.to_dict(), "stop": "epochs", "epochs": 2, "target_loss": None, "patience": None,
                        "schedule": "constant", "snapshots": 0, "record_snapshots": (), "seed": 0})
    stackable = not _has_bn(cfg, ds)
    fits, eval_rates = {}, []
    for members in ((1, 2) if stackable else (1,)):
        per_step = {}
        for bs in (large, small):  # the cheap one first: it pays the first call's warm-up
            c = base.replace(batch_size=bs)
            runs = train_population(c, [0, 1]) if members == 2 else [train(c)]
            last = runs[0].history[-1]  # the second epoch: past the warm-up
            per_step[bs] = last["epoch_time_s"] / last["steps"]
            eval_rates.append(members * flops * n_eval / max(last["eval_time_s"], 1e-9))
        # seconds per step = overhead + members * 3F * bs / rate, through the two batch sizes
        slope = max((per_step[large] - per_step[small]) / max(large - small, 1), 0.0)
        overhead = max(per_step[small] - slope * small, 0.0)
        rate = members * TRAIN_FLOPS_PER_FORWARD * flops / slope if slope > 0 else math.inf
        fits[members] = (overhead, rate)
    single, stacked = fits[1], fits.get(2, fits[1])
    return Throughput(device=cfg.device, train_flops_per_s=min(single[1], stacked[1]),
                      eval_flops_per_s=sorted(eval_rates)[len(eval_rates) // 2], step_overhead_s=single[0],
                      stacked_overhead_s=stacked[0],
                      source=f"probe: {cfg.model} on {cfg.dataset}, bs {small} and {large}, 2 epochs each")


def device_throughput(profile: Profile, fallback: RunConfig) -> Throughput:
    """A probe on this machine, or NOMINAL_CUDA where the profile wants a GPU and none is here.
    The probe trains the first setting whose data is here, else `fallback` (a cell to train)."""
    if profile.device == "cuda" and not torch.cuda.is_available():
        return NOMINAL_CUDA
    setting = next((s for s in profile.settings if not missing_data(s)), None)
    cfg = RunConfig(**{**setting.fields, "device": profile.device}) if setting else fallback
    return probe(cfg, min(profile.batch_sizes), max(profile.batch_sizes))


@dataclass(frozen=True)
class Cell:
    """One grid cell's runs left to train: `seeds` of `config`, together when `population`."""
    setting: str
    grid: str
    config: RunConfig
    seeds: tuple[int, ...]
    population: bool


def survey(profile: Profile, store) -> tuple[list[GridPlan], list[tuple[GridPlan, Cell, object, float]]]:
    """Count every grid's runs against `store` (only read: entries are looked up, not loaded) and
    list the cells left to train, each run once: a run two grids share goes to the first. The
    grids are the profile's and the runs claims add to them (lossscape.claim_runs)."""
    grids: dict[tuple[str, str], GridPlan] = {}
    seen: set[str] = set()
    pending = []  # (its grid's plan, the cell, the grid spec, the grid's base LR)
    for owner, setting, label, spec, cfg in claim_cells(profile):
        gp = grids.setdefault((owner, label), GridPlan(owner, label, ""))
        reason = missing_data(setting) if setting else None
        if reason:
            gp.skipped = reason
            continue
        gp.runs += len(spec.seeds)
        todo = []
        for s in spec.seeds:
            path = store.path(cfg.replace(seed=s))
            if path.name in seen:  # counted (cached or to train) under an earlier grid
                gp.shared += 1
            elif (path / "run.json").exists():
                gp.cached += 1
            else:
                todo.append(s)
            seen.add(path.name)
        gp.to_train += len(todo)
        base_lr = {**(setting.fields if setting else {}), **spec.fields}.get("lr", RunConfig.lr)
        gp.stop = expected_epochs(cfg, spec, base_lr)[1]
        if todo:
            pending.append((gp, Cell(owner, label, cfg, tuple(todo), spec.population), spec, base_lr))
    return list(grids.values()), pending


def missing_cells(profile: Profile, store) -> list[Cell]:
    """The cells a sweep trains: every run of the profile that `store` lacks, each once."""
    return [cell for _, cell, _, _ in survey(profile, store)[1]]


def make_plan(profile: Profile, store, throughput: Throughput | None = None) -> Plan:
    """The plan of `profile` against `store` (a RunStore, only read). `throughput`: the device's
    figures; probed (or nominal) only if something is left to train."""
    grids, pending = survey(profile, store)
    plan = Plan(profile.name, grids)
    if not pending:
        return plan
    tp = plan.throughput = throughput or device_throughput(profile, pending[0][1].config)
    flops = {}
    for gp, cell, spec, base_lr in pending:
        cfg = cell.config
        ds = load_data(cfg)
        model_key = (cfg.dataset, cfg.n_samples, cfg.model, cfg.width)
        if model_key not in flops:
            flops[model_key] = forward_flops(cfg, ds)
        epochs = expected_epochs(cfg, spec, base_lr)[0]
        stacked = cell.population and len(cell.seeds) > 1 and not _has_bn(cfg, ds)
        for members in [len(cell.seeds)] if stacked else [1] * len(cell.seeds):
            steps, secs = run_seconds(cfg, members, stacked, epochs, ds, flops[model_key], tp)
            gp.steps += steps * members
            gp.seconds += secs
    return plan


def _has_bn(cfg, ds) -> bool:
    """BatchNorm populations are planned as a loop, the conservative estimate: they may stack
    (lossscape.strategies), but on a loaded CPU at 1 thread stacking measured 0.66-0.85x the loop
    (benchmarks/bench_speed.py --only batchnorm); the probe decides per machine when they train."""
    with torch.random.fork_rng(devices=[]):
        return has_batchnorm(build_model(cfg.model, ds.input_shape, ds.n_classes, cfg.width))


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def summary_line(plan: Plan) -> str:
    """One line: the totals (the pytest header's)."""
    where = f" on {plan.throughput.device}" if plan.throughput else ""
    shared = f" ({plan.total('shared')} shared by two grids)" if plan.total("shared") else ""
    return (f"plan {plan.profile}: {plan.total('runs')} runs{shared}, {plan.total('cached')} cached, "
            f"{plan.total('to_train')} to train, {plan.total('steps'):,} steps, "
            f"~{_duration(plan.total('seconds'))}{where}")


def render(plan: Plan) -> list[str]:
    """The table `lossscape plan` prints: one row per setting and grid, then the total."""
    head = f"{'setting/grid':<48} {'runs':>5} {'cached':>6} {'shared':>6} {'train':>6} {'steps':>11} {'time':>9}  stop rule"
    lines = [head, "-" * len(head)]
    for g in plan.grids:
        name = f"{g.setting}/{g.grid}"
        if g.skipped:
            lines.append(f"{name:<48} skipped: {g.skipped}")
            continue
        lines.append(f"{name:<48} {g.runs:>5} {g.cached:>6} {g.shared:>6} {g.to_train:>6} {g.steps:>11,} "
                     f"{_duration(g.seconds):>9}  {g.stop}")
    lines.append("-" * len(head))
    lines.append(summary_line(plan))
    if plan.throughput:
        tp = plan.throughput
        lines.append(f"throughput: {tp.train_flops_per_s / 1e9:.3g} GFLOP/s training, "
                     f"{tp.eval_flops_per_s / 1e9:.3g} GFLOP/s evaluation, step overhead "
                     f"{tp.step_overhead_s * 1e3:.2f} ms (single) / {tp.stacked_overhead_s * 1e3:.2f} ms (stacked); "
                     f"{tp.source}")
    return lines
