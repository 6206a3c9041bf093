"""Experiment profiles (lossscape/profiles/*.toml): what the claims' grids are allowed to be."""

import pytest

from lossscape.config import ConfigError
from lossscape.profiles import PROFILES, load_profile

# The single-model grids (one process per run): `timing` (LR-7's config), `dp_timing` (DP-2's
# k-device runs, gpu only), `freezeout` (BatchNorm models, one at a time). Claims time steps in
# the session (claims/_common.session_epoch_times), never from these runs' cached epoch times.
TIMED_GRIDS = ("timing", "dp_timing", "freezeout")


def _runs(profile, population: bool) -> dict[str, str]:
    """Config (seed aside) -> "profile.grid" for every run of the profile's grids of one kind."""
    return {cfg.replace(seed=0).to_json(): f"{profile.name}.{g.name}"
            for g in profile.grids.values() if g.population == population
            for setting in profile.settings for cfg in g.configs(setting).values()}


def test_timing_grids_are_single_model_runs_no_population_grid_shares_D12():
    profiles = [load_profile(name) for name in PROFILES]
    for p in profiles:
        assert "timing" in p.grids  # dp_timing only where k devices time DP-2 (the gpu profile)
        assert not any(p.grids[g].population for g in TIMED_GRIDS if g in p.grids), p.name
    # one cache serves every profile, so a population run of any profile could be served
    pooled = {k: v for p in profiles for k, v in _runs(p, True).items()}
    single = {k: v for p in profiles for k, v in _runs(p, False).items()}
    assert not {single[k]: pooled[k] for k in single.keys() & pooled.keys()}
    smoke = load_profile("smoke")  # the reported case: equal timing and budget configs
    budget = smoke.grid("budget").configs(smoke.settings[0])
    assert all(cfg != budget.get(k) for k, cfg in smoke.grid("timing").configs(smoke.settings[0]).items())


TWO_GRIDS = """
seeds = 2
batch_sizes = [16, 64]

[[settings]]
id = "tiny"
dataset = "mnist1d"
n_samples = 1000

[grids.budget]
stop = "epochs"
epochs = 3

[grids.timing]
population = false
stop = "epochs"
epochs = {timing_epochs}
"""


def test_a_single_model_grid_equal_to_a_population_grid_is_refused_D12(tmp_path):
    path = tmp_path / "smoke.toml"
    path.write_text(TWO_GRIDS.format(timing_epochs=3))
    with pytest.raises(ConfigError, match=r"^smoke\.grids\.timing: .*batch size 16.*population grid smoke\.grids\.budget"):
        load_profile("smoke", directory=tmp_path)
    path.write_text(TWO_GRIDS.format(timing_epochs=4))  # one field apart: distinct runs in the cache
    assert load_profile("smoke", directory=tmp_path).grid("timing").fields["epochs"] == 4


SOURCE_SETTING = """
seeds = 2
batch_sizes = [16, 64]

[[settings]]
id = "tiny"
dataset = "mnist1d"
n_samples = 1000

[[settings]]
id = "source"
dataset = "mnist1d"
n_samples = 1000
lr = 0.01
claims = ["BS-5"]

[settings.grids.budget]
batch_sizes = [64, 256]
seeds = 5
epochs = {epochs}

[grids.budget]
stop = "epochs"
epochs = 3

[grids.early]
stop = "early_stop"
patience = 2
epochs = 9
"""


def test_a_source_setting_runs_its_own_grid_as_the_source_ran_it(tmp_path):
    path = tmp_path / "smoke.toml"
    path.write_text(SOURCE_SETTING.format(epochs=30))
    p = load_profile("smoke", directory=tmp_path)
    tiny, source = p.settings
    assert (tiny.runs_claim("GEO-1"), source.runs_claim("GEO-1"), source.runs_claim("BS-5")) == (True, False, True)
    assert (source.runs_grid("budget"), source.runs_grid("early"), tiny.runs_grid("early")) == (True, False, True)
    spec = p.grid("budget").for_setting(source)
    assert (spec.batch_sizes, spec.seeds) == ((64, 256), tuple(range(5)))
    assert {(bs, c.epochs, c.lr) for (bs, _), c in spec.configs(source).items()} == {(64, 30, 0.01), (256, 30, 0.01)}
    assert p.grid("budget").for_setting(tiny) is p.grid("budget")  # the other settings keep the grid as it is
    # the plan's cells: the source setting's budget runs, as it runs them, and no `early` run
    cells = [(s.id, g.name, c.batch_size, c.epochs) for s, g, c in p.cells()]
    assert [c for c in cells if c[0] == "source"] == [("source", "budget", 64, 30), ("source", "budget", 256, 30)]
    assert ("tiny", "early", 16, 9) in cells


def test_a_source_setting_names_only_grids_of_its_profile(tmp_path):
    path = tmp_path / "smoke.toml"
    path.write_text(SOURCE_SETTING.format(epochs=30).replace("[settings.grids.budget]", "[settings.grids.bugdet]"))
    with pytest.raises(ConfigError, match=r"^settings\.source\.grids: 'bugdet' is not a grid of profile 'smoke'; allowed: budget, early$"):
        load_profile("smoke", directory=tmp_path)
    path.write_text(SOURCE_SETTING.format(epochs=30).replace("seeds = 5", "population = false"))
    with pytest.raises(ConfigError, match=r"^settings\.source\.grids\.budget: unknown key 'population'"):
        load_profile("smoke", directory=tmp_path)


def test_cpu_profile_runs_source_003_as_003_ran_it():
    """Source 003: MLP 2x1024 on MNIST, SGD lr 0.01 without momentum, 30 epochs, bs 64/256/1024; only BS-5."""
    cpu = load_profile("cpu")
    (setting,) = [s for s in cpu.settings if s.id == "mnist-mlp"]
    assert (setting.requires, setting.claims, list(setting.grids)) == ("mnist", ("BS-5",), ["budget"])
    configs = cpu.grid("budget").for_setting(setting).configs(setting)
    assert sorted(bs for bs, _ in configs) == [64, 256, 1024]
    assert {(c.dataset, c.model, c.width, c.lr, c.momentum, c.epochs, c.stop) for c in configs.values()} == \
        {("mnist", "mlp", 1024, 0.01, 0.0, 30, "epochs")}
