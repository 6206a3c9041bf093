"""claims.json -> claims.md and claims.html (one self-contained file: figures inlined as base64).

Both renderers read the same document (see `result.build_doc`) and show the same things: a summary
table with one row per result and a "not run" row for every catalog claim without one, then one
section per result. `rerender` rebuilds md/html from an existing claims.json without training.

A document is data that may come from anywhere, so rendering it reads nothing outside the report
folder (figure entries such as "../x", "/etc/hostname" or a symlink out of the folder are refused),
and every text it holds is escaped for the format it lands in (HTML, and markdown, whose viewers
also render inline HTML). A document that says it is interrupted is written under its own names
(claims.interrupted.*), so a partial run never replaces a complete report.
"""

from __future__ import annotations

import base64
import html
import json
import os
import re
import tempfile
from pathlib import Path, PurePosixPath
from urllib.parse import quote

from lossscape.report.catalog import Catalog
from lossscape.report.result import ERROR, INTERRUPTED, NOT_RUN, SKIPPED, ClaimResult, fmt
from lossscape.report.schema import ReportError, read_doc
from lossscape.stats import Verdict

FILES = ("claims.json", "claims.md", "claims.html")
INTERRUPTED_FILES = ("claims.interrupted.json", "claims.interrupted.md", "claims.interrupted.html")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
RULE = ("A claim is supported when the effect and its whole CI lie in the claimed region and the "
        "Holm-adjusted p-value is below alpha, refuted when the whole CI lies on the other side, "
        "and inconclusive otherwise.")
SUMMARY_COLUMNS = ("ID", "Claim", "Source", "Reported", "Params", "Measured", "p (Holm)", "Verdict")


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


def _rows(doc: dict) -> list[tuple[dict, ClaimResult | None]]:
    """(catalog entry, result) in catalog order; one row per result, (entry, None) for claims not run."""
    catalog = Catalog.from_dict(doc["catalog"])
    results = [ClaimResult.from_dict(r) for r in doc["results"]]
    rows = []
    for cid, entry in catalog.claims.items():
        mine = [r for r in results if r.id == cid]
        if mine:
            rows.extend((entry.to_dict(), r) for r in mine)
        else:
            rows.append((entry.to_dict(), None))
    known = set(catalog.claims)
    rows.extend(({"id": r.id, "claim": "(not in the catalog)", "source": "", "reported": ""}, r)
                for r in results if r.id not in known)
    return rows


def _measured(r: ClaimResult) -> str:
    return r.measured_text + (f" ({r.ci_level:.0%} CI)" if r.ci_level else "")


def _summary_cells(entry: dict, r: ClaimResult | None) -> list[str]:
    source = entry["source"] + (" (beyond the sources)" if entry.get("beyond_sources") else "")
    if r is None:
        return [entry["id"], entry["claim"], source, entry.get("reported", ""), "", "", "", NOT_RUN]
    return [entry["id"], entry["claim"], source, entry.get("reported", ""), r.params, _measured(r),
            fmt(r.p_adjusted, 2), r.verdict_text()]


def _counts(doc: dict) -> str:
    verdicts = [r.verdict if r else NOT_RUN for _, r in _rows(doc)]
    order = [v.value for v in Verdict] + [ERROR, INTERRUPTED, SKIPPED, NOT_RUN]
    return ", ".join(f"{v}: {verdicts.count(v)}" for v in order if v in verdicts)


def _header_lines(doc: dict) -> list[str]:
    env = doc["environment"]
    keys = ("timestamp", "profile", "device", "torch", "python", "platform", "git_commit", "command")
    return [f"{k}: {env[k]}" for k in keys if env.get(k) not in (None, "")] + [
        f"verdicts: {_counts(doc)}",
        f"multiple testing: Holm over the {doc['holm_m']} p-values of this run, alpha = {env.get('alpha', 0.05)}",
    ]


