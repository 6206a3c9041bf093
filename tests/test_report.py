"""The claims report: catalog, result JSON, renderers, and the pytest plugin end to end (pytester)."""

import base64
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import lossscape
from lossscape import stats
from lossscape.report import (
    ClaimResult, build_doc, load_catalog, load_doc, render_html, render_markdown, rerender, write_reports,
)
from lossscape.report.result import apply_holm

pytest_plugins = ["pytester"]

LEVELS = np.repeat([16, 64, 256, 1024], 5)
# inner pytest runs: no cache files, and none of the unrelated plugins' start-up cost
INNER = ("-p", "no:cacheprovider", "-p", "no:hypothesispytest", "-p", "no:benchmark")
EXPECTED_IDS = ([f"BS-{i}" for i in range(1, 8)] + ["DP-1", "DP-2"] + [f"GEO-{i}" for i in range(1, 10)]
                + [f"LR-{i}" for i in range(1, 8)] + [f"SE-{i}" for i in range(1, 4)]
                + [f"FO-{i}" for i in range(1, 4)] + [f"X-{i}" for i in range(1, 4)])  # CLAIMS.md, in order


# -- catalog -------------------------------------------------------------------------------------

def test_catalog_has_every_claims_md_id_in_order():
    cat = load_catalog()
    assert list(cat.claims) == EXPECTED_IDS
    for cid, c in cat.claims.items():
        assert c.family == cid.split("-")[0] and c.family in cat.families
        assert c.claim and c.source
        assert c.beyond_sources == (c.family == "X")
        if not c.beyond_sources:  # every source claim cites documents from shared/seeds
            assert re.search(r"\b00[0-4]\b", c.source) and c.test


# -- documents and renderers ---------------------------------------------------------------------

def _png(path: Path, shade: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), (shade, 0, 0)).save(path)
    return path


def _doc(report_dir: Path) -> dict:
    rng = np.random.default_rng(0)
    up = stats.trend_test(LEVELS, np.log2(LEVELS) * rng.lognormal(0, 0.1, LEVELS.size), n_boot=300, n_perm=999)
    down = stats.trend_test(LEVELS, 12 - np.log2(LEVELS) * rng.lognormal(0, 0.1, LEVELS.size), n_boot=300, n_perm=999)
    figs = [_png(report_dir / "figures" / f"GEO-6-{k}.png", 40 * k).relative_to(report_dir).as_posix() for k in (1, 2)]
    results = [
        ClaimResult.from_test("GEO-6", up, label="sharpness", params="mnist1d-mlp", verdict="supported",
                              test_verdict="supported", test_alpha=0.025, figures=figs, seeds=[0, 1, 2, 3, 4],
                              caveats=["<script>alert(1)</script> stays text"],
                              tables=[{"title": "per batch size", "columns": ["bs", "mean"],
                                       "rows": [[16, 1.0], [1024, 2.5]]}]),
        ClaimResult.from_test("BS-3", down, label="epoch time", verdict="refuted", test_verdict="refuted",
                              test_alpha=0.025),
    ]
    env = {"timestamp": "2026-01-01T00:00:00+00:00", "profile": "smoke", "device": "cpu", "alpha": 0.05}
    return build_doc(results, load_catalog().to_dict(), env)


def test_doc_verdicts_follow_holm(tmp_path):
    doc = _doc(tmp_path)
    by_id = {r["id"]: r for r in doc["results"]}
    assert doc["holm_m"] == 2
    assert by_id["GEO-6"]["verdict"] == "supported" and by_id["BS-3"]["verdict"] == "refuted"
    ps = [by_id["GEO-6"]["p_value"], by_id["BS-3"]["p_value"]]
    assert [by_id["GEO-6"]["p_adjusted"], by_id["BS-3"]["p_adjusted"]] == pytest.approx(stats.holm(ps).tolist())


