"""Do two versions of the library train the same weights? Train a fixed set of runs, then compare.

    # the library trained is the one on PYTHONPATH: an old checkout's, then this one's
    OMP_NUM_THREADS=1 PYTHONPATH=/path/to/old/checkout python benchmarks/bit_identity.py train --out /tmp/before
    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/bit_identity.py train --out /tmp/after
    python benchmarks/bit_identity.py compare --before /tmp/before --after /tmp/after

Train from a copy of the code that does not change while it runs: the DDP ranks re-import it.

`train` covers every path of the engine: the smoke profile's runs as a claims session trains them
(populations, single-model grids, early stopping, target loss, cyclic snapshots, schedules,
FreezeOut on the BatchNorm models, DDP on 2 ranks: lossscape.claim_runs), plus the cpu profile's
first setting at each grid's smallest and largest batch with epochs capped at --cpu-epochs, both
as a stacked population and as a loop of single runs. The population path is forced (the default
is a timing probe, which may choose differently between two runs); configs with record_snapshots
add the states kept at given epochs. Only the public API is used, so an old checkout runs it too.

`compare` matches runs by config, seed and path, and checks every tensor (initial, final, every
kept state, the per-step update norms) with torch.equal (NaN equal to NaN at the same places: a
diverged run's), and every history value but wall times with ==; it exits 1 on any difference.
Which splits a config evaluates after every epoch (eval_every_epoch) is left out of the match: it
changes no weight. A row of the second folder may
lack a split the first one's has (an epoch that no longer evaluates it), never hold one it lacks,
and every value it holds must be equal.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
from pathlib import Path

import torch

import lossscape
from lossscape import RunConfig, train, train_population
from lossscape.claim_runs import claim_cells
from lossscape.profiles import load_profile

TIMES = {"epoch_time_s", "eval_time_s"}


def jobs(cpu_epochs: int, cpu_seeds: int):
    """(label, config, seeds, path): path "single" trains each seed with `train`."""
    out = []
    for _, _, label, spec, cfg in claim_cells(load_profile("smoke")):
        kind = "stacked" if spec.population and len(spec.seeds) > 1 else "single"
        out.append((f"smoke {label}", cfg, spec.seeds, kind))
    cpu = load_profile("cpu")
    seeds = tuple(range(cpu_seeds))
    for _, _, label, spec, cfg in claim_cells(cpu):
        if cfg.world_size > 1 or cfg.batch_size not in (min(spec.batch_sizes), max(spec.batch_sizes)):
            continue
        if spec.name not in ("freezeout",) and cfg.dataset != cpu.settings[0].fields["dataset"]:
            continue
        short = _cap_epochs(cfg, cpu_epochs)
        kinds = ("stacked", "loop") if spec.population else ("single",)
        out += [(f"cpu {label} ({cpu_epochs} epochs)", short, seeds, k) for k in kinds]
    # the states kept at chosen epochs (record_snapshots), stacked and single, with cycle snapshots
    rec = RunConfig(dataset="mnist1d", n_samples=1000, model="mlp", width=32, batch_size=64, lr=0.1, momentum=0.9,
                    schedule="cyclic_cosine", snapshots=2, epochs=4, record_snapshots=(1, 2, 4))
    out += [("record_snapshots", rec, (0, 1, 2), "stacked"), ("record_snapshots", rec, (0, 1), "single"),
            ("record_snapshots early_stop", rec.replace(schedule="constant", snapshots=0, stop="early_stop",
                                                        patience=1, epochs=6, record_snapshots=(1, 2, 3, 4, 5, 6)),
             (0, 1, 2), "stacked")]
    return out


def _cap_epochs(cfg: RunConfig, cap: int) -> RunConfig:
    epochs = min(cfg.epochs, cap)
    warmup = min(cfg.warmup_epochs, epochs - 1)  # a warmup must end before the last epoch
    if cfg.schedule == "cyclic_cosine":
        snaps = math.gcd(cfg.snapshots, epochs) if cfg.snapshots > 1 else 1
        return cfg.replace(epochs=epochs, warmup_epochs=warmup, snapshots=snaps)
    if cfg.schedule == "step":  # decay at every epoch after the first, so the cap keeps the decay
        return cfg.replace(epochs=epochs, decay_epochs=tuple(range(1, epochs)))
    # a warmup longer than the capped run is refused by RunConfig: it is shortened to fit
    return cfg.replace(epochs=epochs, record_snapshots=tuple(e for e in cfg.record_snapshots if e <= epochs),
                       warmup_epochs=min(cfg.warmup_epochs, epochs - 1))


def kept_states(run) -> list[dict]:
    """Every state the run kept beyond initial and final, in the order training reached them: the
    cycle snapshots (at their steps) and the record_snapshots epochs (at their epochs' ends), a
    cycle snapshot first where both fall on the same step. Old Runs held them in one list in that
    order; newer ones hold two fields."""
    if not hasattr(run, "epoch_snapshots"):
        return list(run.snapshots)
    ends = {}
    step = 0
    for row in run.history:
        step += row["steps"]
        ends[row["epoch"]] = step
    timed = [((s, 0), st) for s, st in zip(run.snapshot_steps, run.snapshots)]
    timed += [((ends[e], 1), st) for e, st in run.epoch_snapshots.items()]
    return [st for _, st in sorted(timed, key=lambda t: t[0])]


def record(run, label: str, path: str) -> dict:
    tensors = {f"initial/{k}": v for k, v in run.initial_state.items()}
    tensors.update({f"final/{k}": v for k, v in run.final_state.items()})
    for i, st in enumerate(kept_states(run)):
        tensors.update({f"kept{i}/{k}": v for k, v in st.items()})
    tensors["update_norms"] = torch.as_tensor(run.update_norms)
    history = [{k: v for k, v in row.items() if k not in TIMES} for row in run.history]
    return {"label": label, "path": path, "config": run.config.to_json(), "tensors": tensors,
            "meta": {"history": history, "stop_reason": run.stop_reason, "best_epoch": run.best_epoch,
                     "snapshot_steps": list(run.snapshot_steps)}}


def cmd_train(a) -> None:
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    todo = jobs(a.cpu_epochs, a.cpu_seeds)
    print(f"training with {lossscape.__file__}", flush=True)
    for i, (label, cfg, seeds, path) in enumerate(todo):
        if path == "single":
            runs = [train(cfg.replace(seed=s)) for s in seeds]
        else:
            runs = train_population(cfg, seeds, path=path)
        for run in runs:
            rec = record(run, label, path)
            matched = {k: v for k, v in json.loads(rec["config"]).items() if k != "eval_every_epoch"}
            name = hashlib.sha256((json.dumps(matched, sort_keys=True, separators=(",", ":")) + path).encode()).hexdigest()[:20]
            torch.save(rec, out / f"{name}.pt")
        print(f"[{i + 1}/{len(todo)}] {label} bs={cfg.batch_size} lr={cfg.lr:g} {path}: {len(runs)} runs",
              flush=True)


def _identical(a: torch.Tensor, b: torch.Tensor) -> bool:
    """torch.equal, with NaN equal to NaN in the same place (a diverged run's weights)."""
    if a.is_floating_point() and b.is_floating_point():
        return torch.equal(a.isnan(), b.isnan()) and torch.equal(a.nan_to_num(0.0), b.nan_to_num(0.0))
    return torch.equal(a, b)


def cmd_compare(a) -> int:
    before = {p.name: p for p in Path(a.before).glob("*.pt")}
    after = {p.name: p for p in Path(a.after).glob("*.pt")}
    missing = sorted(set(before) ^ set(after))
    n_tensors = n_runs = 0
    bad = []
    for name in sorted(set(before) & set(after)):
        x, y = (torch.load(d[name], weights_only=False) for d in (before, after))
        n_runs += 1
        where = f"{x['label']} {x['path']} bs={json.loads(x['config'])['batch_size']}"
        if set(x["tensors"]) != set(y["tensors"]):
            bad.append(f"{where}: tensor names differ ({sorted(set(x['tensors']) ^ set(y['tensors']))[:3]}...)")
            continue
        for k, t in x["tensors"].items():
            n_tensors += 1
            if not _identical(t, y["tensors"][k]):
                bad.append(f"{where}: {k} differs (max abs {float((t.double() - y['tensors'][k].double()).abs().max()):.3g})")
        rows_x, rows_y = x["meta"].pop("history"), y["meta"].pop("history")
        if json.dumps(x["meta"], sort_keys=True) != json.dumps(y["meta"], sort_keys=True):
            bad.append(f"{where}: stop reason, best epoch or snapshot steps differ")
        if len(rows_x) != len(rows_y) or any(set(b) - set(a) or json.dumps({k: a[k] for k in b}, sort_keys=True)
                                             != json.dumps(b, sort_keys=True) for a, b in zip(rows_x, rows_y)):
            bad.append(f"{where}: history differs")
    print(f"{n_runs} runs matched, {n_tensors} tensors compared with torch.equal; "
          f"{len(missing)} runs in only one folder; {len(bad)} differences")
    for line in bad[:50]:
        print("  " + line)
    return 1 if bad or missing else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train")
    t.add_argument("--out", required=True)
    t.add_argument("--cpu-epochs", type=int, default=2)
    t.add_argument("--cpu-seeds", type=int, default=3)
    c = sub.add_parser("compare")
    c.add_argument("--before", required=True)
    c.add_argument("--after", required=True)
    a = ap.parse_args()
    if a.cmd == "train":
        cmd_train(a)
        return 0
    return cmd_compare(a)


if __name__ == "__main__":
    sys.exit(main())
