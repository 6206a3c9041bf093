"""What a claims.json must hold, checked when one is read back, before anything renders it.

A claims.json on disk may be empty, truncated, edited or not ours at all; `lossscape report` reads
it, so every field the renderers use is checked here, and a bad file gives one line naming the
field and what it may be, never a traceback from inside a renderer.
"""

from __future__ import annotations

import json
from dataclasses import MISSING, fields
from pathlib import Path

from lossscape.report.catalog import Claim
from lossscape.report.result import SCHEMA, ClaimResult


class ReportError(ValueError):
    """A claims report that cannot be read or written; the message is one line for the user."""


# the JSON types behind the annotations of Claim and ClaimResult ("float | None", "list", ...)
_JSON_TYPES = {"str": (str,), "float": (int, float), "int": (int,), "bool": (bool,), "dict": (dict,),
               "list": (list,), "None": (type(None),)}


def read_doc(path, schemas: tuple[int, ...] = (SCHEMA,)) -> dict:
    """The claims document at `path`, checked; ReportError (one line) for anything unreadable.
    `schemas`: the versions the caller can use (a comparison reads older runs too)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ReportError(f"{path}: not UTF-8 text (byte {exc.start}); allowed: a claims.json written by "
                          "`pytest claims`") from None
    except OSError as exc:
        raise ReportError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    if not text.strip():
        raise ReportError(f"{path}: empty; run `pytest claims` to write it")
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ReportError(f"{path}: not valid JSON ({exc.msg}: line {exc.lineno}, column {exc.colno}; "
                          "truncated?)") from None
    except RecursionError:
        raise ReportError(f"{path}: JSON nested too deeply to be a claims report") from None
    check_doc(doc, str(path), schemas)
    return doc


def check_doc(doc, where: str = "claims.json", schemas: tuple[int, ...] = (SCHEMA,)) -> None:
    """Raise ReportError naming the first field of `doc` that the renderers could not use."""
    _expect(doc, dict, where, "an object with schema, environment, holm_m, catalog, results")
    if doc.get("schema") not in schemas:
        raise ReportError(f"{where}: schema {doc.get('schema')!r}; this lossscape reads schema "
                          f"{' or '.join(map(str, schemas))}")
    for key, kind, allowed in (("environment", dict, "an object"), ("holm_m", int, "an integer"),
                               ("catalog", dict, "an object"), ("results", list, "a list")):
        _expect(doc.get(key), kind, f"{where}: {key}", allowed)
    if "interrupted" in doc:
        _expect(doc["interrupted"], str, f"{where}: interrupted", "a string")
    catalog = doc["catalog"]
    _expect(catalog.get("claims"), list, f"{where}: catalog.claims", "a list")
    for key in ("families", "sources"):
        _expect(catalog.get(key), dict, f"{where}: catalog.{key}", "an object")
    known = {f.name for f in fields(Claim)}
    for i, entry in enumerate(catalog["claims"]):
        _check_record(Claim, entry, f"{where}: catalog.claims[{i}]")
        unknown = sorted(set(entry) - known)
        if unknown:
            raise ReportError(f"{where}: catalog.claims[{i}].{unknown[0]}: unknown field; allowed: {', '.join(sorted(known))}")
    for i, result in enumerate(doc["results"]):
        _check_result(result, f"{where}: results[{i}]")


def _check_result(result, where: str) -> None:
    _check_record(ClaimResult, result, where)
    stat = result.get("statistic")
    if stat is not None:
        _expect(stat.get("value"), (int, float, type(None)), f"{where}.statistic.value", "a number or null")
    for i, fig in enumerate(result.get("figures", [])):
        _expect(fig, str, f"{where}.figures[{i}]", "a path relative to the report folder")
    for i, table in enumerate(result.get("tables", [])):
        _expect(table, dict, f"{where}.tables[{i}]", "an object with title, columns, rows")
        _expect(table.get("columns"), list, f"{where}.tables[{i}].columns", "a list")
        _expect(table.get("rows"), list, f"{where}.tables[{i}].rows", "a list of lists")
        for j, row in enumerate(table["rows"]):
            _expect(row, list, f"{where}.tables[{i}].rows[{j}]", "a list")


def _check_record(cls, record, where: str) -> None:
    """`record` has every required field of dataclass `cls`, each of the JSON type it declares."""
    _expect(record, dict, where, "an object")
    for f in fields(cls):
        if f.name not in record:
            if f.default is MISSING and f.default_factory is MISSING:
                raise ReportError(f"{where}.{f.name}: missing")
            continue
        allowed = tuple(t for part in f.type.split("|") for t in _JSON_TYPES[part.strip()])
        _expect(record[f.name], allowed, f"{where}.{f.name}", f.type.replace(" | None", " or null"))


def _expect(value, kind, where: str, allowed: str) -> None:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    # JSON true/false are Python bools, which are ints too: only a field that says bool takes them
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        got = "null or nothing" if value is None else type(value).__name__
        raise ReportError(f"{where}: got {got}; allowed: {allowed}")
