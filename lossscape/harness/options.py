"""The claims suite's command-line options. A bad value is a usage error in one line (pytest:
"argument --profile: got 'x'; allowed: ..."), not an INTERNALERROR."""
from __future__ import annotations

import argparse
import os

from lossscape.config import ConfigError
from lossscape.profiles import PROFILES, profile_file


def pytest_addoption(parser):
    g = parser.getgroup("lossscape")
    g.addoption("--profile", type=_profile, default=None, metavar="NAME|FILE",
                help=f"experiment profile: {', '.join(PROFILES)} (lossscape/profiles/), or a profile .toml file "
                     "of your own (default: cpu; gpu when -m selects gpu claims)")
    g.addoption("--seeds", type=_seed_count, default=None, help="number of seeds (0..N-1), overriding the profile")
    g.addoption("--cache-dir", default=None, help="run cache (default: LOSSSCAPE_CACHE or ./cache)")
    g.addoption("--data-dir", default=None, help="folder with the mnist / cats_vs_dogs files (or LOSSSCAPE_DATA)")
    g.addoption("--device", choices=("cpu", "cuda"), default=None,
                help="train the profile's grids on this device instead of its own (e.g. the smoke profile on cuda)")


def pytest_configure(config):
    if config.getoption("--data-dir"):
        os.environ["LOSSSCAPE_DATA"] = config.getoption("--data-dir")


def _profile(text: str) -> str:
    """--profile NAME|FILE: a packaged profile's name or an existing .toml file."""
    try:
        profile_file(text)
    except ConfigError:
        raise argparse.ArgumentTypeError(f"got {text!r}; allowed: {', '.join(PROFILES)} or a profile .toml file "
                                         "that exists") from None
    return text


def _seed_count(text: str) -> int:
    """--seeds N: a usage error, not an INTERNALERROR from the profile loader, unless N >= 1."""
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"got {text!r}; allowed: a positive number N (seeds 0..N-1)")
    return int(text)
