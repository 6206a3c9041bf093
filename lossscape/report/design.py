"""What a result was designed to be: its preregistration in labelled parts, its configurations as a table.

Both read text the claim tests wrote (the test's docstring; RunConfig JSON strings) and return
plain rows for the renderers, which escape them.
"""

from __future__ import annotations

import json
import re

# The labels claim-test docstrings use for their design (DESIGN.md: "declares its ID, the scientific
# parameter, the fixed and tuned nuisance parameters and the stop rule"), at the start of a sentence.
_LABEL = re.compile(r"(?:^|(?<=[.)]\s)|(?<=\n))(Scientific (?:parameters?|comparison)|Tuned nuisance parameters?|"
                    r"Nuisance parameters?|Fixed|Stop rule|Statistic|Claimed direction|Claimed|Caveats?)\s*:\s*")


def preregistration_parts(text: str) -> list[tuple[str, str]]:
    """(label, text) per labelled part of a docstring; what precedes the first label is "Design"."""
    flat = re.sub(r"\s+", " ", text).strip()
    if not flat:
        return []
    cuts = list(_LABEL.finditer(flat))
    parts = [("Design", flat[:cuts[0].start()].strip() if cuts else flat)]
    for here, after in zip(cuts, cuts[1:] + [None]):
        parts.append((here.group(1), flat[here.end():after.start() if after else None].strip()))
    return [(k, v) for k, v in parts if v]


def _value(v) -> str:
    return "null" if v is None else v if isinstance(v, str) else json.dumps(v)


def config_table(configs: list) -> tuple[list[tuple[str, str]], list[str], list[list[str]]]:
    """(fixed, columns, rows): the settings shared by every configuration as (name, value), and one
    row per configuration of the settings that vary. A label that is not a JSON object is a row of
    its own under the column "configuration"."""
    parsed, labels = [], []
    for c in configs:
        if isinstance(c, str):
            try:
                c = json.loads(c)
            except json.JSONDecodeError:
                pass
        (parsed if isinstance(c, dict) else labels).append(c)
    keys = sorted({k for c in parsed for k in c})
    fixed = [(k, _value(parsed[0].get(k))) for k in keys
             if len({_value(c.get(k)) for c in parsed}) == 1] if parsed else []
    varying = [k for k in keys if k not in dict(fixed)]
    rows = [[_value(c.get(k)) for k in varying] for c in parsed]
    unique = list(dict.fromkeys(map(tuple, rows)))
    columns = varying
    if labels:
        columns = ["configuration", *varying]
        unique = [(str(x), *[""] * len(varying)) for x in labels] + [("", *row) for row in unique]
    return fixed, columns, [list(row) for row in unique]
