"""Every run a profile asks for is a valid RunConfig: each setting x grid, at each of the grid's
seeds, and the runs claims add (lossscape.claim_runs), built here in a second rather than minutes
into a claims session."""
import dataclasses

import pytest

from lossscape import ConfigError
from lossscape.claim_runs import CONTINUATION_GRIDS, PER_MODEL_GRIDS, claim_cells
from lossscape.config import DATASETS, is_spec
from lossscape.profiles import PROFILES, load_profile


def build_every_config(profile) -> list:
    """(owner, grid name, config) for every run of `profile`, one per seed; raises on a bad field.
    Continuations (claim_runs.CONTINUATION_GRIDS) are built as their own configs here: the claims
    add their parent (init_from) only once the parent has trained."""
    return ([(owner, spec.name, cfg.replace(seed=seed))
             for owner, _, _, spec, cfg in claim_cells(profile) for seed in spec.seeds]
            + [(setting.id, spec.name, cfg.replace(seed=seed)) for setting, spec, cfg in profile.cells()
               if spec.name in CONTINUATION_GRIDS for seed in spec.seeds])


@pytest.mark.parametrize("name", PROFILES)
def test_every_setting_grid_and_seed_of_a_profile_is_a_run_config(name):
    profile = load_profile(name)
    built = build_every_config(profile)
    # each setting meets each grid it runs (a source's own setting names its grids; the per-model
    # grids meet their models instead)
    pairs = {(owner, grid) for owner, grid, _ in built}
    for setting in profile.settings:
        runs = {g for g in profile.grids if g not in PER_MODEL_GRIDS and setting.runs_grid(g)}
        assert runs and runs <= {g for o, g in pairs if o == setting.id}
    for grid in PER_MODEL_GRIDS:
        assert grid not in profile.grids or any(g == grid for _, g, _ in built)
    assert len({cfg for *_, cfg in built}) > len(profile.grids)


@pytest.mark.parametrize("name", PROFILES)
def test_the_settings_named_by_a_profile_exist(name):
    """What profile params and `requires` refer to by name is there (a typo would skip a claim)."""
    profile = load_profile(name)
    ids = {s.id for s in profile.settings}
    assert len(ids) == len(profile.settings)
    assert set(profile.params.get("x", {}).get("target_val_loss", {})) <= ids
    for setting in profile.settings:
        assert setting.requires is None or setting.requires in DATASETS or is_spec(setting.requires)


@pytest.mark.parametrize("where, change, words", [
    ("grid", {"schedule": "cosin"}, "schedule: got 'cosin'; allowed: constant"),
    ("grid", {"stop": "early_stop"}, "patience: got None; allowed: a positive integer when stop='early_stop'"),
    ("setting", {"model": "mlpp"}, "model: got 'mlpp'; allowed: mlp"),
    ("setting", {"n_samples": 1005}, "n_samples: got 1005; allowed: a multiple of 10 for mnist1d"),
], ids=["grid schedule", "grid stop rule", "setting model", "setting n_samples"])
def test_a_typo_in_a_profile_fails_this_check(where, change, words):
    profile = load_profile("smoke")
    if where == "grid":
        name, spec = next((n, g) for n, g in profile.grids.items() if g.fields.get("stop", "epochs") == "epochs")
        profile = dataclasses.replace(profile, grids={
            **profile.grids, name: dataclasses.replace(spec, fields={**spec.fields, **change})})
    else:
        first = profile.settings[0]
        profile = dataclasses.replace(profile, settings=(
            dataclasses.replace(first, fields={**first.fields, **change}), *profile.settings[1:]))
    with pytest.raises(ConfigError, match=f"^{words}"):
        build_every_config(profile)
