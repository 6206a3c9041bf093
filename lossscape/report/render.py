"""claims.json -> claims.md and claims.html (one self-contained file: figures inlined as base64).

Both renderers read the same document (see `result.build_doc`) and show the same things. First
what holds: one row per catalog claim with its results beneath it (`overview.claim_groups`), the
`verified` checks apart, and the forest plot of every effect (`overview.write_overview`, drawn by
`write_reports`). Then one section per claim: the catalog's words, the preregistration (the claim
test's docstring), and per result the test, its p-value floor and power, caveats, tables, the
configurations as a table (`design.config_table`) and figures. The run's environment comes last.
`rerender` rebuilds md/html from an existing claims.json without training.

A document is data that may come from anywhere, so rendering it reads nothing outside the report
folder (figure entries such as "../x", "/etc/hostname" or a symlink out of the folder are refused),
and every text it holds is escaped for the format it lands in (HTML, and markdown, whose viewers
also render inline HTML). A document that says it is interrupted is written under its own names
(claims.interrupted.*), so a partial run never replaces a complete report. The HTML puts every
table in a horizontally scrolling box and breaks long words, so the page itself never scrolls
sideways (tests/test_report_browser.py checks it at 1280 px in Chromium).
"""

from __future__ import annotations

import base64
import json
import os
import re
import tempfile
from pathlib import Path, PurePosixPath
from urllib.parse import quote

from lossscape.report.design import config_table, preregistration_parts
from lossscape.report.markup import CSS, anchor, esc, html_table, md_table, md_text, verdict_class
from lossscape.report.overview import ClaimGroup, claim_groups, write_overview
from lossscape.report.result import ERROR, INTERRUPTED, NOT_RUN, SKIPPED, ClaimResult, fmt
from lossscape.report.schema import ReportError, read_doc
from lossscape.stats import Verdict

FILES = ("claims.json", "claims.md", "claims.html")
INTERRUPTED_FILES = ("claims.interrupted.json", "claims.interrupted.md", "claims.interrupted.html")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
RULE = ("A claim is supported when the effect and its whole CI lie in the claimed region and the "
        "Holm-adjusted p-value is below alpha, refuted when the opposite one-sided test passes at the same "
        "Holm-adjusted level (its own Holm family) with the effect on that side, and inconclusive otherwise: "
        "an inconclusive result says which side it leans to and what effect its seeds could have detected.")
SUMMARY_COLUMNS = ("ID", "Claim", "Verdict", "Ours (CI)", "p (Holm)", "Source reported")
CHECK_COLUMNS = ("Check", "What", "Result", "Measured")
OVERVIEW_TEXT = ("Each bar is a result's CI relative to the claimed threshold (dashed line), the tick its "
                 "estimate; the shade on each row is the claimed region. Colour: the verdict.")


def load_doc(path) -> dict:
    """A claims.json, checked (`schema.read_doc`): ReportError, one line, for anything unusable."""
    return read_doc(path)


def report_files(doc: dict) -> tuple[str, str, str]:
    """The json, md and html names a document is written under: its own for an interrupted run."""
    return INTERRUPTED_FILES if doc.get("interrupted") else FILES


def _figure_inside(rel: str) -> bool:
    """True when the figure path names a file below the report folder by its words alone: relative,
    no "..", no backslash or NUL (which other systems or os calls read differently)."""
    p = PurePosixPath(rel)
    return bool(rel) and not p.is_absolute() and ".." not in p.parts and not re.search(r"[\\\x00]", rel)


def _figure_file(report_dir: Path, rel: str) -> Path | None:
    """The figure's file when it lies inside the report folder once symlinks are followed, else None."""
    if not _figure_inside(rel):
        return None
    root = report_dir.resolve()
    path = (root / rel).resolve()
    return path if path.is_relative_to(root) and path != root else None


def _measured(r: ClaimResult) -> str:
    return r.measured_text + (f" ({r.ci_level:.0%} CI)" if r.ci_level else "")


def _summary_rows(groups: list[ClaimGroup]) -> list[tuple[str, list[str]]]:
    """(kind, cells) of the first screen's claims table: "claim" for a claim's row, "sub" for each of
    its several results beneath it; the claim's text and the source's figures appear once."""
    rows = []
    for g in groups:
        claims = g.claims
        if g.results and not claims:  # only checks: in the checks table
            continue
        head = [g.id, g.entry["claim"], g.verdict_text(claims), "", "", g.entry.get("reported", "")]
        if len(claims) == 1:
            head[3:5] = [_measured(claims[0]), fmt(claims[0].p_adjusted, 2)]
        rows.append(("claim", head))
        if len(claims) > 1:
            rows += [("sub", ["", f"\u21b3 {r.params or r.label()}", r.verdict_text(), _measured(r),
                              fmt(r.p_adjusted, 2), ""]) for r in claims]
    return rows