def test_holm_upgrade_is_written_into_the_row():
    test = stats.TestResult("m", "s", 1.0, 0.02, "ratio", 2.0, 1.5, 3.0, 0.95, 1.0, "increasing", (5, 5))
    failed_at_test_time = ClaimResult.from_test("BS-1", test, verdict="inconclusive", test_verdict="inconclusive",
                                                test_alpha=0.0125)
    no_p = ClaimResult("DP-1", "supported", measured_text="max |dw| 1e-7")
    final = apply_holm([failed_at_test_time, no_p])
    assert final[0].p_adjusted == pytest.approx(0.02) and final[0].verdict == "supported"
    assert "Holm" in final[0].verdict_note and "inconclusive" in final[0].verdict_note
    assert final[1] == no_p  # results without a p-value are outside the Holm family


def test_html_is_self_contained(tmp_path):
    doc = _doc(tmp_path)
    page = render_html(doc, tmp_path)
    summary = page.split("<h2>What holds</h2>")[1].split("</table>")[0]
    assert summary.count("<tr") == 1 + len(EXPECTED_IDS)  # header + one row per catalog claim here
    assert summary.count(">not run</td>") == len(EXPECTED_IDS) - 2
    assert 'class="v supported">supported<' in summary and 'class="v refuted">refuted<' in summary
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert [base64.b64decode(i) for i in images] == [(tmp_path / f).read_bytes() for f in doc["results"][0]["figures"]]
    # nothing outside the page: inline images, links only to its own sections
    assert not re.search(r"(src|href)=\"(?!data:|#)", page) and "http" not in page
    assert "<script>" not in page and "&lt;script&gt;" in page


def test_markdown_summary_rows(tmp_path):
    text = render_markdown(_doc(tmp_path))
    summary = text.split("## What holds")[1].split("\n## ")[0]
    rows = [line for line in summary.splitlines() if re.match(r"\| [A-Z]+-\d", line)]
    assert [r.split(" | ")[0][2:] for r in rows] == EXPECTED_IDS
    assert sum(r.split(" | ")[2] == "not run" for r in rows) == len(EXPECTED_IDS) - 2
    assert "## GEO-6\\[mnist1d-mlp\\]: supported" in text and "](figures/GEO-6-1.png)" in text
    assert "| 16 | 1.0 |" in text  # the result's own table


def test_json_round_trip_and_rerender(tmp_path):
    doc = _doc(tmp_path)
    keep = _png(tmp_path / "figures" / "other.png", 7)
    (tmp_path / "notes.txt").write_text("mine")
    paths = write_reports(doc, tmp_path)
    assert [p.name for p in paths] == ["claims.json", "claims.md", "claims.html"]
    assert load_doc(tmp_path / "claims.json") == json.loads(json.dumps(doc))
    r = ClaimResult.from_dict(doc["results"][0])
    assert ClaimResult.from_dict(json.loads(r.to_json())) == r
    html_before = (tmp_path / "claims.html").read_text()
    (tmp_path / "claims.html").unlink()
    rerender(tmp_path)
    assert (tmp_path / "claims.html").read_text() == html_before
    assert keep.exists() and (tmp_path / "notes.txt").read_text() == "mine"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    # shared like any file the user's umask allows, not private as a temporary file is made
    umask = os.umask(0)
    os.umask(umask)
    assert all(p.stat().st_mode & 0o777 == 0o666 & ~umask for p in paths)


def test_nan_evidence_serializes_as_null():
    test = stats.TestResult("m", "s", float("nan"), 1.0, "ratio", 1.0, float("nan"), float("nan"), 0.95, 1.0,
                            "increasing", (3, 3))
    d = json.loads(ClaimResult.from_test("BS-1", test).to_json())
    assert d["ci"] == [None, None] and d["statistic"]["value"] is None
    assert ClaimResult.from_dict(d).judge() is stats.Verdict.INCONCLUSIVE


# -- the plugin, end to end ----------------------------------------------------------------------

CLAIM_TESTS = '''
import numpy as np, pytest
from PIL import Image
from lossscape import stats

LEVELS = np.repeat([16, 64, 256, 1024], 5)

@pytest.mark.claim("BS-1")
def test_planted(claim):
    """BS-1 planted.

    Scientific parameter: batch size. Stop rule: none.
    """
    values = np.log2(LEVELS) * (1 + 0.05 * np.sin(np.arange(LEVELS.size)))
    Image.new("RGB", (8, 8)).save(claim.figure_path("curve.png"))
    claim.check(stats.trend_test(LEVELS, values, n_boot=300), label="training loss", seeds=[0, 1, 2, 3, 4])

@pytest.mark.claim("BS-2")
@pytest.mark.parametrize("setting", ["tiny"])
def test_null(claim, setting):
    values = 1 + 0.1 * np.cos(2.1 * np.arange(LEVELS.size))
    claim.check(stats.trend_test(LEVELS, values, n_boot=300), label="min val loss")

def test_not_a_claim():
    pass
'''


