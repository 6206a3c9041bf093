"""Claim results, the claims catalog, the md/html/json report and its pytest plugin.

The pytest plugin (`lossscape.report.plugin`) and the figures (`lossscape.report.figures`, which
imports matplotlib) are not imported here, so `lossscape report` stays light.
"""

from lossscape.report.catalog import Catalog, Claim, load_catalog
from lossscape.report.render import load_doc, render_html, render_markdown, rerender, write_reports
from lossscape.report.result import ClaimResult, build_doc

__all__ = ["Catalog", "Claim", "ClaimResult", "build_doc", "load_catalog", "load_doc", "render_html",
           "render_markdown", "rerender", "write_reports"]
