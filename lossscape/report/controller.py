"""The controller's side of the plugin: gather claim results from test reports, write the report.

Registered only on the process that owns the terminal (never on an xdist worker), so the report
files have one writer. Results arrive as JSON on ``report.user_properties``, which is how they
survive xdist's serialization of reports.

A session that ends before its selected tests have run (Ctrl-C, -x, --maxfail) writes its partial
report as claims.interrupted.{json,md,html}, which say so at the top: the last complete report
stays as it was. A test cut off mid-run has no call report; its row reads "interrupted".
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import textwrap
from dataclasses import replace
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import pytest

from lossscape.report.catalog import load_catalog
from lossscape.report.recorder import ID_KEY, NOT_RUN_KEY, PROFILE, RESULT_KEY
from lossscape.report.render import report_files, write_reports
from lossscape.report.result import ERROR, INTERRUPTED, NOT_RUN, SKIPPED, ClaimResult, build_doc, fmt
from lossscape.report.schema import ReportError

_COLOURS = {"supported": "green", "refuted": "red", "inconclusive": "yellow", "verified": "green", "failed": "red"}
TERMINAL_WIDTH = 100  # the summary reads in a 100-column terminal or CI log


class ReportWriter:
    def __init__(self, config: pytest.Config, report_dir: Path):
        self.config = config
        self.report_dir = report_dir
        self.rows: dict[str, dict] = {}   # nodeid -> what its reports said
        self.doc: dict | None = None
        self.write_error = ""

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        props = dict(report.user_properties)
        if ID_KEY not in props:
            return
        row = self.rows.setdefault(report.nodeid, {"id": props[ID_KEY], "duration": 0.0})
        row["duration"] += report.duration
        if RESULT_KEY in props:
            row["result"] = props[RESULT_KEY]
        if NOT_RUN_KEY in props:
            row["not_run"] = props[NOT_RUN_KEY]
        if report.when == "call" or not report.passed:
            row.setdefault("outcome", report.outcome)  # the first phase that decided the test
            if report.failed or report.skipped:
                row.setdefault("reason", _short_reason(report))

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus) -> None:
        # no claim test (e.g. the unit tests), or none called (--setup-only, --setup-plan): leave the report alone
        if not self.rows or self.config.option.setuponly:
            return
        results = [_row_result(nodeid, row) for nodeid, row in self.rows.items()]
        self.doc = build_doc(results, load_catalog().to_dict(), environment(self.config, results))
        interrupted = _interruption(session, exitstatus)
        if interrupted:
            self.doc["interrupted"] = interrupted  # write_reports then writes claims.interrupted.*
        try:
            write_reports(self.doc, self.report_dir)
        except ReportError as exc:  # e.g. a read-only report folder: say so, the test outcomes stand
            self.write_error = str(exc)

    def pytest_terminal_summary(self, terminalreporter) -> None:
        if self.doc is None:
            return
        tr = terminalreporter
        tr.write_sep("=", f"lossscape claims (Holm over {self.doc['holm_m']} p-values)")
        for d in self.doc["results"]:
            r = ClaimResult.from_dict(d)
            colour = {_COLOURS.get(r.verdict, "bold"): True}
            for line in summary_lines(r):
                tr.write_line(line, **colour)
        if self.write_error:
            tr.write_line(f"report not written: {self.write_error}", red=True)
            return
        if self.doc.get("interrupted"):
            tr.write_line(f"interrupted ({self.doc['interrupted']}): partial report, written apart from the "
                          "complete one", yellow=True)
        tr.write_line(f"report: {self.report_dir / report_files(self.doc)[2]}")


def summary_lines(r: ClaimResult, width: int = TERMINAL_WIDTH) -> list[str]:
    """A result as the terminal summary prints it: label and verdict, then what was measured and
    any note, wrapped under an indent so no line is wider than `width`."""
    p = f"; p_holm={fmt(r.p_adjusted, 2)}" if r.p_adjusted is not None else ""
    indent = " " * 4
    lines = textwrap.wrap(f"{r.label()}  {r.verdict_text()}", width, subsequent_indent=indent)
    for text in (f"{r.measured_text}{p}", f"note: {r.verdict_note}" if r.verdict_note else ""):
        lines += textwrap.wrap(text, width, initial_indent=indent, subsequent_indent=indent + "  ",
                               break_long_words=True)
    return lines


def _interruption(session: pytest.Session, exitstatus) -> str:
    """Why the session ended before running every selected test; "" when it ran them all."""
    if exitstatus == pytest.ExitCode.INTERRUPTED:
        return "Ctrl-C or pytest.exit()"
    stopped = session.shouldstop or session.shouldfail  # -x, --maxfail, an xdist stop: a reason or True
    return (stopped if isinstance(stopped, str) else "the session stopped early") if stopped else ""


def _short_reason(report: pytest.TestReport) -> str:
    """The skip reason or the exception line ("RuntimeError: ..."), as a one-line row text."""
    if report.skipped and isinstance(report.longrepr, tuple):
        return str(report.longrepr[2]).removeprefix("Skipped: ")
    crash = getattr(report.longrepr, "reprcrash", None)
    if crash is not None:
        return crash.message.splitlines()[0]
    lines = report.longreprtext.strip().splitlines()
    return lines[-1] if lines else ""


def _row_result(nodeid: str, row: dict) -> ClaimResult:
    # no call report and no failed phase: the test was cut off (Ctrl-C) while it ran, so it neither
    # passed nor raised
    outcome = row.get("outcome", INTERRUPTED)
    if "result" in row:
        return replace(ClaimResult.from_dict(json.loads(row["result"])), outcome=outcome, wall_time_s=row["duration"])
    params = nodeid[nodeid.index("[") + 1:-1] if nodeid.endswith("]") else ""
    if "not_run" in row:  # the profile leaves this claim to another (its [not_run] table), which the reason names
        return ClaimResult(id=row["id"], verdict=NOT_RUN, params=params, measured_text=row["not_run"],
                           test_nodeid=nodeid, outcome=outcome, wall_time_s=row["duration"])
    verdict = {"skipped": SKIPPED, INTERRUPTED: INTERRUPTED}.get(outcome, ERROR)
    reason = row.get("reason") or ("interrupted before the test finished" if outcome == INTERRUPTED else "")
    return ClaimResult(id=row["id"], verdict=verdict, params=params, measured_text=reason, test_nodeid=nodeid,
                       outcome=outcome, wall_time_s=row["duration"])


def _git(root: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def environment(config: pytest.Config, results: list[ClaimResult]) -> dict:
    """What a reader needs to reproduce the run."""
    torch = sys.modules.get("torch")  # only what the run used: importing torch here would cost seconds
    cuda = torch is not None and torch.cuda.is_available()
    try:
        torch_version = metadata.version("torch")
    except metadata.PackageNotFoundError:
        torch_version = None
    status = _git(config.rootpath, "status", "--porcelain", "--untracked-files=no")
    # the harness's resolved profile (it has a default the --profile option does not show)
    profile = config.stash.get(PROFILE, None)
    return {
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "profile": getattr(profile, "name", None) or config.getoption("--profile", None),
        "device": f"cuda: {torch.cuda.get_device_name(0)}" if cuda else f"cpu ({os.cpu_count()} cores)",
        "torch": torch_version,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "git_commit": _git(config.rootpath, "rev-parse", "HEAD"),
        "git_dirty": None if status is None else bool(status),
        "command": " ".join(["pytest", *config.invocation_params.args]),
        "report_only": config.getoption("--report-only"),
        "seeds": list(getattr(profile, "seeds", ())) or sorted({s for r in results for s in r.seeds}),
        "alpha": results[0].alpha if results else 0.05,
    }
