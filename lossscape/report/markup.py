"""Text made safe for the format it lands in, and the tables both reports use: markdown escaping
and tables, HTML escaping, tables, anchors and the stylesheet. The report and the comparison
(`render`, `compare`) share them.
"""
from __future__ import annotations

import html
import re

from lossscape.report.result import ERROR, INTERRUPTED, NOT_RUN, SKIPPED
from lossscape.stats import Verdict

# Every character that means something inline in CommonMark/GFM (emphasis, code, links and images,
# tables, strikethrough, math, headings' closing #, escapes, HTML tags); a backslash makes each one
# literal. ">" alone starts nothing inside a line, and "&" only an entity, so prose keeps "->".
_MD_SPECIAL = re.compile(r"([\\`*_\[\]|~$#<]|&(?=#?\w+;))")


def md_text(x) -> str:
    """Any text as literal markdown on one line: the markdown punctuation above is backslash-escaped
    (viewers render inline HTML, so "<" and an entity's "&" are escaped too)."""
    text = str(x).replace("\r", " ").replace("\n", " ")
    return _MD_SPECIAL.sub(r"\\\1", text)


def md_table(columns, rows) -> list[str]:
    return (["| " + " | ".join(map(md_text, columns)) + " |", "|" + "---|" * len(columns)]
            + ["| " + " | ".join(map(md_text, row)) + " |" for row in rows])



# -- html ----------------------------------------------------------------------------------------

VERDICT_CLASSES = {v.value for v in Verdict} | {ERROR, INTERRUPTED, SKIPPED, NOT_RUN.replace(" ", "-")}

CSS = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 80em; padding: 0 1em; color: #222;
       overflow-wrap: break-word; }
.scroll { overflow-x: auto; max-width: 100%; }
table { border-collapse: collapse; margin: 0.8em 0; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; vertical-align: top; text-align: left; overflow-wrap: break-word; }
table.summary { width: 100%; }
table.summary td:first-child, table.summary td:nth-child(5), table.summary th { white-space: nowrap; }
table.summary td.v { min-width: 9em; }
th { background: #f3f3f3; }
tr.sub td { border-top-style: dotted; }
tr.sub td:not(.v) { color: #444; }
tr.sub td:nth-child(2) { padding-left: 1.5em; }
.v { font-weight: 600; }
.supported { color: #1a7f37; } .refuted { color: #c0392b; } .inconclusive { color: #b7791f; } .verified { color: #1a7f37; } .failed { color: #c0392b; }
.error, .interrupted, .skipped, .not-run { color: #777; }
.banner { border: 2px solid #c0392b; padding: 0.5em; color: #c0392b; font-weight: 600; }
section { border-top: 1px solid #ddd; margin-top: 1.5em; }
img { max-width: 100%; display: block; margin: 0.5em 0; }
.meta { color: #555; } .missing { color: #c0392b; } p.claim { font-style: italic; }
dt { font-weight: 600; } dd { margin: 0 0 0.3em 1.5em; overflow-wrap: anywhere; }
"""


def esc(x) -> str:
    return html.escape(str(x))


def verdict_class(text: str) -> str:
    """"inconclusive (leans refuted)" -> "inconclusive"; "1 supported, 1 refuted" -> "" (no colour)."""
    word = text.split(" (")[0].replace(" ", "-")
    return word if word in VERDICT_CLASSES else ""


def html_table(columns, rows, verdict_cols=(), row_classes=None, link_col=None, table_class="") -> str:
    head = "".join(f"<th>{esc(c)}</th>" for c in columns)
    body = []
    for k, row in enumerate(rows):
        cells = []
        for i, v in enumerate(row):
            if i in verdict_cols:
                cells.append(f'<td class="v {verdict_class(v)}">{esc(v)}</td>')
            elif i == link_col and v:
                cells.append(f'<td><a href="#{esc(anchor(v))}">{esc(v)}</a></td>')
            else:
                cells.append(f"<td>{esc(v)}</td>")
        row_class = f' class="{row_classes[k]}"' if row_classes else ""
        body.append(f"<tr{row_class}>" + "".join(cells) + "</tr>")
    cls = f' class="{table_class}"' if table_class else ""
    return f'<div class="scroll"><table{cls}><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'


def anchor(claim_id: str) -> str:
    return "claim-" + re.sub(r"[^A-Za-z0-9-]", "_", claim_id)
