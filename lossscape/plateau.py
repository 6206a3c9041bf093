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


def choose_budget(gains: dict[int, dict[str, float]], max_gain: float) -> int | None:
    """The smallest budget at which every model's mean tail gain is below max_gain (None: none is)."""
    ok = [e for e, by_model in sorted(gains.items()) if all(g < max_gain for g in by_model.values())]
    return ok[0] if ok else None


def _main(argv=None) -> None:
    from .cache import RunStore
    from .claim_runs import FO_MODELS, UNFROZEN_T0, freezeout_config
    from .profiles import load_profile

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--budgets", type=int, nargs="+", required=True)
    ap.add_argument("--seeds", type=int, nargs="+", default=[1000, 1001, 1002])
    ap.add_argument("--max-gain", type=float, required=True)
    ap.add_argument("--cache-dir", default=None)
    args = ap.parse_args(argv)
    if min(args.seeds) < 1000:
        ap.error("--seeds: pilots use seeds >= 1000 (outside every profile's seeds)")
    profile = load_profile(args.profile)
    store = RunStore(args.cache_dir) if args.cache_dir else None
    gains: dict[int, dict[str, float]] = {}
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


def _train(cfg):
    from .train import train
    return train(cfg)


if __name__ == "__main__":
    _main()
