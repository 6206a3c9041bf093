"""Profile files that build on another (`extends`) and leave claims to another (`[not_run]`): the
loader's merge and checks, and the harness skipping those claims with the report listing them."""
import json
import sys

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from lossscape.config import ConfigError
from lossscape.profiles import PROFILE_DIR, PROFILES, load_profile

pytest_plugins = ["pytester"]

BASE = """
description = "base"
seeds = 2
batch_sizes = [16, 64]

[[settings]]
id = "tiny"
dataset = "mnist1d"
n_samples = 1000
lr = 0.1

[[settings]]
id = "tiny-wide"
dataset = "mnist1d"
n_samples = 1000
width = 64

[grids.budget]
stop = "epochs"
epochs = 3

[grids.lr_grid]
seeds = 3
lrs = [0.05, 0.1]
stop = "early_stop"
patience = 2
epochs = 10

[params]
noise_batches = 5

[params.x.target_val_loss]
"tiny" = 1.5

[not_run]
"LR-5" = "long.toml: its grid needs 11 seeds"
"""


def _files(tmp_path, **texts):
    for name, text in {"base": BASE, **texts}.items():
        (tmp_path / f"{name}.toml").write_text(text)


def test_tables_merge_key_by_key_and_other_values_replace(tmp_path):
    _files(tmp_path, long='extends = "base.toml"\ndescription = "longer"\n[grids.lr_grid]\nseeds = 11\n'
                          '[params.x.target_val_loss]\n"tiny-wide" = 1.6\n[[settings]]\nid = "only"\ndataset = "mnist1d"\n'
                          '[not_run]\n"LR-6" = "base: why"\n')
    base, long = load_profile(tmp_path / "base.toml", directory=tmp_path), load_profile(tmp_path / "long.toml", directory=tmp_path)
    assert long.name == "long" and long.description == "longer" and long.seeds == base.seeds
    assert long.grid("lr_grid").seeds == tuple(range(11))                      # the key it overrides
    assert long.grid("lr_grid").lrs == (0.05, 0.1) and long.grid("lr_grid").fields == base.grid("lr_grid").fields
    assert long.grid("budget") == base.grid("budget")
    assert long.params == {"noise_batches": 5, "x": {"target_val_loss": {"tiny": 1.5, "tiny-wide": 1.6}}}
    assert [s.id for s in long.settings] == ["only"]                           # an array of tables replaces
    assert base.not_run == {"LR-5": ("long.toml", "its grid needs 11 seeds")}
    assert long.not_run == {"LR-6": ("base", "why")}                           # and so does a [not_run] table


def test_an_empty_not_run_table_runs_every_claim(tmp_path):
    _files(tmp_path, long='extends = "base.toml"\n[not_run]\n')
    assert load_profile(tmp_path / "long.toml", directory=tmp_path).not_run == {}


def test_a_not_run_table_inherited_that_names_the_profile_itself_is_refused(tmp_path):
    _files(tmp_path, long='extends = "base.toml"\n')
    with pytest.raises(ConfigError, match=r"^long\.not_run\.LR-5: names long itself .*a \[not_run\] table of its own"):
        load_profile(tmp_path / "long.toml", directory=tmp_path)


def test_extends_takes_a_packaged_name_from_a_file_anywhere(tmp_path):
    (tmp_path / "mine.toml").write_text('extends = "cpu"\n[grids.lr_grid]\nseeds = 11\n')
    mine, cpu = load_profile(tmp_path / "mine.toml"), load_profile("cpu")
    assert mine.grid("lr_grid").seeds == tuple(range(11)) and mine.grid("budget") == cpu.grid("budget")
    assert mine.settings == cpu.settings and mine.path == tmp_path / "mine.toml"


def test_a_loop_or_a_missing_base_is_refused(tmp_path):
    _files(tmp_path, a='extends = "b.toml"\n', b='extends = "a.toml"\n')
    with pytest.raises(ConfigError, match=r"^b\.extends: 'a\.toml' makes a loop \(a -> b -> a\)"):
        load_profile(tmp_path / "a.toml", directory=tmp_path)
    (tmp_path / "c.toml").write_text('extends = "nope"\n')
    with pytest.raises(ConfigError, match=r"^profile: got 'nope'; allowed: smoke, cpu, cpu-long, gpu"):
        load_profile(tmp_path / "c.toml")


