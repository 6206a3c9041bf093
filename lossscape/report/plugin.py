"""pytest plugin: claim tests record verdicts through the `claim` fixture; the run writes the report.

Load it from a conftest with ``pytest_plugins = ["lossscape.report.plugin"]``. A claim test is
marked with its CLAIMS.md ID and uses the fixture (see `recorder.ClaimRecorder`)::

    @pytest.mark.claim("GEO-6")
    def test_sharpness_rises(claim, grid):
        res = stats.trend_test(grid.batch_sizes, grid.sharpness, "increasing")
        claim.check(res, label="Keskar sharpness")

Multiple testing. CLAIMS.md asks for Holm over all claims of a run, which is only known when the
run ends, but each test has to pass or fail when it finishes. So the test-time verdict uses Holm's
strictest step, alpha/m, with m = the number of selected claim tests (counted after -k/-m
deselection, on every xdist worker, since each collects the same items; a claim the run's profile
leaves to another profile, marked with NOT_RUN_KEY at collection, is not one of them). A result supported at
alpha/m is supported under Holm whatever the other p-values are, so a passing claim test never
overstates. At session end the controller Holm-adjusts the p-values that were actually recorded
(m can only shrink: skipped, crashed and direct-check tests have none) and the report's verdict
is the Holm verdict; where Holm supports a claim whose test failed at alpha/m, that row says so.
With --report-only the verdicts are the same; only the claim tests stop failing on them.

Data flow: the fixture puts the result (JSON) on ``item.user_properties``, which pytest copies
onto every test report and xdist serializes to the controller; the controller collects them in
``pytest_runtest_logreport`` (`controller.ReportWriter`, registered on the controller only) and
alone writes claims.json / claims.md / claims.html (atomically; nothing else in the report dir is
touched). Figures are the exception: tests save them where ``claim.figure_path`` says, on
whichever worker they run. A run without claim tests writes nothing.

Timing. A test marked `timing` reads wall time: under pytest-xdist it runs while no other test of
the session runs, and `machine.alone(config)` gives any test that span for a measurement (see
`lossscape.report.machine`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from lossscape.report import machine
from lossscape.report.catalog import load_catalog
from lossscape.report.controller import ReportWriter
from lossscape.report.recorder import ID_KEY, NOT_RUN_KEY, ClaimRecorder


@dataclass
class _RunState:
    report_dir: Path
    report_only: bool
    m: int = 1  # selected claim tests; counted wherever items are collected (controller or worker)


_STATE = pytest.StashKey[_RunState]()
_CALL_ENDED_EARLY = pytest.StashKey[bool]()
_WRITER = "lossscape-report-writer"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("lossscape report")
    group.addoption("--report-dir", default="reports",
                    help="folder for claims.json/md/html and figures, relative to the rootdir (default: reports)")
    group.addoption("--report-only", action="store_true",
                    help="record every claim verdict without failing the claim test (a test that raises still fails)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "claim(id, design=(kind, grid), check=False): the CLAIMS.md ID a claim "
                                       "test checks; its statistical design; check=True for a `verified` check")
    config.addinivalue_line("markers", machine.MARKER)
    machine.configure(config)
    state = _RunState((config.rootpath / config.getoption("--report-dir")).resolve(), config.getoption("--report-only"))
    config.stash[_STATE] = state
    if not hasattr(config, "workerinput"):
        config.pluginmanager.register(ReportWriter(config, state.report_dir), _WRITER)


def pytest_report_header(config: pytest.Config) -> str:
    state = config.stash[_STATE]
    mode = " (--report-only: verdicts are recorded, claim tests do not fail on them)" if state.report_only else ""
    return f"lossscape report: {state.report_dir}{mode}"


def pytest_unconfigure(config: pytest.Config) -> None:
    machine.unconfigure(config)
    writer = config.pluginmanager.get_plugin(_WRITER)
    if writer is not None:
        config.pluginmanager.unregister(writer)


def _claim_id(item: pytest.Item) -> str | None:
    marker = item.get_closest_marker("claim")
    return str(marker.args[0]) if marker and marker.args else None


def pytest_itemcollected(item: pytest.Item) -> None:
    """`-k "BS-3"` selects a claim by its ID: the ID joins the item's keywords before -k runs."""
    cid = _claim_id(item)
    if cid:
        item.extra_keyword_matches.add(cid)


def pytest_collection_finish(session: pytest.Session) -> None:
    catalog = load_catalog().claims
    claimed = [(item, cid) for item in session.items if (cid := _claim_id(item))]
    unknown = sorted({cid for _, cid in claimed if cid not in catalog})
    if unknown:
        raise pytest.UsageError(f"claim marker with unknown ID(s) {unknown}; "
                                "the IDs are in lossscape/report/claims.toml")
    for item, cid in claimed:
        item.user_properties.append((ID_KEY, cid))  # so even a skipped or crashed claim test reports its ID
    # `verified` checks (identities, our own schedules) are outside Holm: they test no hypothesis; nor
    # do claims the run's profile leaves to another (lossscape.harness marks them at collection)
    tested = [item for item, _ in claimed if not _is_check(item) and NOT_RUN_KEY not in dict(item.user_properties)]
    session.config.stash[_STATE].m = max(1, len(tested))


def holm_m(config: pytest.Config) -> int:
    """The number of claim hypotheses selected in this run: the m of the test-time alpha/m."""
    return config.stash[_STATE].m


def claim_options(item: pytest.Item) -> dict:
    """The claim marker's keyword options (design, check), a parametrization's own claim marker
    overriding the function's: pytest lists a function's marks before its callspec's."""
    options = {}
    for marker in item.own_markers:
        if marker.name == "claim":
            options.update(marker.kwargs)
    return options


def _is_check(item: pytest.Item) -> bool:
    return bool(claim_options(item).get("check"))


@pytest.fixture
def claim(request: pytest.FixtureRequest):
    """Recorder for the claim this test is marked with: ``claim.figure_path(name)``, ``claim.check(evidence)``."""
    state = request.config.stash[_STATE]
    cid = _claim_id(request.node)
    if cid is None:
        pytest.fail("the claim fixture needs the test to be marked @pytest.mark.claim('ID')", pytrace=False)
    recorder = ClaimRecorder(request.node, load_catalog().claims[cid], state.report_dir, state.m, state.report_only,
                             is_check=_is_check(request.node))
    yield recorder
    if recorder.result is None and not request.node.stash.get(_CALL_ENDED_EARLY, True):
        pytest.fail(f"{cid}: the test ended without calling claim.check()", pytrace=False)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call":
        # read by the fixture's teardown: a body that failed or skipped itself owes no check()
        item.stash[_CALL_ENDED_EARLY] = report.failed or report.skipped
