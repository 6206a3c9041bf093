"""The `lossscape` command (also `python -m lossscape`).

    lossscape run --dataset mnist1d --model mlp --batch-size 64 --lr 0.05 --epochs 10 --seed 0
    lossscape run --model mymodels:tiny ...   # a user's factory (input_shape, n_classes, width) -> nn.Module
    lossscape run ... --seeds 0-4          # a population of seeds, trained as one stacked model
    lossscape run ... --json               # the Run's metrics as JSON on stdout (NaN, Infinity: null)
    lossscape report                       # re-render reports/claims.{md,html} from claims.json
    lossscape plan --profile cpu           # what the profile's grids cost: cached, to train, time
    lossscape sweep --profile gpu --executor ray --address auto   # train the missing cells on Ray
    lossscape pilot --profile gpu          # X-1/X-2's targets by the pilot rule, written into the profile
    lossscape report --compare A.json B.json --out DIR   # verdict changes and effect shifts, A to B

`lossscape run` takes one option per RunConfig field (--batch-size for batch_size, --no-nesterov
for a False bool), with the field's default and, where the config names its values, their choices.
A "package.module:attribute" model or dataset is looked up in the current folder too, as
`python -m` does. Bad arguments, unusable data and a width or population that cannot fit in memory
print one line and exit with status 2. Output piped into a reader that stops early (`| head`) ends quietly: the
run still trains to the end and is cached.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import warnings

import numpy as np
from safetensors import SafetensorError

from . import __version__
from .cache import CacheError, RunStore
from .config import CHOICES, MAX_SEED, SPLITS, ConfigError, RunConfig
from .data import DataError, DatasetNotFoundError
from .parallel import is_main_process, under_launcher
from .pilot import pilot
from .plan import make_plan, render
from .profiles import PROFILES, load_profile
from .report.compare import write_comparison
from .report.render import rerender
from .report.schema import ReportError
from .sweep import sweep
from .train import train_population

# A population trains in one process; train_population's memory estimate bounds it further.
MAX_SEEDS = 1_000_000


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, no usage dump
        self.exit(2, f"{self.prog}: error: {message}\n")


def _seeds(text: str) -> list[int]:
    """'0-4' -> [0..4]; '0,2,5' -> [0, 2, 5]."""
    try:
        ranges = []
        for part in text.split(","):
            lo, _, hi = part.partition("-")
            ranges.append(range(int(lo), int(hi) + 1) if hi else range(int(lo), int(lo) + 1))
    except ValueError:
        raise argparse.ArgumentTypeError(f"got {text!r}; allowed: a range like 0-4 or a list like 0,2,5") from None
    # checked on the ranges, before a list as long as a mistyped range is built
    if not any(ranges) or min(r.start for r in ranges if r) < 0 or max(r.stop - 1 for r in ranges if r) > MAX_SEED:
        raise argparse.ArgumentTypeError(f"got {text!r}; allowed: seeds in 0..{MAX_SEED}, like 0-4")
    if sum(map(len, ranges)) > MAX_SEEDS:
        raise argparse.ArgumentTypeError(f"got {text!r}; allowed: at most {MAX_SEEDS:,} seeds")
    return [s for r in ranges for s in r]


def _epoch_list(text: str) -> tuple[int, ...]:
    """'10,20' -> (10, 20)."""
    try:
        return tuple(int(e) for e in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"got {text!r}; allowed: comma-separated epochs like 10,20") from None


def _name_list(text: str) -> tuple[str, ...]:
    """'val,test' -> ('val', 'test'); RunConfig checks the names."""
    return tuple(name.strip() for name in text.split(",") if name.strip())


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="lossscape", description=__doc__.split("\n")[0])
    p.add_argument("--version", action="version", version=f"lossscape {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    r = sub.add_parser("run", help="train one configuration (or a population of seeds) and print its metrics")
    _config_options(r)
    r.add_argument("--data-dir", default=None, help="folder with the mnist / cats_vs_dogs files (or LOSSSCAPE_DATA)")
    r.add_argument("--cache-dir", default=None, help="run cache (default: LOSSSCAPE_CACHE or ./cache)")
    r.add_argument("--no-cache", action="store_true", help="train even if the run is cached, and do not store it")
    r.add_argument("--json", action="store_true", help="print the metrics as JSON instead of tables")
    rep = sub.add_parser("report", help="re-render the claims report from the last results, without training")
    rep.add_argument("--report-dir", default="reports")
    rep.add_argument("--compare", nargs=2, metavar=("A.json", "B.json"),
                     help="compare two claims.json: verdict changes, effect shifts, results in only one")
    rep.add_argument("--out", default=None, help="folder for comparison.{md,html} (default: --report-dir)")
    _profile_parsers(sub)
    return p


_OPTION_TYPES = {"int": int, "float": float, "str": str, "tuple[int, ...]": _epoch_list, "tuple[str, ...]": _name_list}


def _config_options(r) -> None:
    """One option per RunConfig field: its type, default, help and choices are the field's own, so
    a field added to the config is an option here without another line. --seed shares a group with
    --seeds, the population."""
    seeds = r.add_mutually_exclusive_group()
    for f in _cli_fields():
        kind = f.type.split(" | ")[0]
        help_text = f"{f.metadata.get('help', '')} (default: %(default)s)".strip()
        kw = {"default": f.default, "help": help_text}
        if kind == "bool":
            kw["action"] = argparse.BooleanOptionalAction
        else:
            kw["type"] = _OPTION_TYPES[kind]
            kw["choices"] = CHOICES.get(f.name)
        (seeds if f.name == "seed" else r).add_argument("--" + f.name.replace("_", "-"), **kw)
    seeds.add_argument("--seeds", type=_seeds, default=None, help="a population, e.g. 0-4")


def _profile_parsers(sub) -> None:
    """The subcommands that act on a whole profile's grids (lossscape.plan)."""
    profile_help = f"{', '.join(PROFILES)}, or a profile .toml file"

    pl = sub.add_parser("plan", help="what a profile's grids will cost: runs cached, to train, expected time")
    pl.add_argument("--profile", required=True, metavar="NAME|FILE", help=profile_help)
    pl.add_argument("--cache-dir", default=None, help="run cache (default: LOSSSCAPE_CACHE or ./cache); only read")
    pl.add_argument("--data-dir", default=None, help="folder with the mnist / cats_vs_dogs files (or LOSSSCAPE_DATA)")
    sw = sub.add_parser("sweep", help="train a profile's missing grid cells as tasks on a cluster engine")
    sw.add_argument("--profile", required=True, metavar="NAME|FILE", help=profile_help)
    sw.add_argument("--executor", choices=("ray",), required=True)
    sw.add_argument("--address", default=None,
                    help="an existing Ray cluster (auto, host:6379, ray://host:10001); default: start a local one")
    sw.add_argument("--num-cpus", type=int, default=None, help="CPUs of the local cluster (default: all)")
    sw.add_argument("--cache-dir", default=None, help="run cache every worker reaches (default: LOSSSCAPE_CACHE or ./cache)")
    sw.add_argument("--data-dir", default=None, help="folder with the mnist / cats_vs_dogs files (or LOSSSCAPE_DATA)")
    pi = sub.add_parser("pilot", help="X-1/X-2's target validation losses by the pilot rule (seed 1000), "
                                      "written into the profile file")
    pi.add_argument("--profile", required=True, metavar="NAME|FILE", help=profile_help)
    pi.add_argument("--cache-dir", default=None, help="run cache (default: LOSSSCAPE_CACHE or ./cache)")
    pi.add_argument("--data-dir", default=None, help="folder with the mnist / cats_vs_dogs files (or LOSSSCAPE_DATA)")