def _detail_lines(entry: dict, r: ClaimResult) -> list[tuple[str, str]]:
    """(label, text) pairs shown in a result's section, both renderers."""
    stat = r.statistic or {}
    lines = [("Claim", entry["claim"]), ("Source", entry["source"]), ("Reported", entry.get("reported", "")),
             ("Test", entry.get("test", "")), ("Claimed", r.claimed()), ("Measured", _measured(r)),
             ("Method", r.method),
             ("Statistic", f"{stat.get('name', '')} = {fmt(stat.get('value'))}" if stat else ""),
             ("p", f"{fmt(r.p_value, 2)} (Holm {fmt(r.p_adjusted, 2)}; at test time needed < {fmt(r.test_alpha, 2)}); "
                   f"opposite side {fmt(r.p_opposite, 2)} (Holm {fmt(r.p_opposite_adjusted, 2)})"
              if r.p_value is not None else ""),
             ("Power", r.power_text()),
             ("Seeds", f"{r.n_seeds} per group" + (f" ({', '.join(map(str, r.seeds))})" if r.seeds else "")
              if r.n_seeds else ""),
             ("Configurations", "; ".join(c if isinstance(c, str) else json.dumps(c, sort_keys=True)
                                         for c in r.configs)),
             ("Note", r.verdict_note),
             ("Test node", f"{r.test_nodeid} ({r.outcome}, {fmt(r.wall_time_s)} s)" if r.test_nodeid else "")]
    return [(k, v) for k, v in lines if v]


def _interrupted_note(doc: dict) -> str:
    return (f"INTERRUPTED: this report is partial ({doc['interrupted']}); only the claim tests that ran "
            "before the interruption are in it. A complete report, if any, is claims.html.")


# -- markdown ------------------------------------------------------------------------------------

# Every character that means something inline in CommonMark/GFM (emphasis, code, links and images,
# tables, strikethrough, math, headings' closing #, escapes); a backslash makes each one literal.
_MD_SPECIAL = re.compile(r"([\\`*_\[\]|~$#])")


def _md(x) -> str:
    """Any text as literal markdown on one line: viewers render inline HTML, so <, > and & become
    entities, and the markdown punctuation above is backslash-escaped."""
    text = html.escape(str(x), quote=False).replace("\r", " ").replace("\n", " ")
    return _MD_SPECIAL.sub(r"\\\1", text)


def _md_table(columns, rows) -> list[str]:
    return (["| " + " | ".join(map(_md, columns)) + " |", "|" + "---|" * len(columns)]
            + ["| " + " | ".join(map(_md, row)) + " |" for row in rows])


def _md_figure(r: ClaimResult, rel: str, report_dir: Path | None) -> str:
    inside = _figure_inside(rel) if report_dir is None else _figure_file(report_dir, rel) is not None
    if not inside:
        return f"\nfigure outside the report folder, not linked: {_md(rel)}"
    return f"\n![{_md(r.label())}: {_md(PurePosixPath(rel).stem)}]({quote(rel)})"


def render_markdown(doc: dict, report_dir=None) -> str:
    """The report as markdown; with `report_dir`, figure links are checked there (symlinks followed)."""
    report_dir = None if report_dir is None else Path(report_dir)
    rows = _rows(doc)
    out = ["# lossscape: claims report", ""]
    if doc.get("interrupted"):
        out += [f"**{_md(_interrupted_note(doc))}**", ""]
    out += [f"- {_md(line)}" for line in _header_lines(doc)] + ["", RULE, ""]
    out += ["## Summary", ""] + _md_table(SUMMARY_COLUMNS, [_summary_cells(e, r) for e, r in rows])
    for entry, r in rows:
        if r is None:
            continue
        out += ["", f"## {_md(r.label())}: {_md(r.verdict)}", ""]
        out += [f"- **{k}**: {_md(v)}" for k, v in _detail_lines(entry, r)]
        out += [f"- **Caveat**: {_md(c)}" for c in r.caveats]
        for t in r.tables:
            out += ["", f"**{_md(t.get('title', ''))}**", ""] + _md_table(t["columns"], t["rows"])
        out += [_md_figure(r, f, report_dir) for f in r.figures]
    return "\n".join(out) + "\n"


# -- html ----------------------------------------------------------------------------------------