@pytest.mark.parametrize("value", ["no profile named", "elsewhere: why", "long.toml:", "smoke: why"])
def test_a_not_run_entry_names_another_profile_and_why(tmp_path, value):
    _files(tmp_path, base=BASE.replace('"long.toml: its grid needs 11 seeds"', json.dumps(value)))
    with pytest.raises(ConfigError, match=r'^base\.not_run\.LR-5: got .*; allowed: "PROFILE: why"'):
        load_profile(tmp_path / "base.toml", directory=tmp_path)


def test_cpu_long_is_cpu_with_every_claim_run():
    cpu, long = load_profile("cpu"), load_profile("cpu-long")
    assert long.description.startswith("the cpu profile's claims that do not fit its 20-minute budget")
    assert long.not_run == {} and long.settings == cpu.settings and long.seeds == cpu.seeds
    # cpu's grids, with the keys cpu-long.toml overrides, plus the grids only the long claims need
    own = tomllib.loads(long.path.read_text()).get("grids", {})
    assert set(long.grids) == set(cpu.grids) | set(own)
    for name, spec in cpu.grids.items():
        if name not in own:
            assert long.grids[name] == spec
    for run_with, _ in cpu.not_run.values():
        assert run_with == "cpu-long"


def test_every_packaged_profile_file_is_listed():
    assert sorted(PROFILES) == sorted(p.stem for p in PROFILE_DIR.glob("*.toml"))


CLAIMS = '''
import pytest

@pytest.mark.claim("LR-5")
def test_lr5(claim):
    raise AssertionError("a claim the profile does not run must not run")

@pytest.mark.claim("LR-6", design=("trend", "budget"))
def test_lr6(claim):
    from lossscape.stats import Verdict
    claim.check(Verdict.INCONCLUSIVE, measured_text="stand-in")
'''


def test_not_run_claims_are_skipped_naming_the_profile_and_reported_as_not_run(pytester, tmp_path):
    _files(tmp_path, long='extends = "base.toml"\n[not_run]\n')
    pytester.makepyfile(test_claims=CLAIMS)
    args = ("-p", "lossscape.harness.plugin", "-p", "no:cacheprovider", "--report-only", "-rs",
            "--report-dir", str(pytester.path / "reports"))
    result = pytester.runpytest(*args, "--profile", str(tmp_path / "base.toml"))
    result.assert_outcomes(passed=1, skipped=1)
    reason = "not run in profile base: its grid needs 11 seeds; run it with `pytest claims --profile long.toml`"
    result.stdout.fnmatch_lines([f"SKIPPED * {reason}"])
    doc = json.loads((pytester.path / "reports" / "claims.json").read_text())
    rows = {r["id"]: r for r in doc["results"]}
    assert rows["LR-5"]["verdict"] == "not run" and rows["LR-5"]["measured_text"] == reason
    assert rows["LR-6"]["test_alpha"] == pytest.approx(0.05)  # m = 1: a claim not run is outside Holm's m
    assert "not run" in (pytester.path / "reports" / "claims.md").read_text()
    # the profile that runs it
    result = pytester.runpytest(*args, "--profile", str(tmp_path / "long.toml"))
    result.assert_outcomes(passed=1, failed=1)


def test_not_run_with_an_unknown_claim_id_is_a_usage_error(pytester, tmp_path):
    _files(tmp_path, base=BASE.replace('"LR-5"', '"LR-55"'))
    pytester.makepyfile(test_claims=CLAIMS)
    result = pytester.runpytest("-p", "lossscape.harness.plugin", "-p", "no:cacheprovider",
                                "--profile", str(tmp_path / "base.toml"))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: profile base: not_run names unknown claim ID(s) [[]'LR-55'[]]; the IDs are in lossscape/report/claims.toml"])
