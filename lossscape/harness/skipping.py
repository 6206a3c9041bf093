"""What is skipped or refused before anything trains, each with a one-line reason:

- claims the profile leaves to another profile (its `[not_run]` table): skipped at collection,
  naming the profile that runs them; the report lists them as not run, with that reason;
- designs that cannot reach p < alpha/m whatever the data: refused at collection;
- gpu claims where CUDA is absent;
- settings whose dataset files are absent (`require`, when a grid of theirs is first asked for).
"""
from __future__ import annotations

import pytest
import torch

from lossscape import stats
from lossscape.profiles import missing_data
from lossscape.report.catalog import load_catalog
from lossscape.report.recorder import NOT_RUN_KEY

from .selection import profile_of

_REPORT = "lossscape.report.plugin"


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Under the gpu profile every claim is a gpu claim (so `-m gpu` selects them all), and gpu
    claims are skipped with a reason where CUDA is absent. A claim the profile does not run is
    skipped with the profile that does; its item says so to the report (which also leaves it out
    of Holm's m). Runs before -m deselection."""
    profile = profile_of(config)
    unknown = sorted(set(profile.not_run) - set(load_catalog().claims))
    if unknown:
        raise pytest.UsageError(f"profile {profile.name}: not_run names unknown claim ID(s) {unknown}; "
                                "the IDs are in lossscape/report/claims.toml")
    # A setting that stands for one source's experiment runs only that source's claims: the others
    # are no hypothesis of this profile, so they are deselected, not skipped (Holm's m counts them not).
    foreign = [item for item in items if _outside_its_setting(item)]
    if foreign:
        config.hook.pytest_deselected(items=foreign)
        items[:] = [item for item in items if item not in foreign]
    for item in items:
        claim = item.get_closest_marker("claim")
        if profile.name == "gpu" and claim:
            item.add_marker(pytest.mark.gpu)
        cid = str(claim.args[0]) if claim and claim.args else None
        if cid in profile.not_run:
            run_with, why = profile.not_run[cid]
            reason = (f"not run in profile {profile.name}: {why}; run it with "
                      f"`pytest claims --profile {run_with}`")
            item.user_properties.append((NOT_RUN_KEY, reason))
            item.add_marker(pytest.mark.skip(reason=reason))
        elif item.get_closest_marker("gpu") and not torch.cuda.is_available():
            item.add_marker(pytest.mark.skip(reason="needs CUDA (torch.cuda.is_available() is False)"))


def _setting_of(item):
    return item.callspec.params.get("setting") if hasattr(item, "callspec") else None


def _outside_its_setting(item) -> bool:
    claim, setting = item.get_closest_marker("claim"), _setting_of(item)
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
    report = config.pluginmanager.get_plugin(_REPORT)
    profile, m = profile_of(config), report.holm_m(config)
    for item in session.items:
        design = report.claim_options(item).get("design")
        if not design or design[1] not in profile.grids or NOT_RUN_KEY in dict(item.user_properties):
            continue
        kind, name = design
        setting = _setting_of(item)
        spec = profile.grid(name).for_setting(setting) if setting else profile.grid(name)
        alpha = stats.ALPHA / m
        floor = stats.design_min_p(kind, len(spec.seeds), len(spec.batch_sizes))
        if floor >= alpha:
            need = stats.required_seeds(kind, alpha, len(spec.batch_sizes))
            item.add_marker(pytest.mark.skip(reason=(
                f"design cannot reach p < alpha/m = {alpha:.2g} (m = {m}): grid `{name}` of profile {profile.name} "
                f"has {len(spec.seeds)} seeds, so a {kind} test's smallest p is {floor:.2g}; it needs {need} seeds")))


def require(setting) -> None:
    """Skip the calling test where the setting's dataset files are absent."""
    reason = missing_data(setting)
    if reason:
        pytest.skip(reason)
