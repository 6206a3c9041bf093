"""The object a claim test gets from the `claim` fixture: figure paths in, one verdict out."""

from __future__ import annotations

import inspect
import re
from dataclasses import replace
from pathlib import Path

import pytest

from lossscape.report.catalog import Claim
from lossscape.report.result import ClaimResult, fmt
from lossscape.stats import TestResult, Verdict

RESULT_KEY = "lossscape_claim"        # user_properties key: the ClaimResult as JSON
ID_KEY = "lossscape_claim_id"         # user_properties key: the marker's claim ID, set at collection
NOT_RUN_KEY = "lossscape_not_run"     # user_properties key: why the run's profile leaves the claim to another
# The run's profile (a lossscape.profiles.Profile), stored by the plugin that chose it (the claims
# harness, lossscape.harness.selection); the report states its name and seeds. Absent where the
# report plugin runs alone.
PROFILE = pytest.StashKey[object]()


class ClaimRecorder:
    """Records one claim result for one test item.

    `check` takes the evidence (a `stats.TestResult`, a `Verdict` for a direct check such as DP-1's
    equality within tolerance, or a ready `ClaimResult`) plus any `ClaimResult` fields, judges it at
    alpha/m, stores it on the item's user_properties and fails the test unless it is supported
    (or the run is --report-only).
    """

    def __init__(self, item: pytest.Item, entry: Claim, report_dir: Path, m: int, report_only: bool,
                 is_check: bool = False):
        self.id = entry.id
        self.entry = entry
        self.params = item.callspec.id if hasattr(item, "callspec") else ""
        self.result: ClaimResult | None = None
        self._item, self._report_dir, self._m, self._report_only = item, report_dir, m, report_only
        self._figures: list[Path] = []
        self._is_check = is_check

    def figure_path(self, name: str) -> Path:
        """Where to save a figure for this result; it is attached to the result if it exists at check()."""
        stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{self.id}-{self.params}" if self.params else self.id)
        path = self._report_dir / "figures" / f"{stem}-{name}"
        path.parent.mkdir(parents=True, exist_ok=True)
        self._figures.append(path)
        return path

    def check(self, evidence: TestResult | Verdict | ClaimResult, /, *, label: str = "", **fields) -> ClaimResult:
        if self.result is not None:
            raise RuntimeError(f"{self.id}: check() was already called; parametrize the test for more results "
                               "(each result is one hypothesis in the Holm family)")
        test_alpha = fields.get("alpha", getattr(evidence, "alpha", 0.05)) / self._m
        if isinstance(evidence, TestResult):
            result = ClaimResult.from_test(self.id, evidence, label=label, mde=evidence.mde(test_alpha), **fields)
        elif isinstance(evidence, Verdict):
            result = ClaimResult(id=self.id, verdict=evidence.value, **fields)
        else:
            result = replace(evidence, **fields)
        if result.id != self.id:
            raise ValueError(f"result for {result.id} recorded by a test marked {self.id}")
        test_alpha = result.alpha / self._m
        if self._is_check != result.is_check:
            raise ValueError(f"{self.id}: a test marked check=True records Verdict.VERIFIED or FAILED, and only it")
        # Holm's first step: a result supported at alpha/m is supported whatever the other p-values are
        test_verdict = result.judge(alpha=test_alpha).value if result.has_evidence else Verdict(result.verdict).value
        found = [p.relative_to(self._report_dir).as_posix() for p in self._figures if p.is_file()]
        result = replace(
            result, params=self.params, reported=result.reported or self.entry.reported,
            preregistration=result.preregistration or self._preregistration(),
            test_nodeid=self._item.nodeid, test_alpha=test_alpha, test_verdict=test_verdict, verdict=test_verdict,
            figures=list(dict.fromkeys([*result.figures, *found])),
            caveats=[*result.caveats, *self._floor_caveat(result, test_alpha)],
        )
        self._item.user_properties.append((RESULT_KEY, result.to_json()))
        self.result = result
        passed = Verdict.VERIFIED.value if result.is_check else Verdict.SUPPORTED.value
        if test_verdict != passed and not self._report_only:
            pytest.fail(result.failure_message(), pytrace=False)
        return result

    def _preregistration(self) -> str:
        """The test's docstring, which states its design before any data (DESIGN.md: scientific,
        nuisance and fixed parameters, stop rule); without its first paragraph, the claim's own words."""
        doc = inspect.getdoc(getattr(self._item, "function", None)) or ""
        return doc.partition("\n\n")[2].strip()

    @staticmethod
    def _floor_caveat(result: ClaimResult, test_alpha: float) -> list[str]:
        """Say so when the design (seeds per group) cannot produce a p-value small enough."""
        min_p = result.min_p
        if result.has_evidence and min_p is not None and min_p >= test_alpha:
            return [f"with these group sizes no data could give p < alpha/m = {fmt(test_alpha, 2)} "
                    f"(smallest attainable p = {fmt(min_p, 2)}); more seeds are needed for support at test time"]
        return []
