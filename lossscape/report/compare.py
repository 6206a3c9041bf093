"""Two claims.json side by side: verdict changes, effect shifts, results present in only one run.

`lossscape report --compare A.json B.json` writes comparison.md and comparison.html: cpu against
gpu, or a run before a change against one after it. Results are matched by label (ID and
parametrization); both documents are checked (`schema.read_doc`) before anything is compared.
"""

from __future__ import annotations

import math
from pathlib import Path

from lossscape.report.overview import claim_groups
from lossscape.report.markup import CSS, esc, html_table, md_table, md_text
from lossscape.report.render import write_texts
from lossscape.report.result import SCHEMA, ClaimResult, fmt
from lossscape.report.schema import read_doc

FILES = ("comparison.md", "comparison.html")
# Schema 1 (before the calibrated statistics) has every field of 2 but the optional p_opposite,
# min_p and mde, so a run before that change compares with one after it: what changed is the point.
COMPARABLE_SCHEMAS = (1, SCHEMA)
COLUMNS = ("Result", "Verdict A", "Verdict B", "Effect A [CI]", "Effect B [CI]", "Shift")


def _results(doc: dict) -> dict[str, ClaimResult]:
    """label -> result, in catalog order."""
    return {r.label(): r for g in claim_groups(doc) for r in g.results}


def _effect(r: ClaimResult | None) -> str:
    if r is None:
        return ""
    if r.effect is None:
        return r.measured_text
    ci = f" [{fmt(r.ci[0])}, {fmt(r.ci[1])}]" if r.ci and None not in r.ci else ""
    return f"{r.effect_name} {fmt(r.effect)}{ci}"


def shift(a: ClaimResult, b: ClaimResult) -> str:
    """B's effect against A's: a ratio for log-scale effects, a difference otherwise; and whether
    B's estimate lies outside A's CI."""
    if a.effect is None or b.effect is None or a.effect_name != b.effect_name:
        return ""
    log = a.details.get("scale") == "log" and a.effect > 0 and b.effect > 0
    text = f"x{fmt(b.effect / a.effect)}" if log else f"{b.effect - a.effect:+.3g}"
    if a.ci and None not in a.ci and math.isfinite(b.effect) and not a.ci[0] <= b.effect <= a.ci[1]:
        text += " (outside A's CI)"
    return text


def comparison(doc_a: dict, doc_b: dict) -> dict:
    """{"changed": rows, "same": rows, "only_a": labels, "only_b": labels}; a row is COLUMNS' cells."""
    a, b = _results(doc_a), _results(doc_b)
    out = {"changed": [], "same": [], "only_a": [k for k in a if k not in b], "only_b": [k for k in b if k not in a]}
    for label in [k for k in a if k in b]:
        ra, rb = a[label], b[label]
        row = [label, ra.verdict_text(), rb.verdict_text(), _effect(ra), _effect(rb), shift(ra, rb)]
        out["changed" if ra.verdict != rb.verdict else "same"].append(row)
    return out


def _run_line(doc: dict) -> str:
    env = doc["environment"]
    return ", ".join(f"{k} {env[k]}" for k in ("profile", "device", "git_commit", "timestamp") if env.get(k))


def render_markdown(cmp: dict, names: tuple[str, str], docs: tuple[dict, dict]) -> str:
    out = ["# lossscape: comparison of two claims reports", ""]
    out += [f"- **{side}**: {md_text(name)} ({md_text(_run_line(doc))})" for side, name, doc in zip("AB", names, docs)]
    out += ["", f"- verdict changes: {len(cmp['changed'])}; unchanged: {len(cmp['same'])}; "
                f"only in A: {len(cmp['only_a'])}; only in B: {len(cmp['only_b'])}"]
    for title, key in (("Verdict changes", "changed"), ("Same verdict (effect shifts)", "same")):
        out += ["", f"## {title}", ""] + (md_table(COLUMNS, cmp[key]) if cmp[key] else ["none"])
    for title, key in (("Only in A", "only_a"), ("Only in B", "only_b")):
        out += ["", f"## {title}", ""] + ([f"- {md_text(k)}" for k in cmp[key]] or ["none"])
    return "\n".join(out) + "\n"


def render_html(cmp: dict, names: tuple[str, str], docs: tuple[dict, dict]) -> str:
    parts = ['<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             f"<title>lossscape: comparison</title><style>{CSS}</style></head><body>",
             "<h1>lossscape: comparison of two claims reports</h1><ul class=\"meta\">"]
    parts += [f"<li><b>{side}</b>: {esc(name)} ({esc(_run_line(doc))})</li>"
              for side, name, doc in zip("AB", names, docs)]
    parts.append(f"<li>verdict changes: {len(cmp['changed'])}; unchanged: {len(cmp['same'])}; only in A: "
                 f"{len(cmp['only_a'])}; only in B: {len(cmp['only_b'])}</li></ul>")
    for title, key in (("Verdict changes", "changed"), ("Same verdict (effect shifts)", "same")):
        rows = cmp[key]
        table = html_table(COLUMNS, rows, verdict_cols=(1, 2)) if rows else "<p>none</p>"
        parts.append(f"<h2>{esc(title)}</h2>{table}")
    for title, key in (("Only in A", "only_a"), ("Only in B", "only_b")):
        items = "".join(f"<li>{esc(k)}</li>" for k in cmp[key])
        parts.append(f"<h2>{esc(title)}</h2>" + (f"<ul>{items}</ul>" if items else "<p>none</p>"))
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write_comparison(path_a, path_b, out_dir) -> list[Path]:
    """Read and check both documents, write comparison.md/.html into `out_dir`; ReportError (one line)."""
    docs = (read_doc(path_a, COMPARABLE_SCHEMAS), read_doc(path_b, COMPARABLE_SCHEMAS))
    names = (str(path_a), str(path_b))
    cmp = comparison(*docs)
    out_dir = Path(out_dir)
    texts = dict(zip(FILES, (render_markdown(cmp, names, docs), render_html(cmp, names, docs))))
    write_texts(out_dir, texts, "comparison")
    return [out_dir / name for name in FILES]
