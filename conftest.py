"""pytest wiring for the claims suite: options, profile, gpu skipping, the shared run fixtures.

    pytest claims                      # cpu profile (the embedded default), every claim
    pytest claims --profile smoke      # minutes; CI runs it with --report-only
    pytest claims -m gpu               # gpu profile, full scale (skipped where CUDA is absent)
    pytest claims -k GEO               # one family; trained runs come from the cache

The report itself (reports/claims.{json,md,html}) is written by lossscape.report.plugin.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import re
import time

import pytest
import torch
from hypothesis import settings

from lossscape import stats
from lossscape.cache import CacheError, RunStore, default_root
from lossscape.profiles import PROFILES, load_profile, missing_data
from lossscape.report.machine import alone

pytest_plugins = ["lossscape.report.plugin"]

# Hypothesis profiles for tests/ and for GEO-4's property check on real gradients: "default" is
# quick; `--hypothesis-profile thorough` draws 1000 examples. deadline=None: the first example
# pays for torch's lazy initialisation, which is not slowness.
settings.register_profile("default", max_examples=50, deadline=None)
settings.register_profile("thorough", max_examples=1000, deadline=None)
settings.load_profile("default")


def pytest_addoption(parser):
    g = parser.getgroup("lossscape")
    g.addoption("--profile", choices=PROFILES, default=None,
                help="experiment profile from lossscape/profiles/ (default: cpu; gpu with -m gpu)")
    g.addoption("--seeds", type=_seed_count, default=None, help="number of seeds (0..N-1), overriding the profile")
    g.addoption("--cache-dir", default=None, help="run cache (default: LOSSSCAPE_CACHE or ./cache)")
    g.addoption("--data-dir", default=None, help="folder with the mnist / cats_vs_dogs files (or LOSSSCAPE_DATA)")
    g.addoption("--device", choices=("cpu", "cuda"), default=None,
                help="train the profile's grids on this device instead of its own (e.g. the smoke profile on cuda)")


def _seed_count(text: str) -> int:
    """--seeds N: a usage error, not an INTERNALERROR from the profile loader, unless N >= 1."""
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"got {text!r}; allowed: a positive number N (seeds 0..N-1)")
    return int(text)


def _profile_name(config) -> str:
    chosen = config.getoption("--profile")
    if chosen:
        return chosen
    # `-m gpu`, `-m "gpu and not slow"`...: any marker expression that selects gpu (not "not gpu")
    return "gpu" if re.search(r"(?<!not )\bgpu\b", config.getoption("-m", "")) else "cpu"


def pytest_configure(config):
    if config.getoption("--data-dir"):
        os.environ["LOSSSCAPE_DATA"] = config.getoption("--data-dir")
    config.lossscape_profile = load_profile(_profile_name(config), config.getoption("--seeds"),
                                            device=config.getoption("--device"))


def pytest_report_header(config):
    p = config.lossscape_profile
    cache = config.getoption("--cache-dir") or default_root()
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    lines = [f"lossscape: torch {torch.__version__}, device {device}, profile {p.name}, "
             f"seeds {p.seeds[0]}..{p.seeds[-1]}, cache {os.path.abspath(cache)}"]
    if _runs_claims(config):  # the plan probes the device: only worth it where claims will train
        from lossscape.plan import make_plan, summary_line
        lines.append(f"lossscape: {summary_line(make_plan(p, RunStore(cache)))}")
    return lines


def _runs_claims(config) -> bool:
    claims = config.rootpath / "claims"
    paths = [(config.invocation_params.dir / str(a).split("::")[0]).resolve() for a in config.args]
    return any(p == claims or claims in p.parents for p in paths)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Under the gpu profile every claim is a gpu claim (so `-m gpu` selects them all), and gpu
    claims are skipped with a reason where CUDA is absent. Runs before -m deselection."""
    gpu_profile = config.lossscape_profile.name == "gpu"
    # A setting that stands for one source's experiment runs only that source's claims: the others
    # are no hypothesis of this profile, so they are deselected, not skipped (Holm's m counts them not).
    foreign = [item for item in items if _outside_its_setting(item)]
    if foreign:
        config.hook.pytest_deselected(items=foreign)
        items[:] = [item for item in items if item not in foreign]
    for item in items:
        if gpu_profile and item.get_closest_marker("claim"):
            item.add_marker(pytest.mark.gpu)
        if item.get_closest_marker("gpu") and not torch.cuda.is_available():
            item.add_marker(pytest.mark.skip(reason="needs CUDA (torch.cuda.is_available() is False)"))


def _outside_its_setting(item) -> bool:
    claim = item.get_closest_marker("claim")
    setting = item.callspec.params.get("setting") if hasattr(item, "callspec") else None
    return bool(claim) and setting is not None and not setting.runs_claim(claim.args[0])