@pytest.fixture
def claims_dir(pytester):
    pytester.makeconftest('pytest_plugins = ["lossscape.report.plugin"]\n')
    pytester.makepyfile(test_claims=CLAIM_TESTS)
    return pytester


def _results(pytester) -> dict:
    doc = json.loads((pytester.path / "reports" / "claims.json").read_text())
    return {r["id"]: r for r in doc["results"]}


def test_plugin_fails_unsupported_claims_with_their_numbers(claims_dir):
    run = claims_dir.runpytest(*INNER, "--strict-markers")
    run.assert_outcomes(passed=2, failed=1)
    run.stdout.fnmatch_lines(["*BS-2[[]tiny[]]: inconclusive -- min val loss ratio * [[]*, *[]]*p = *alpha/m = 0.025*"])
    run.stdout.fnmatch_lines(["*lossscape claims (Holm over 2 p-values)*", "BS-1  supported",
                                "    training loss ratio *"])
    results = _results(claims_dir)
    assert results["BS-1"]["outcome"] == "passed" and results["BS-2"]["outcome"] == "failed"


def test_report_only_records_both_without_failing(claims_dir):
    claims_dir.runpytest(*INNER, "--report-only").assert_outcomes(passed=3)
    results = _results(claims_dir)
    assert set(results) == {"BS-1", "BS-2"}
    assert results["BS-1"]["verdict"] == "supported" and results["BS-2"]["verdict"] != "supported"
    assert results["BS-2"]["params"] == "tiny" and results["BS-1"]["figures"] == ["figures/BS-1-curve.png"]
    assert [results[k]["p_adjusted"] for k in ("BS-1", "BS-2")] == pytest.approx(
        stats.holm([results[k]["p_value"] for k in ("BS-1", "BS-2")]).tolist())
    assert results["BS-1"]["test_alpha"] == pytest.approx(0.025)  # alpha / m, m = 2 claim tests
    assert results["BS-1"]["reported"] == load_catalog().claims["BS-1"].reported
    html = (claims_dir.path / "reports" / "claims.html").read_text()
    # the result's figure and the overview
    assert html.count("data:image/png;base64,") == 2 and html.count(">not run</td>") == len(EXPECTED_IDS) - 2
    # the test's docstring after its first paragraph: the design stated before the data
    assert results["BS-1"]["preregistration"] == "Scientific parameter: batch size. Stop rule: none."


def test_k_selects_a_claim_by_its_id(claims_dir):
    claims_dir.runpytest(*INNER, "--report-only", "-k", "BS-2").assert_outcomes(passed=1, deselected=2)
    assert set(_results(claims_dir)) == {"BS-2"}


@pytest.mark.slow  # two workers each import torch (through lossscape/__init__)
def test_results_survive_xdist(claims_dir, monkeypatch):
    pytest.importorskip("xdist")
    root = str(Path(lossscape.__file__).resolve().parents[1])  # workers start in the pytester dir
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]))
    claims_dir.runpytest(*INNER, "--report-only", "-n", "2").assert_outcomes(passed=3)
    results = _results(claims_dir)
    assert set(results) == {"BS-1", "BS-2"} and results["BS-1"]["test_alpha"] == pytest.approx(0.025)