CSS = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 72em; color: #222; }
table { border-collapse: collapse; margin: 0.8em 0; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; vertical-align: top; text-align: left; }
th { background: #f3f3f3; }
.v { font-weight: 600; white-space: nowrap; }
.supported { color: #1a7f37; } .refuted { color: #c0392b; } .inconclusive { color: #b7791f; } .verified { color: #1a7f37; } .failed { color: #c0392b; }
.error, .interrupted, .skipped, .not-run { color: #777; }
.banner { border: 2px solid #c0392b; padding: 0.5em; color: #c0392b; font-weight: 600; }
section { border-top: 1px solid #ddd; margin-top: 1.5em; }
img { max-width: 100%; display: block; margin: 0.5em 0; }
.meta { color: #555; } .missing { color: #c0392b; }
dt { font-weight: 600; } dd { margin: 0 0 0.3em 1.5em; }
"""


def _e(x) -> str:
    return html.escape(str(x))


def _html_table(columns, rows, verdict_col=None) -> str:
    head = "".join(f"<th>{_e(c)}</th>" for c in columns)
    body = []
    for row in rows:
        cells = [f'<td class="v {_e(v.split(" (")[0].replace(" ", "-"))}">{_e(v)}</td>' if i == verdict_col else f"<td>{_e(v)}</td>"
                 for i, v in enumerate(row)]
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _html_figure(report_dir: Path, rel: str) -> str:
    path = _figure_file(report_dir, rel)
    if path is None:
        return f'<p class="missing">figure outside the report folder, not shown: {_e(rel)}</p>'
    if not path.is_file():
        return f'<p class="missing">figure not found: {_e(rel)}</p>'
    with open(path, "rb") as f:
        data = f.read()
    if not data.startswith(PNG_SIGNATURE):  # only our figures are inlined, never another file of the folder
        return f'<p class="missing">figure is not a PNG image, not shown: {_e(rel)}</p>'
    return f'<img alt="{_e(rel)}" src="data:image/png;base64,{base64.b64encode(data).decode("ascii")}">'


def render_html(doc: dict, report_dir) -> str:
    """The report as one HTML file; figures are read from `report_dir` and inlined."""
    report_dir = Path(report_dir)
    rows = _rows(doc)
    parts = ["<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">",
             f"<title>lossscape: claims report</title><style>{CSS}</style></head><body>",
             "<h1>lossscape: claims report</h1>",
             f'<p class="banner">{_e(_interrupted_note(doc))}</p>' if doc.get("interrupted") else "",
             "<ul class=\"meta\">" + "".join(f"<li>{_e(line)}</li>" for line in _header_lines(doc)) + "</ul>",
             f"<p>{_e(RULE)}</p><h2>Summary</h2>",
             _html_table(SUMMARY_COLUMNS, [_summary_cells(e, r) for e, r in rows], verdict_col=7)]
    for entry, r in rows:
        if r is None:
            continue
        parts.append(f'<section><h2>{_e(r.label())}: <span class="v {_e(r.verdict)}">{_e(r.verdict)}</span></h2><dl>')
        parts += [f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in _detail_lines(entry, r)]
        parts.append("</dl>")
        if r.caveats:
            parts.append("<h3>Caveats</h3><ul>" + "".join(f"<li>{_e(c)}</li>" for c in r.caveats) + "</ul>")
        for t in r.tables:
            parts.append(f"<h3>{_e(t.get('title', ''))}</h3>" + _html_table(t["columns"], t["rows"]))
        parts += [_html_figure(report_dir, f) for f in r.figures]
        parts.append("</section>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


# -- files ---------------------------------------------------------------------------------------

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
    texts = {md_name: render_markdown(doc, out_dir), html_name: render_html(doc, out_dir)}
    if json_too:
        texts[json_name] = json.dumps(doc, indent=1, allow_nan=False) + "\n"
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        for name, text in texts.items():
            _write_atomic(out_dir / name, text)
    except OSError as exc:
        raise ReportError(f"cannot write the report into {out_dir}: {exc.strerror or exc}") from None
    return [out_dir / name for name in report_files(doc) if name in texts]


def rerender(report_dir) -> list[Path]:
    """Rewrite claims.md and claims.html from `report_dir`/claims.json (no training, no tests)."""
    return write_reports(load_doc(Path(report_dir) / "claims.json"), report_dir, json_too=False)
