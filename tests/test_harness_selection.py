"""lossscape.harness.selection: which profile a run uses (-m parsed exactly, --profile NAME|FILE),
kept in config.stash."""
import pytest

from lossscape.harness.selection import selects_gpu

pytest_plugins = ["pytester"]

INNER = ("-p", "lossscape.harness.plugin", "-p", "no:cacheprovider", "-p", "no:hypothesispytest",
         "-p", "no:benchmark")


@pytest.mark.parametrize("expr", ["gpu", "gpu and not slow", "(gpu)", "claim and gpu", "gpu or slow",
                                  "not not gpu", "slow or (gpu and not ddp)"])
def test_expressions_that_select_gpu_claims_select_the_gpu_profile(expr):
    assert selects_gpu(expr)


@pytest.mark.parametrize("expr", ["", "not gpu", "not(gpu)", "not (gpu)", "not slow", "slow", "gpu and not gpu",
                                  "not (gpu and slow)", "gpux", "xgpu or not gpu", "gpu or not gpu"])
def test_expressions_that_do_not_select_gpu_claims_select_cpu(expr):
    # "not(gpu)" once selected the gpu profile (a regex over -m); "gpu or not gpu" selects every
    # test, marked or not, so the marker selects nothing
    assert not selects_gpu(expr)


def test_a_bad_expression_is_left_to_pytest():
    assert not selects_gpu("gpu and")


PROBE = '''
from lossscape.harness.selection import profile_of
from lossscape.report.recorder import PROFILE

def test_probe(pytestconfig, profile):
    assert profile is profile_of(pytestconfig) is pytestconfig.stash[PROFILE]
    assert not hasattr(pytestconfig, "lossscape_profile")
    print("\\nPROFILE", profile.name, profile.seeds, profile.path)
'''


def _profile_line(result) -> str:
    return next(line for line in result.stdout.lines if line.startswith("PROFILE "))


@pytest.mark.parametrize("args, name", [((), "cpu"), (("-m", "not(gpu)"), "cpu"), (("-m", "not gpu"), "cpu"),
                                        (("--profile", "smoke"), "smoke"), (("--profile", "cpu-long"), "cpu-long")])
def test_the_profile_is_in_the_stash(pytester, args, name):
    pytester.makepyfile(test_probe=PROBE)
    result = pytester.runpytest(*INNER, "-s", *args)
    result.assert_outcomes(passed=1)
    assert _profile_line(result).split()[1] == name


def test_m_gpu_selects_the_gpu_profile(pytester):
    pytester.makepyfile(test_probe=PROBE.replace("def test_probe", "import pytest\n@pytest.mark.gpu\ndef test_probe"))
    result = pytester.runpytest(*INNER, "-s", "-m", "gpu and not slow", "-p", "no:skipping")  # run it without CUDA too
    result.assert_outcomes(passed=1)
    assert _profile_line(result).split()[1] == "gpu"


def test_profile_takes_a_file_of_ones_own(pytester, tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text('extends = "smoke"\nseeds = 3\n')
    pytester.makepyfile(test_probe=PROBE)
    result = pytester.runpytest(*INNER, "-s", "--profile", str(path))
    result.assert_outcomes(passed=1)
    assert _profile_line(result) == f"PROFILE mine (0, 1, 2) {path}"


@pytest.mark.parametrize("value", ["nope", "missing.toml"])
def test_a_bad_profile_is_a_one_line_usage_error(pytester, value):
    result = pytester.runpytest(*INNER, "--profile", value)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*error: argument --profile: got '{value}'; allowed: smoke, cpu, cpu-long, gpu "
                                 "or a profile .toml file that exists"])
    assert "Traceback" not in result.stderr.str() + result.stdout.str()


def test_a_profile_file_with_a_bad_key_is_a_one_line_usage_error(pytester, tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text('extends = "smoke"\n[grids.budget]\nepochz = 3\n')
    result = pytester.runpytest(*INNER, "--profile", str(path))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: --profile {path}: mine.grids.budget: unknown key 'epochz'; allowed: *"])
    assert "Traceback" not in result.stderr.str() + result.stdout.str()