def test_direct_crashed_skipped_and_unchecked_claims_are_reported(pytester):
    pytester.makeconftest('pytest_plugins = ["lossscape.report.plugin"]\n')
    pytester.makepyfile(test_bad='''
import pytest
from lossscape.stats import Verdict

@pytest.mark.claim("DP-1")
def test_direct(claim):
    claim.check(Verdict.SUPPORTED, measured_text="max |w_ddp - w_single| 2e-7 <= 1e-5")
    with pytest.raises(RuntimeError, match="already called"):
        claim.check(Verdict.SUPPORTED)

@pytest.mark.claim("GEO-1")
def test_crash(claim):
    raise RuntimeError("bug in the claim test")

@pytest.mark.claim("GEO-2")
@pytest.mark.skip(reason="needs CUDA")
def test_skipped(claim):
    pass

@pytest.mark.claim("GEO-3")
def test_forgot(claim):
    pass

@pytest.mark.claim("GEO-4")
def test_skips_in_its_body(claim):
    pytest.skip("no measured speedup on this machine")
''')
    run = pytester.runpytest(*INNER, "--report-only")
    # a skip inside the body is a skip, not "ended without calling claim.check()"
    run.assert_outcomes(failed=1, skipped=2, passed=2, errors=1)
    results = _results(pytester)
    assert results["DP-1"]["verdict"] == "supported" and results["DP-1"]["p_adjusted"] is None
    assert results["GEO-1"]["verdict"] == "error" and "bug in the claim test" in results["GEO-1"]["measured_text"]
    assert results["GEO-2"]["verdict"] == "skipped" and results["GEO-2"]["measured_text"] == "needs CUDA"
    assert results["GEO-3"]["verdict"] == "error" and "claim.check()" in results["GEO-3"]["measured_text"]
    assert results["GEO-4"]["verdict"] == "skipped" and "no measured speedup" in results["GEO-4"]["measured_text"]


def test_unknown_id_is_a_usage_error_and_plain_runs_write_nothing(pytester):
    pytester.makeconftest('pytest_plugins = ["lossscape.report.plugin"]\n')
    pytester.makepyfile(test_typo='import pytest\n\n@pytest.mark.claim("BS-99")\ndef test_x(claim):\n    pass\n')
    run = pytester.runpytest(*INNER)
    assert run.ret == pytest.ExitCode.USAGE_ERROR
    run.stderr.fnmatch_lines(["*unknown ID*BS-99*"])
    pytester.makepyfile(test_typo="def test_plain():\n    pass\n")
    pytester.runpytest(*INNER).assert_outcomes(passed=1)
    assert not (pytester.path / "reports").exists()


# -- a report writer that stays in its folder (issue 10) ------------------------------------------

def _secret_png(path: Path) -> bytes:
    """A file outside the report folder that even looks like a PNG: only its place may keep it out."""
    data = b"\x89PNG\r\n\x1a\n" + b"SECRET-" + path.name.encode()
    path.write_bytes(data)
    return data


def test_figures_outside_the_report_folder_are_never_inlined_D20(tmp_path, capsys):
    from lossscape.cli import main
    reports = tmp_path / "reports"
    doc = _doc(reports)
    secrets = [_secret_png(tmp_path / "x"), _secret_png(tmp_path / "abs.png"), _secret_png(tmp_path / "target.png")]
    (reports / "figures" / "link.png").symlink_to(tmp_path / "target.png")
    (reports / "figures" / "up").symlink_to(tmp_path)  # a folder link: figures/up/x leads out too
    outside = ["../x", str(tmp_path / "abs.png"), "/etc/hostname", "/proc/self/environ", "figures/link.png",
               "figures/up/x", "figures/../../x"]
    doc["results"][0]["figures"] += outside
    (reports / "claims.json").write_text(json.dumps(doc))
    assert main(["report", "--report-dir", str(reports)]) == 0
    page = (reports / "claims.html").read_text()
    inlined = [base64.b64decode(i) for i in re.findall(r'src="data:image/png;base64,([^"]+)"', page)]
    inside = ["figures/overview.png", *doc["results"][0]["figures"][:2]]  # the overview and the two inside
    assert inlined == [(reports / f).read_bytes() for f in inside]
    assert not any(s in i for s in secrets for i in inlined)
    assert page.count("figure outside the report folder, not shown") == len(outside)
    md = (reports / "claims.md").read_text()
    links = re.findall(r"!\[[^\n]*?\]\(([^)\s]+)\)", md)
    assert links == inside
    assert md.count("figure outside the report folder, not linked") == len(outside)


