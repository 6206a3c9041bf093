"""Timing under pytest-xdist: what a claim times runs while no other test of the session runs."""

import os
import tempfile
from pathlib import Path

import pytest

import lossscape

pytest_plugins = ["pytester"]

INNER = ("-p", "no:cacheprovider", "-p", "no:hypothesispytest", "-p", "no:benchmark")

# Each test writes "start end" (monotonic clock, shared by the processes of one machine) for each
# span it runs; a span lasts long enough that two workers running at once overlap.
SUITE = '''
import os, time, pathlib, pytest
from lossscape.report.machine import alone

LOG = pathlib.Path(os.environ["LOSSSCAPE_SPAN_LOG"])

def _span(test, part, seconds=0.4):
    start = time.monotonic()
    time.sleep(seconds)
    (LOG / f"{test}.{part}").write_text(f"{start} {time.monotonic()}")

@pytest.mark.timing
def test_timed():
    _span("timed", "all")

def test_measures_a_part_alone(pytestconfig):
    _span("part", "before", 0.1)
    with alone(pytestconfig):
        _span("part", "alone")
    _span("part", "after", 0.1)

@pytest.mark.parametrize("i", range(4))
def test_untimed(i):
    _span(f"untimed{i}", "all")
'''


def _spans(log: Path) -> list[tuple[str, str, float, float]]:
    out = []
    for f in log.iterdir():
        test, part = f.name.split(".")
        start, end = map(float, f.read_text().split())
        out.append((test, part, start, end))
    return out


@pytest.mark.slow  # two workers each import torch (through lossscape/__init__)
def test_timing_tests_and_alone_spans_run_alone_under_xdist_D13b(pytester, monkeypatch, tmp_path):
    pytest.importorskip("xdist")
    root = str(Path(lossscape.__file__).resolve().parents[1])  # workers start in the pytester dir
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]))
    log, tmp = tmp_path / "spans", tmp_path / "tmp"
    log.mkdir()
    tmp.mkdir()
    monkeypatch.setenv("LOSSSCAPE_SPAN_LOG", str(log))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))  # where the controller makes the session's lock file
    pytester.makeconftest('pytest_plugins = ["lossscape.report.plugin"]\n')
    pytester.makepyfile(test_spans=SUITE)
    pytester.runpytest(*INNER, "--strict-markers", "-n", "2").assert_outcomes(passed=6)
    spans = _spans(log)
    assert len(spans) == 8
    alone = [s for s in spans if (s[0], s[1]) in {("timed", "all"), ("part", "alone")}]
    for test, part, start, end in alone:
        overlapping = [s for s in spans if s[0] != test and s[2] < end and start < s[3]]
        assert not overlapping, f"{test}.{part} ran alongside {overlapping}"
    assert not list(tmp.iterdir())  # the lock file goes with the session


def test_alone_is_a_no_op_outside_xdist(pytester):
    pytester.makeconftest('pytest_plugins = ["lossscape.report.plugin"]\n')
    pytester.makepyfile(test_plain='''
import pytest
from lossscape.report.machine import alone

@pytest.mark.timing
def test_timed(pytestconfig):
    with alone(pytestconfig):
        with alone(pytestconfig):
            pass
''')
    pytester.runpytest(*INNER, "--strict-markers").assert_outcomes(passed=1)