def _check_rows(groups: list[ClaimGroup]) -> list[list[str]]:
    """One row per check; the claim's text on its first check only."""
    return [[r.label(), g.entry["claim"] if k == 0 else "", r.verdict, r.measured_text]
            for g in groups for k, r in enumerate(g.checks)]


def _counts(groups: list[ClaimGroup]) -> str:
    verdicts = [r.verdict for g in groups for r in g.results] + [NOT_RUN for g in groups if not g.results]
    order = [v.value for v in Verdict] + [ERROR, INTERRUPTED, SKIPPED, NOT_RUN]
    return ", ".join(f"{v}: {verdicts.count(v)}" for v in order if v in verdicts)


def _verdict_lines(doc: dict, groups: list[ClaimGroup]) -> list[str]:
    return [f"verdicts (one per result): {_counts(groups)}",
            f"multiple testing: Holm over the {doc['holm_m']} p-values of this run, "
            f"alpha = {doc['environment'].get('alpha', 0.05)}"]


def _environment_lines(doc: dict) -> list[str]:
    env = doc["environment"]
    keys = ("timestamp", "profile", "device", "torch", "python", "platform", "git_commit", "command")
    return [f"{k}: {env[k]}" for k in keys if env.get(k) not in (None, "")]


def _claim_lines(entry: dict) -> list[tuple[str, str]]:
    source = entry.get("source", "") + (" (beyond the sources)" if entry.get("beyond_sources") else "")
    return [(k, v) for k, v in (("Source", source), ("Reported", entry.get("reported", "")),
                                ("Test", entry.get("test", ""))) if v]


def _detail_lines(r: ClaimResult) -> list[tuple[str, str]]:
    """(label, text) pairs shown for one result, both renderers."""
    stat = r.statistic or {}
    p = ""
    if r.p_value is not None:
        p = (f"{fmt(r.p_value, 2)} (Holm {fmt(r.p_adjusted, 2)}); at test time needed < {fmt(r.test_alpha, 2)}; "
             f"smallest p this design can give: {fmt(r.min_p, 2)}")
    lines = [("Measured", _measured(r)), ("Claimed", r.claimed()), ("Method", r.method),
             ("Statistic", f"{stat.get('name', '')} = {fmt(stat.get('value'))}" if stat else ""),
             ("p", p),
             ("Opposite side", f"p {fmt(r.p_opposite, 2)} (Holm {fmt(r.p_opposite_adjusted, 2)}): what "
                               "refuted needs" if r.p_opposite is not None else ""),
             ("Power", r.power_text()),
             ("Seeds", f"{r.n_seeds} per group" + (f" ({', '.join(map(str, r.seeds))})" if r.seeds else "")
              if r.n_seeds else ""),
             ("Note", r.verdict_note),
             ("Test node", f"{r.test_nodeid} ({r.outcome}, {fmt(r.wall_time_s)} s)" if r.test_nodeid else "")]
    return [(k, v) for k, v in lines if v]


def _preregistration(g: ClaimGroup) -> list[tuple[str, str]]:
    text = next((r.preregistration for r in g.results if r.preregistration), "")
    return preregistration_parts(text)


def _fixed_text(fixed: list[tuple[str, str]]) -> str:
    return ", ".join(f"{k} = {v}" for k, v in fixed)


def _interrupted_note(doc: dict) -> str:
    return (f"INTERRUPTED: this report is partial ({doc['interrupted']}); only the claim tests that ran "
            "before the interruption are in it. A complete report, if any, is claims.html.")


# -- markdown ------------------------------------------------------------------------------------

def _md_figure(label: str, rel: str, report_dir: Path | None) -> str:
    inside = _figure_inside(rel) if report_dir is None else _figure_file(report_dir, rel) is not None
    if not inside:
        return f"\nfigure outside the report folder, not linked: {md_text(rel)}"
    return f"\n![{md_text(label)}: {md_text(PurePosixPath(rel).stem)}]({quote(rel)})"


def _md_configs(configs: list) -> list[str]:
    fixed, columns, rows = config_table(configs)
    out = ["", f"**Configurations** ({len(configs)}; the JSON is in claims.json)", ""]
    if fixed:
        out += [f"- fixed: {md_text(_fixed_text(fixed))}"]
    if columns:
        out += ["", *md_table(columns, rows)]
    return out