def test_a_file_inside_the_folder_that_is_not_a_png_is_not_inlined_D20(tmp_path):
    doc = _doc(tmp_path)
    (tmp_path / "notes.txt").write_text("private notes")
    doc["results"][0]["figures"] = ["notes.txt"]
    page = render_html(doc, tmp_path)
    assert "data:image" not in page and "figure is not a PNG image, not shown: notes.txt" in page


def _claims_json_variants(tmp_path: Path) -> dict:
    good = json.dumps(_doc(tmp_path), indent=1)
    wrong_field = json.loads(good)
    wrong_field["results"][0]["p_value"] = "0.01"
    wrong_table = json.loads(good)
    wrong_table["results"][0]["tables"][0]["rows"] = "16, 1.0"
    return {"empty": "", "blank": "\n  \n", "truncated": good[: len(good) // 2], "list": "[]",
            "wrong schema": json.dumps({"schema": 99, "results": []}),
            "schema without results": json.dumps({"schema": 1}),
            "wrong field type": json.dumps(wrong_field), "table rows not a list": json.dumps(wrong_table),
            "not UTF-8": b"\xff\xfe{\x00", "deeply nested": "[" * 100_000}


@pytest.mark.parametrize("variant", ["empty", "blank", "truncated", "list", "wrong schema", "schema without results",
                                     "wrong field type", "table rows not a list", "not UTF-8", "deeply nested",
                                     "directory"])
def test_report_input_errors_are_one_line_exit_2_D2(tmp_path, capsys, variant):
    from lossscape.cli import main
    reports = tmp_path / "reports"
    reports.mkdir()
    if variant == "directory":
        (reports / "claims.json").mkdir()
    else:
        content = _claims_json_variants(tmp_path)[variant]
        path = reports / "claims.json"
        path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content)
    assert main(["report", "--report-dir", str(reports)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.splitlines()) == 1 and err.startswith("lossscape report: error: ")
    assert "claims.json" in err and "Traceback" not in err
    assert not (reports / "claims.html").exists()


def test_report_into_a_read_only_folder_is_one_line_exit_2_D2(tmp_path, capsys, monkeypatch):
    from lossscape.cli import main
    from lossscape.report import render
    write_reports(_doc(tmp_path), tmp_path)

    def refused(*args, **kwargs):  # what the OS answers in a read-only folder (chmod does not stop root)
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(render.tempfile, "mkstemp", refused)
    assert main(["report", "--report-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err == f"lossscape report: error: cannot write the report into {tmp_path}: Permission denied\n"


HOSTILE = 'a*b*c _u_ [x](http://e.vil) ![i](/etc/hostname) <img src=x onerror=alert(1)> `tick` ~~del~~ $m$ | \\* # &amp;'


def test_markdown_shows_every_text_literally_D19(tmp_path):
    from markdown_it import MarkdownIt
    from html import escape
    doc = _doc(tmp_path)
    fig = _png(tmp_path / "figures" / "my fig (1)_[x].png", 9).relative_to(tmp_path).as_posix()
    r = doc["results"][0]
    r.update(params=HOSTILE, figures=[fig], caveats=[HOSTILE], tables=[{"title": HOSTILE, "columns": [HOSTILE],
                                                                       "rows": [[HOSTILE]]}])
    doc["environment"].update(command=f"pytest {HOSTILE}", platform="Linux\n# injected heading\n<b>x</b>")
    page = MarkdownIt("commonmark").enable(["table", "strikethrough"]).render(render_markdown(doc))
    literal = escape(HOSTILE, quote=False).replace('"', "&quot;")  # how markdown-it writes plain text
    # command, heading, caveat, table title, column, cell, figure alt text
    assert page.count(literal) == 7
    assert f"<h2>GEO-6[{literal}]: supported</h2>" in page
    assert f"<li>command: pytest {literal}</li>" in page
    assert f"<p><strong>{literal}</strong></p>" in page
    assert "injected heading" in page and "<h1>injected" not in page
    assert not re.search(r"<(em|a|code|s|del|b|img src=\"?x)\b", page)
    srcs = re.findall(r'<img src="([^"]+)"', page)
    from urllib.parse import unquote
    assert [unquote(s) for s in srcs] == [fig]


def test_interrupted_run_keeps_the_complete_report_D14(claims_dir, monkeypatch):
    from lossscape.report.render import FILES, INTERRUPTED_FILES
    root = str(Path(lossscape.__file__).resolve().parents[1])  # the subprocess starts in the pytester dir
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]))
    claims_dir.runpytest_subprocess(*INNER, "--report-only").assert_outcomes(passed=3)
    reports = claims_dir.path / "reports"
    complete = {name: (reports / name).read_bytes() for name in FILES}
    claims_dir.makepyfile(test_zz_interrupt='''
import pytest

@pytest.mark.claim("BS-3")
def test_cut_off(claim):
    raise KeyboardInterrupt  # what Ctrl-C raises in the middle of a claim test
''')
    run = claims_dir.runpytest_subprocess(*INNER, "--report-only")
    assert run.ret == pytest.ExitCode.INTERRUPTED
    assert {name: (reports / name).read_bytes() for name in FILES} == complete
    doc = json.loads((reports / INTERRUPTED_FILES[0]).read_text())
    assert doc["interrupted"] == "Ctrl-C or pytest.exit()"
    rows = {r["id"]: r for r in doc["results"]}
    assert rows["BS-1"]["verdict"] == "supported" and rows["BS-1"]["outcome"] == "passed"  # ran before Ctrl-C
    assert rows["BS-3"]["outcome"] == "interrupted" and rows["BS-3"]["verdict"] == "interrupted"
    md = (reports / INTERRUPTED_FILES[1]).read_text()
    assert md.index("INTERRUPTED: this report is partial") < md.index("- timestamp")
    page = (reports / INTERRUPTED_FILES[2]).read_text()
    assert page.index('<p class="banner">INTERRUPTED: this report is partial') < page.index("<h2>What holds</h2>")
    run.stdout.fnmatch_lines(["*partial report, written apart from the complete one*",
                              f"report: *{INTERRUPTED_FILES[2]}"])


