"""The first screen's data: results grouped by claim ID, and the forest plot of every effect.

A claim with several results (BS-4's two parts, GEO-6 per setting) is one row with its results
beneath; `verified` checks are kept apart from the Holm-judged claims, since they test no hypothesis.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from lossscape.report.catalog import Catalog
from lossscape.report.result import NOT_RUN, ClaimResult
from lossscape.stats import EQUIVALENT, INCREASING

OVERVIEW_FIGURE = "figures/overview.png"


@dataclass
class ClaimGroup:
    entry: dict                                   # the catalog's claim (id, claim, source, reported, test)
    results: list[ClaimResult] = field(default_factory=list)

    @property
    def id(self) -> str:
        return self.entry["id"]

    @property
    def claims(self) -> list[ClaimResult]:
        """The results judged under Holm (or without evidence), not the `verified` checks."""
        return [r for r in self.results if not r.is_check]

    @property
    def checks(self) -> list[ClaimResult]:
        return [r for r in self.results if r.is_check]

    def verdict_text(self, results: list[ClaimResult] | None = None) -> str:
        """One result's verdict (with its lean), or how many of several got each verdict."""
        results = self.results if results is None else results
        if not results:
            return NOT_RUN
        if len(results) == 1:
            return results[0].verdict_text()
        verdicts = [r.verdict for r in results]
        return ", ".join(f"{verdicts.count(v)} {v}" for v in dict.fromkeys(verdicts))


def claim_groups(doc: dict) -> list[ClaimGroup]:
    """One group per catalog claim, in catalog order, then any result whose ID the catalog lacks."""
    catalog = Catalog.from_dict(doc["catalog"])
    groups = {cid: ClaimGroup(entry.to_dict()) for cid, entry in catalog.claims.items()}
    for d in doc["results"]:
        r = ClaimResult.from_dict(d)
        if r.id not in groups:
            groups[r.id] = ClaimGroup({"id": r.id, "claim": "(not in the catalog)", "source": "", "reported": ""})
        groups[r.id].results.append(r)
    return list(groups.values())


def forest_row(r: ClaimResult) -> dict | None:
    """The result relative to its claimed threshold (a ratio for log-scale effects), or None
    when it has no finite effect and CI to draw."""
    if r.is_check or not r.has_evidence or r.effect is None or not r.ci or None in r.ci or r.null_effect is None:
        return None
    values = [r.effect, *r.ci]
    if not all(math.isfinite(v) for v in values):
        return None
    null, margin = r.null_effect, r.margin or 0.0
    log = r.details.get("scale") == "log" and null > 0 and min(values) > 0
    x, low, high = [v / null for v in values] if log else [v - null for v in values]
    inf = math.inf
    if r.direction == EQUIVALENT:
        region = ((null - margin) / null, (null + margin) / null) if log else (-margin, margin)
    elif r.direction in INCREASING:
        region = (1.0 if log else 0.0, inf)
    else:
        region = (0.0, 1.0) if log else (-inf, 0.0)
    return {"label": r.label(), "verdict": r.verdict, "x": x, "low": low, "high": high, "region": region, "log": log}


def write_overview(doc: dict, report_dir) -> str | None:
    """Draw the forest plot of `doc` into the report folder; its path there, or None with nothing to draw."""
    rows = [row for g in claim_groups(doc) for r in g.results if (row := forest_row(r))]
    if not rows:
        return None
    from lossscape.report import figures  # matplotlib: only when a report is written
    figures.forest_plot(Path(report_dir) / OVERVIEW_FIGURE, rows)
    return OVERVIEW_FIGURE