@pytest.hookimpl(trylast=True)  # after the report plugin has counted the selected claims (m)
def pytest_collection_finish(session):
    """Refuse, before anything trains, a claim whose design cannot reach p < alpha/m whatever the data.

    A claim marked ``design=(kind, grid)`` ("trend": stratified Kendall over the grid's batch sizes
    with its seeds as blocks; "paired": sign flips over its seeds) has a smallest attainable p fixed
    by the profile. Where that is not below alpha/m the test is skipped with the grid, its seeds and
    the seeds it needs, unless --report-only (CI's smoke run records such verdicts on purpose, with
    the floor named in a caveat). m counts every selected claim hypothesis, these included.
    """
    config = session.config
    if config.getoption("--report-only"):
        return
    report = config.pluginmanager.get_plugin("lossscape.report.plugin")
    profile, m = config.lossscape_profile, report.holm_m(config)
    for item in session.items:
        design = report.claim_options(item).get("design")
        if not design or design[1] not in profile.grids:
            continue
        kind, name = design
        spec = profile.grid(name)
        alpha = stats.ALPHA / m
        floor = stats.design_min_p(kind, len(spec.seeds), len(spec.batch_sizes))
        if floor >= alpha:
            need = stats.required_seeds(kind, alpha, len(spec.batch_sizes))
            item.add_marker(pytest.mark.skip(reason=(
                f"design cannot reach p < alpha/m = {alpha:.2g} (m = {m}): grid `{name}` of profile {profile.name} "
                f"has {len(spec.seeds)} seeds, so a {kind} test's smallest p is {floor:.2g}; it needs {need} seeds")))


def pytest_generate_tests(metafunc):
    """Claims are parametrized over the profile's settings (dataset + model pairs)."""
    if "setting" in metafunc.fixturenames:
        settings = metafunc.config.lossscape_profile.settings
        metafunc.parametrize("setting", settings, ids=[s.id for s in settings], scope="session")


@pytest.fixture(scope="session")
def profile(pytestconfig):
    return pytestconfig.lossscape_profile


@pytest.fixture(scope="session")
def store(pytestconfig):
    return RunStore(pytestconfig.getoption("--cache-dir"))


class Grid:
    """The runs of one grid for one setting: (batch size, lr) -> runs over the grid's seeds."""

    def __init__(self, spec, setting, configs, runs):
        self.spec, self.setting, self.configs, self.runs = spec, setting, configs, runs

    @property
    def batch_sizes(self):
        return sorted({bs for bs, _ in self.runs})

    @property
    def lrs(self):
        return sorted({lr for _, lr in self.runs})

    def at(self, batch_size, lr=None):
        lr = self.lrs[0] if lr is None else lr
        return self.runs[(batch_size, lr)]

    def by_batch(self) -> dict[int, list]:
        """batch size -> runs, for a grid with one LR per batch size."""
        return {bs: runs for (bs, _), runs in sorted(self.runs.items())}

    def config_labels(self) -> list[str]:
        return [c.to_json() for c in self.configs.values()]


@pytest.fixture(scope="session")
def grids(profile, store, pytestconfig, request):
    """grids(setting, name) -> Grid, trained once per session through the cache."""
    memo = {}
    reporter = pytestconfig.pluginmanager.get_plugin("terminalreporter")
    capture = pytestconfig.pluginmanager.get_plugin("capturemanager")

    def say(line, end="\n"):
        if reporter is None:
            return
        with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
            reporter.write(line + end, flush=True)

    # A bar-like line that rewrites itself per epoch, only when output goes straight to a terminal.
    live = reporter is not None and pytestconfig.getoption("capture") == "no" and reporter.isatty

    def progress_for(label, cap):
        if not live:
            return None
        return lambda seed, row: say(f"\r{label}: seed {seed} epoch {row['epoch']}/{cap}".ljust(70), end="")

    def get(setting, name) -> Grid:
        key = (setting.id, name)
        if key in memo:
            return memo[key]
        _require(setting)
        if not setting.runs_grid(name):
            pytest.skip(f"setting {setting.id} runs only the grids {', '.join(setting.grids)}, not {name}")
        spec = profile.grid(name).for_setting(setting)
        configs = spec.configs(setting)
        runs = {}
        for k, cfg in configs.items():
            hits = store.hits
            t0 = time.perf_counter()
            label = f"lossscape: {setting.id}/{name} bs={k[0]} lr={k[1]:g}"
            progress = progress_for(label, cfg.epochs)
            # The store locks each run's key: an xdist worker asking for a cell another worker is
            # training waits for it and loads it. A cache that cannot take the runs fails here, in one
            # line and before anything trains.
            try:
                if spec.population:
                    runs[k] = store.get_or_train_population(cfg, spec.seeds, progress=progress)
                else:  # single-model runs are timed: under xdist no other test runs while they train
                    with alone(pytestconfig):
                        runs[k] = [store.get_or_train(cfg.replace(seed=s), progress=progress) for s in spec.seeds]
            except CacheError as exc:
                pytest.fail(str(exc), pytrace=False)
            trained = len(spec.seeds) - (store.hits - hits)
            if trained:
                say(f"{chr(13) if live else ''}{label}: trained {trained} of {len(spec.seeds)} seeds "
                    f"in {time.perf_counter() - t0:.1f} s".ljust(70))
        memo[key] = Grid(spec, setting, configs, runs)
        return memo[key]

    return get


@pytest.fixture(scope="session")
def measure(store):
    """measure(run, name, params, compute) -> a JSON-able value, cached beside the run."""
    def get(run, name, params, compute):
        return store.memo(run.config, name, params, compute)
    return get


def _require(setting):
    reason = missing_data(setting)
    if reason:
        pytest.skip(reason)