def test_setup_only_runs_no_claim_test_and_writes_no_report_D14(claims_dir):
    claims_dir.runpytest(*INNER, "--setup-plan")
    assert not (claims_dir.path / "reports").exists()


def test_a_run_stopped_by_maxfail_is_a_partial_report_D14(claims_dir):
    run = claims_dir.runpytest(*INNER, "-x")  # BS-2 fails, so -x stops the session
    assert run.ret == pytest.ExitCode.TESTS_FAILED
    reports = claims_dir.path / "reports"
    assert not (reports / "claims.json").exists()
    doc = json.loads((reports / "claims.interrupted.json").read_text())
    assert doc["interrupted"] == "stopping after 1 failures"


def test_plugin_reports_an_unwritable_report_folder_in_one_line_D2(claims_dir):
    (claims_dir.path / "blocked").write_text("a file where the report folder should be")
    run = claims_dir.runpytest(*INNER, "--report-only", "--report-dir", "blocked/reports", "-k", "BS-2")
    run.assert_outcomes(passed=1, deselected=2)  # the verdict stands; only the files could not be written
    run.stdout.fnmatch_lines(["report not written: cannot write the report into */blocked/reports: *"])
    assert "Traceback" not in run.stdout.str() and "INTERNALERROR" not in run.stdout.str()


def _paths(x, prefix=()):
    """Every key path into a JSON value, the first element of each list standing for the rest."""
    yield prefix
    items = x.items() if isinstance(x, dict) else enumerate(x[:1]) if isinstance(x, list) else ()
    for k, v in items:
        yield from _paths(v, prefix + (k,))


def test_any_field_of_the_wrong_type_is_rendered_or_refused_in_one_line_D2(tmp_path):
    from lossscape.report.schema import ReportError, check_doc
    doc = json.loads(json.dumps(_doc(tmp_path)))
    refused = 0
    for path in list(_paths(doc))[1:]:
        for value in (None, "s", [1], {"a": 1}, True):
            changed = json.loads(json.dumps(doc))
            parent = changed
            for k in path[:-1]:
                parent = parent[k]
            parent[path[-1]] = value
            try:
                check_doc(changed)
            except ReportError as exc:
                assert "\n" not in str(exc)
                refused += 1
                continue
            render_markdown(changed, tmp_path)  # must not raise
            render_html(changed, tmp_path)
    assert refused > 100  # the check is not vacuous: most changes break a field the renderers read