def _md_result(r: ClaimResult, report_dir: Path | None) -> list[str]:
    out = [f"- **{k}**: {md_text(v)}" for k, v in _detail_lines(r)]
    out += [f"- **Caveat**: {md_text(c)}" for c in r.caveats]
    for t in r.tables:
        out += ["", f"**{md_text(t.get('title', ''))}**", ""] + md_table(t["columns"], t["rows"])
    if r.configs:
        out += _md_configs(r.configs)
    out += [_md_figure(r.label(), f, report_dir) for f in r.figures]
    return out


def render_markdown(doc: dict, report_dir=None, *, overview: str | None = None) -> str:
    """The report as markdown; with `report_dir`, figure links are checked there (symlinks followed).
    `overview`: the forest plot's path in the report folder, when one was drawn."""
    report_dir = None if report_dir is None else Path(report_dir)
    groups = claim_groups(doc)
    out = ["# lossscape: claims report", ""]
    if doc.get("interrupted"):
        out += [f"**{md_text(_interrupted_note(doc))}**", ""]
    out += [f"- {md_text(line)}" for line in _verdict_lines(doc, groups)] + ["", md_text(RULE), ""]
    out += ["## What holds", ""] + md_table(SUMMARY_COLUMNS, [cells for _, cells in _summary_rows(groups)])
    checks = _check_rows(groups)
    if checks:
        out += ["", "## Checks (verified identities and code, outside Holm)", ""] + md_table(CHECK_COLUMNS, checks)
    if overview:
        out += ["", f"![every effect against its claimed threshold]({quote(overview)})", "", md_text(OVERVIEW_TEXT)]
    for g in groups:
        if not g.results:
            continue
        single = len(g.results) == 1
        title = f"{g.results[0].label()}: {g.verdict_text()}" if single else f"{g.id}: {g.verdict_text()}"
        # "**" first: a text at the start of a line could open a list or a quote
        out += ["", f"## {md_text(title)}", "", f"**Claim**: {md_text(g.entry['claim'])}", ""]
        out += [f"- **{k}**: {md_text(v)}" for k, v in _claim_lines(g.entry)]
        prereg = _preregistration(g)
        if prereg:
            out += ["", "**Preregistration** (the claim test's docstring)", ""]
            out += [f"- **{md_text(k)}**: {md_text(v)}" for k, v in prereg]
        for r in g.results:
            out += [""] if single else ["", f"### {md_text(r.label())}: {md_text(r.verdict_text())}", ""]
            out += _md_result(r, report_dir)
    out += ["", "## Run", ""] + [f"- {md_text(line)}" for line in _environment_lines(doc)]
    return "\n".join(out) + "\n"


# -- html ----------------------------------------------------------------------------------------

def _html_figure(report_dir: Path, rel: str) -> str:
    path = _figure_file(report_dir, rel)
    if path is None:
        return f'<p class="missing">figure outside the report folder, not shown: {esc(rel)}</p>'
    if not path.is_file():
        return f'<p class="missing">figure not found: {esc(rel)}</p>'
    with open(path, "rb") as f:
        data = f.read()
    if not data.startswith(PNG_SIGNATURE):  # only our figures are inlined, never another file of the folder
        return f'<p class="missing">figure is not a PNG image, not shown: {esc(rel)}</p>'
    return f'<img alt="{esc(rel)}" src="data:image/png;base64,{base64.b64encode(data).decode("ascii")}">'


def _html_dl(pairs) -> str:
    return "<dl>" + "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in pairs) + "</dl>"


def _html_configs(configs: list) -> str:
    fixed, columns, rows = config_table(configs)
    out = f"<h4>Configurations ({len(configs)}; the JSON is in claims.json)</h4>"
    if fixed:
        out += f"<p><b>Fixed</b>: {esc(_fixed_text(fixed))}</p>"
    if columns:
        out += html_table(columns, rows)
    return out


def _html_result(r: ClaimResult, report_dir: Path) -> list[str]:
    parts = [_html_dl(_detail_lines(r))]
    if r.caveats:
        parts.append("<h4>Caveats</h4><ul>" + "".join(f"<li>{esc(c)}</li>" for c in r.caveats) + "</ul>")
    for t in r.tables:
        parts.append(f"<h4>{esc(t.get('title', ''))}</h4>" + html_table(t["columns"], t["rows"]))
    if r.configs:
        parts.append(_html_configs(r.configs))
    parts += [_html_figure(report_dir, f) for f in r.figures]
    return parts