def _cli_fields():
    """RunConfig's fields a command line can set (init_from needs a parent run's weights)."""
    return [f for f in dataclasses.fields(RunConfig) if f.metadata.get("cli", True)]


def _config(a) -> RunConfig:
    return RunConfig(**{f.name: getattr(a, f.name) for f in _cli_fields()})


def _say(text: str) -> None:
    """Print a line of results. Once the reader has gone (`| head`), the rest goes nowhere: the run
    keeps training and is cached, and the exit does not fail flushing it."""
    try:
        print(text, flush=True)
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _json_safe(value):
    """JSON has no NaN or Infinity (a diverged run's losses and distances): they become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def summary(run) -> dict:
    """The metrics of a Run that a person or a script reads (no weights)."""
    last = run.history[-1] if run.history else {}
    return {
        "config": run.config.to_dict(), "stop_reason": run.stop_reason, "epochs_run": run.epochs_run,
        "best_epoch": run.best_epoch, "total_time_s": run.total_time_s, "device": run.device,
        "final": {k: v for k, v in last.items() if k.endswith(("_loss", "_acc"))},
        "update_norm_median": float(np.median(run.update_norms)) if len(run.update_norms) else None,
        "history": run.history,
    }


_COLUMNS = ("seed", "epoch", "train_loss", "train_acc", "val_loss", "val_acc", "epoch_distance", "epoch_time_s")


class _Table:
    """The per-epoch table; its header comes with the first row, so that an error raised before
    training prints nothing but itself."""

    def __init__(self):
        self.seeds_shown = set()

    def row(self, seed, row):
        if not self.seeds_shown:
            _say("  ".join(f"{c:>10}" for c in _COLUMNS))
        self.seeds_shown.add(seed)
        vals = [seed] + [row.get(c, "-") for c in _COLUMNS[1:]]  # "-": a split not evaluated at that epoch
        _say("  ".join(f"{v:>10.4f}" if isinstance(v, float) else f"{v!s:>10}" for v in vals))


def _run(a) -> int:
    if a.data_dir:
        os.environ["LOSSSCAPE_DATA"] = a.data_dir  # read by the loaders, inherited by DDP workers
    cfg = _config(a)
    seeds = a.seeds if a.seeds is not None else [cfg.seed]
    # Under torchrun every rank trains (a cache hit on one rank and a miss on another would leave
    # the other waiting in the all-reduce forever); rank 0 alone prints and stores.
    launched, main_rank = under_launcher(), is_main_process()
    table = _Table()
    progress = None if a.json else table.row
    if not main_rank:
        train_population(cfg, seeds)
        return 0
    store = RunStore(a.cache_dir)
    if a.no_cache or launched:
        runs = train_population(cfg, seeds, progress=progress)
    else:
        runs = store.get_or_train_population(cfg, seeds, progress=progress)
    _show(runs, table, a)
    if launched and not a.no_cache:
        _store(store, runs)
    return 0


def _store(store: RunStore, runs) -> None:
    """Rank 0 of a torchrun job stores what it trained, after showing it: a write that fails is one
    line of error (exit status 2), not a traceback."""
    for run in runs:
        try:
            store.save(run)
        except (OSError, SafetensorError) as exc:  # safetensors reports a full disk as its own error
            raise CacheError(f"cache folder {store.root.absolute()} could not store the run of seed "
                             f"{run.config.seed} ({exc}); allowed: a folder this user can write, given by "
                             "--cache-dir or LOSSSCAPE_CACHE") from None


def _show(runs, table: _Table, a) -> None:
    if a.json:
        out = [summary(r) for r in runs]
        _say(json.dumps(_json_safe(out[0] if a.seeds is None else out), indent=1, allow_nan=False))
        return
    for r in runs:
        if r.config.seed not in table.seeds_shown:  # a cached run: show the table it would have printed
            # as it trained: each epoch's own evaluations; the splits evaluated once training ended are the summary's
            late = {f"{k}_{m}" for k in SPLITS if k not in r.config.epoch_splits for m in ("loss", "acc")}
            for row in r.history:
                table.row(r.config.seed, {k: v for k, v in row.items() if k not in late})
    for r in runs:
        s = summary(r)
        final = ", ".join(f"{k} {v:.4f}" for k, v in s["final"].items())
        _say(f"seed {r.config.seed}: stopped ({r.stop_reason}) after {r.epochs_run} epochs, "
              f"{r.total_time_s:.1f} s; {final}; median update norm {s['update_norm_median']:.3g}")


def _report(a) -> int:
    if a.compare:
        written = write_comparison(*a.compare, a.out or a.report_dir)
    else:
        path = os.path.join(a.report_dir, "claims.json")
        if not os.path.exists(path):
            raise ReportError(f"{path} not found; run `pytest claims` first")
        written = rerender(a.report_dir)  # a malformed claims.json or an unwritable folder: ReportError
    for path in written:
        print(path)
    return 0


def _plan(a) -> int:
    if a.data_dir:
        os.environ["LOSSSCAPE_DATA"] = a.data_dir
    for line in render(make_plan(load_profile(a.profile), RunStore(a.cache_dir))):
        print(line)
    return 0


def _sweep(a) -> int:
    if a.data_dir:
        os.environ["LOSSSCAPE_DATA"] = a.data_dir
    store = RunStore(a.cache_dir)
    trained = sweep(load_profile(a.profile), store, address=a.address, num_cpus=a.num_cpus)
    print(f"sweep {a.profile}: trained {trained} runs into {store.root.resolve()}")
    return 0


def _pilot(a) -> int:
    if a.data_dir:
        os.environ["LOSSSCAPE_DATA"] = a.data_dir
    pilot(load_profile(a.profile), RunStore(a.cache_dir))
    return 0


_COMMANDS = {"run": _run, "report": _report, "plan": _plan, "sweep": _sweep, "pilot": _pilot}


def main(argv=None) -> int:
    # A user's "module:factory" in the current folder is found as `python -m` would find it; the
    # console script's own folder is what Python puts first otherwise.
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    a = _parser().parse_args(argv)

    def show_warning(message, category, filename, lineno, file=None, line=None):
        # one line, as the errors: the warning's text without the Python source line behind it
        print(f"lossscape {a.command}: warning: {message}".replace("\n", " "), file=sys.stderr)

    with warnings.catch_warnings():  # restores showwarning for a caller that runs main() in-process
        warnings.showwarning = show_warning
        try:
            return _COMMANDS[a.command](a)
        except (ConfigError, DataError, DatasetNotFoundError, CacheError, ReportError) as exc:
            print(f"lossscape {a.command}: error: {exc}".replace("\n", " "), file=sys.stderr)
            return 2


if __name__ == "__main__":
    sys.exit(main())
