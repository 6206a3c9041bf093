"""Which profile a run uses, kept in `config.stash`: --profile (a packaged name or a .toml file), else
gpu where `-m` selects gpu claims, else cpu.

Whether `-m` selects gpu claims is decided by evaluating the marker expression itself (pytest's own
parser): it does when some test marked gpu is selected while the same test without the gpu marker
is not, i.e. the gpu marker is what selects it. So `-m gpu`, `-m "gpu and not slow"` and
`-m "claim and gpu"` select the gpu profile; `-m "not gpu"`, `-m "not(gpu)"` and `-m "not slow"` do not.
"""
from __future__ import annotations

import itertools
import re

import pytest
from _pytest.mark.expression import Expression

from lossscape.config import ConfigError
from lossscape.profiles import Profile, load_profile
from lossscape.report.recorder import PROFILE  # the report states the run's profile too

# Marker names in a -m expression, as pytest's scanner reads identifiers; keywords are not markers.
_IDENT = re.compile(r"(?:\w|:|\+|-|\.|\[|\]|\\|/)+")
_KEYWORDS = {"and", "or", "not", "True", "False", "None"}


def profile_of(config: pytest.Config) -> Profile:
    """The profile of this run (claim modules read their grids' batch sizes from it at collection)."""
    return config.stash[PROFILE]


def selects_gpu(markexpr: str) -> bool:
    """True when the -m expression selects tests because they carry the gpu marker."""
    if not markexpr.strip():
        return False
    try:
        expr = Expression.compile(markexpr)
    except Exception:  # noqa: BLE001 -- SyntaxError (pytest 9) or ParseError (before): pytest itself
        return False  # reports the bad expression, in its own words, when it deselects
    others = sorted(set(_IDENT.findall(markexpr)) - _KEYWORDS - {"gpu"})
    for n in range(len(others) + 1):
        for marks in itertools.combinations(others, n):
            present = set(marks)
            if (expr.evaluate(lambda name, /, **kw: name == "gpu" or name in present)
                    and not expr.evaluate(lambda name, /, **kw: name in present)):
                return True
    return False


def profile_name(config: pytest.Config) -> str:
    return config.getoption("--profile") or ("gpu" if selects_gpu(config.getoption("-m", "") or "") else "cpu")


def pytest_configure(config: pytest.Config) -> None:
    name = profile_name(config)
    try:
        config.stash[PROFILE] = load_profile(name, config.getoption("--seeds"), device=config.getoption("--device"))
    except ConfigError as exc:  # e.g. a profile file of one's own with an unknown key: one line, no traceback
        raise pytest.UsageError(f"--profile {name}: {exc}") from None


def pytest_generate_tests(metafunc):
    """Claims are parametrized over the profile's settings (dataset + model pairs)."""
    if "setting" in metafunc.fixturenames:
        settings = profile_of(metafunc.config).settings
        metafunc.parametrize("setting", settings, ids=[s.id for s in settings], scope="session")


@pytest.fixture(scope="session")
def profile(pytestconfig):
    return profile_of(pytestconfig)