def render_html(doc: dict, report_dir, *, overview: str | None = None) -> str:
    """The report as one HTML file; figures are read from `report_dir` and inlined."""
    report_dir = Path(report_dir)
    groups = claim_groups(doc)
    summary = _summary_rows(groups)
    checks = _check_rows(groups)
    parts = ["<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">",
             "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">",
             f"<title>lossscape: claims report</title><style>{CSS}</style></head><body>",
             "<h1>lossscape: claims report</h1>",
             f'<p class="banner">{esc(_interrupted_note(doc))}</p>' if doc.get("interrupted") else "",
             "<ul class=\"meta\">" + "".join(f"<li>{esc(line)}</li>" for line in _verdict_lines(doc, groups)) + "</ul>",
             f"<p>{esc(RULE)}</p><h2>What holds</h2>",
             html_table(SUMMARY_COLUMNS, [cells for _, cells in summary], verdict_cols=(2,),
                         row_classes=[kind for kind, _ in summary], link_col=0, table_class="summary")]
    if checks:
        parts += ["<h2>Checks (verified identities and code, outside Holm)</h2>",
                  html_table(CHECK_COLUMNS, checks, verdict_cols=(2,), table_class="summary")]
    if overview:
        parts += ["<h2>Every effect against its claimed threshold</h2>", _html_figure(report_dir, overview),
                  f"<p class=\"meta\">{esc(OVERVIEW_TEXT)}</p>"]
    for g in groups:
        if not g.results:
            continue
        single = len(g.results) == 1
        title = g.results[0].label() if single else g.id
        verdict = g.verdict_text()
        parts.append(f'<section id="{esc(anchor(g.id))}"><h2>{esc(title)}: '
                     f'<span class="v {verdict_class(verdict)}">{esc(verdict)}</span></h2>'
                     f'<p class="claim">{esc(g.entry["claim"])}</p>' + _html_dl(_claim_lines(g.entry)))
        prereg = _preregistration(g)
        if prereg:
            parts.append("<h3>Preregistration (the claim test's docstring)</h3>" + _html_dl(prereg))
        for r in g.results:
            if not single:
                parts.append(f'<h3>{esc(r.label())}: <span class="v {verdict_class(r.verdict_text())}">'
                             f"{esc(r.verdict_text())}</span></h3>")
            parts += _html_result(r, report_dir)
        parts.append("</section>")
    parts.append("<h2>Run</h2><ul class=\"meta\">" + "".join(f"<li>{esc(line)}</li>" for line in _environment_lines(doc))
                 + "</ul></body></html>")
    return "\n".join(parts) + "\n"


# -- files ---------------------------------------------------------------------------------------

def write_texts(out_dir: Path, texts: dict[str, str], what: str) -> None:
    """Write each name -> text into `out_dir` atomically; a folder we cannot write is one ReportError."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        for name, text in texts.items():
            _write_atomic(out_dir / name, text)
    except OSError as exc:
        raise ReportError(f"cannot write the {what} into {out_dir}: {exc.strerror or exc}") from None


def _write_atomic(path: Path, text: str) -> None:
    """Temp file in the same folder, then rename: a reader never sees half a report."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        # mkstemp makes the file private (0600); a report is meant to be shared, as a plain open() would make it
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def write_reports(doc: dict, out_dir, *, json_too=True) -> list[Path]:
    """Write claims.json (unless `json_too` is False), claims.md and claims.html into `out_dir`
    (claims.interrupted.* for an interrupted run's document). ReportError when the folder is not writable."""
    out_dir = Path(out_dir)
    json_name, md_name, html_name = report_files(doc)
    try:
        overview = write_overview(doc, out_dir)
    except OSError as exc:
        raise ReportError(f"cannot write the report into {out_dir}: {exc.strerror or exc}") from None
    texts = {md_name: render_markdown(doc, out_dir, overview=overview),
             html_name: render_html(doc, out_dir, overview=overview)}
    if json_too:
        texts[json_name] = json.dumps(doc, indent=1, allow_nan=False) + "\n"
    write_texts(out_dir, texts, "report")
    return [out_dir / name for name in report_files(doc) if name in texts]


def rerender(report_dir) -> list[Path]:
    """Rewrite claims.md and claims.html from `report_dir`/claims.json (no training, no tests)."""
    return write_reports(load_doc(Path(report_dir) / "claims.json"), report_dir, json_too=False)
