"""What a run says while it prepares and trains: the header (profile, seeds, cache, and the plan's
cost where claims will train) and one line per grid cell that trained, rewritten per epoch when the
output goes straight to a terminal (`-s`)."""
from __future__ import annotations

import contextlib
import os

import pytest
import torch

from lossscape.cache import RunStore, default_root

from .selection import profile_of


def pytest_report_header(config):
    p = profile_of(config)
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


class Progress:
    """Lines on the terminal from inside a test, past pytest's output capture."""

    def __init__(self, config: pytest.Config):
        self._reporter = config.pluginmanager.get_plugin("terminalreporter")
        self._capture = config.pluginmanager.get_plugin("capturemanager")
        # A bar-like line that rewrites itself per epoch, only when output goes straight to a terminal.
        self.live = self._reporter is not None and config.getoption("capture") == "no" and self._reporter.isatty

    def say(self, line: str, end: str = "\n") -> None:
        if self._reporter is None:
            return
        with self._capture.global_and_fixture_disabled() if self._capture else contextlib.nullcontext():
            self._reporter.write(line + end, flush=True)

    def epochs(self, label: str, cap: int):
        """A training progress callback (seed, history row) for one cell, or None when not live."""
        if not self.live:
            return None
        return lambda seed, row: self.say(f"\r{label}: seed {seed} epoch {row['epoch']}/{cap}".ljust(70), end="")

    def trained(self, label: str, trained: int, seeds: int, seconds: float) -> None:
        self.say(f"{chr(13) if self.live else ''}{label}: trained {trained} of {seeds} seeds in {seconds:.1f} s".ljust(70))
