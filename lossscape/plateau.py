"""Whether a fixed-epoch run has plateaued, and the FO budget pilot that chooses its epochs.

FreezeOut's claims compare a frozen run with its unfrozen twin at the same epochs; an unfrozen
baseline still climbing at the end of its budget makes any accuracy difference a statement about
an unfinished model (issue 12: the 6-epoch VGG baseline reached 44%). The rule, fixed before the
pilot ran (the profile files state it beside grid `freezeout`): the unfrozen run has plateaued at
its budget E when its validation accuracy rose by less than `max_gain` over the last TAIL_SHARE of
its epochs, mean over seeds. The pilot (`python -m lossscape.plateau --profile NAME`) trains the
unfrozen baseline of every FO model at each candidate budget on seeds >= 1000 and prints each
gain; the budget is the smallest candidate at which every model plateaus. The FO claims show the
same rule on the profile's own unfrozen runs.
"""
from __future__ import annotations

import argparse
import math

import numpy as np

from .cache import RunStore
from .claim_runs import FO_MODELS, UNFROZEN_T0, freezeout_config
from .profiles import load_profile
from .train import train, train_population

TAIL_SHARE = 0.2  # "the last 20% of epochs"


def tail_gain(val_acc) -> float:
    """Validation accuracy at the last epoch minus at the epoch where the last TAIL_SHARE begins."""
    acc = np.asarray(val_acc, dtype=float)
    if len(acc) < 2:
        raise ValueError(f"val_acc: got {len(acc)} epochs; allowed: at least 2")
    start = len(acc) - max(1, math.ceil(TAIL_SHARE * len(acc)))  # the epoch before the tail (1-based)
    return float(acc[-1] - acc[start - 1])


def plateaued(curves, max_gain: float) -> tuple[bool, float]:
    """(rule met, mean tail gain) over seeds' validation-accuracy curves."""
    gain = float(np.mean([tail_gain(c) for c in curves]))
    return gain < max_gain, gain


def cycle_gains(val_acc, cycles: int) -> list[float]:
    """tail_gain of each of `cycles` equal cycles of an epoch curve (snapshot ensembles: a cycle
    has converged when its own last TAIL_SHARE raised validation accuracy by less than the rule's
    gain, as a fixed budget has)."""
    acc = np.asarray(val_acc, dtype=float)
    if cycles < 1 or len(acc) % cycles:
        raise ValueError(f"cycles: got {cycles} for {len(acc)} epochs; allowed: a divisor of the epochs")
    return [tail_gain(c) for c in acc.reshape(cycles, -1)]


def choose_budget(gains: dict[int, dict[str, float]], max_gain: float) -> int | None:
    """The smallest budget at which every model's mean tail gain is below max_gain (None: none is)."""
    ok = [e for e, by_model in sorted(gains.items()) if all(g < max_gain for g in by_model.values())]
    return ok[0] if ok else None


def _main(argv=None) -> None:

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--budgets", type=int, nargs="+", required=True)
    ap.add_argument("--seeds", type=int, nargs="+", default=[1000, 1001, 1002])
    ap.add_argument("--max-gain", type=float, required=True)
    ap.add_argument("--cache-dir", default=None)
    ap.add_argument("--snapshots", action="store_true",
                    help="pilot grid `snapshots`' cycle length instead: --budgets are epochs per cycle")
    args = ap.parse_args(argv)
    if min(args.seeds) < 1000:
        ap.error("--seeds: pilots use seeds >= 1000 (outside every profile's seeds)")
    profile = load_profile(args.profile)
    store = RunStore(args.cache_dir) if args.cache_dir else None
    gains: dict[int, dict[str, float]] = {}
    if args.snapshots:
        _pilot_cycles(profile, store, args)
        return
    for e in args.budgets:
        for model in FO_MODELS:
            cfgs = [freezeout_config(profile, model, seed=s, epochs=e, freeze_t0=UNFROZEN_T0) for s in args.seeds]
            runs = [store.get_or_train(c) if store else _train(c) for c in cfgs]
            ok, gain = plateaued([r.metric("val_acc") for r in runs], args.max_gain)
            gains.setdefault(e, {})[model] = gain
            final = np.mean([r.metric("val_acc")[-1] for r in runs])
            print(f"E {e:3d} {model:15s} final val acc {final:.3f}  tail gain {gain:+.4f}  "
                  f"per seed {[round(tail_gain(r.metric('val_acc')), 4) for r in runs]}  plateaued {ok}", flush=True)
    print("chosen budget:", choose_budget(gains, args.max_gain))


def _pilot_cycles(profile, store, args) -> None:
    setting = profile.settings[0]
    (cfg,) = profile.grid("snapshots").configs(setting).values()
    for c in args.budgets:
        cfg_c = cfg.replace(epochs=c * cfg.snapshots)
        runs = (store.get_or_train_population(cfg_c, args.seeds) if store else train_population(cfg_c, args.seeds))
        per_cycle = np.mean([cycle_gains(r.metric("val_acc"), cfg.snapshots) for r in runs], axis=0)
        snaps = np.mean([[r.history[(k + 1) * c - 1]["val_acc"] for k in range(cfg.snapshots)] for r in runs], axis=0)
        print(f"{c:3d} epochs per cycle ({cfg.model}): mean tail gain per cycle {np.round(per_cycle, 4).tolist()}; "
              f"val acc at each snapshot {np.round(snaps, 3).tolist()}; all cycles converged "
              f"{bool((per_cycle < args.max_gain).all())}", flush=True)


def _train(cfg):
    return train(cfg)


if __name__ == "__main__":
    _main()
