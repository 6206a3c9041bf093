"""What a reader sees first: claims grouped by ID, checks apart, the forest plot's rows, the
preregistration and configurations as parts and tables, the terminal summary, and --compare."""

import json
import math

import numpy as np
import pytest

from lossscape import stats
from lossscape.report import ClaimResult, build_doc, load_catalog, render_html, render_markdown
from lossscape.report.compare import comparison, write_comparison
from lossscape.report.controller import TERMINAL_WIDTH, summary_lines
from lossscape.report.design import config_table, preregistration_parts
from lossscape.report.overview import forest_row

LEVELS = np.repeat([16, 64, 256, 1024], 5)


def _trend(slope: float, seed=0, noise=0.05):
    rng = np.random.default_rng(seed)
    return stats.trend_test(LEVELS, np.exp(slope * np.log2(LEVELS)) * rng.lognormal(0, noise, LEVELS.size),
                            n_boot=300, n_perm=999)


def _doc(geo6_slope=0.3, with_x1=False, noise=0.05) -> dict:
    tests = [_trend(geo6_slope, k, noise) for k in range(2)]
    results = [ClaimResult.from_test("GEO-6", t, label="sharpness", params=p, test_alpha=0.01, mde=t.mde(0.01))
               for t, p in zip(tests, ["full", "subspace"])]
    results += [ClaimResult("SE-1", "verified", params="schedule", measured_text="max |lr - formula| = 0"),
                ClaimResult("SE-1", "verified", params="restarts", measured_text="restarts at 20, 40"),
                ClaimResult.from_test("SE-1", _trend(0.0), label="loss", params="loss", test_alpha=0.01)]
    if with_x1:
        results.append(ClaimResult.from_test("X-1", _trend(0.2), label="steps", test_alpha=0.01))
    return build_doc(results, load_catalog().to_dict(), {"alpha": 0.05, "profile": "smoke"})


# -- the first screen ----------------------------------------------------------------------------

def test_a_claim_with_several_results_is_one_row_with_its_results_beneath():
    md = render_markdown(_doc())
    summary = md.split("## What holds")[1].split("\n## ")[0]
    claim = load_catalog().claims["GEO-6"]
    assert summary.count(claim.claim.split(" (")[0]) == 1  # the claim's text once, not per result
    lines = summary.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| GEO-6 | "))
    head, *subs = lines[start:start + 3]
    assert "| 2 supported |" in head and lines[start + 3].startswith("| GEO-7 | ")
    assert [line.split(" | ")[1] for line in subs] == ["\u21b3 full", "\u21b3 subspace"]


def test_verified_checks_are_apart_from_the_holm_judged_claims():
    md = render_markdown(_doc())
    summary, checks = md.split("## What holds")[1].split("## Checks")
    checks = checks.split("\n## ")[0]
    se1 = [line for line in summary.splitlines() if line.startswith("| SE-1 |")]
    assert len(se1) == 1 and "verified" not in se1[0] and "loss ratio" in se1[0]  # the one Holm-judged result
    assert "| SE-1\\[schedule\\] |" in checks and "| verified |" in checks
    assert checks.count("Cyclic cosine annealing") == 1  # the claim's text once, as in the claims table
    html = render_html(_doc(), "/nonexistent")
    assert html.index("<h2>Checks") > html.index("<h2>What holds")


def test_an_inconclusive_result_shows_its_lean_and_what_it_could_detect():
    doc = _doc(geo6_slope=0.02, noise=0.6)
    r = ClaimResult.from_dict(doc["results"][0])
    assert r.verdict == "inconclusive" and r.lean()
    md = render_markdown(doc)
    assert f"inconclusive (leans {r.lean()})" in md and "**Power**: this n detects" in md


def test_the_floor_text_survives_claims_json():
    """An infinite MDE (p floor >= alpha/m) is stored as null; read back, the power line still says why."""
    few = stats.trend_test(np.repeat([16, 1024], 2), [1.0, 1.1, 2.0, 2.1], n_boot=100, n_perm=99)
    r = ClaimResult.from_test("BS-1", few, mde=few.mde(0.001), test_alpha=0.001)
    assert math.isinf(r.mde) and "could reach p <" in r.power_text()
    back = ClaimResult.from_dict(json.loads(r.to_json()))
    assert back.mde is None and back.power_text() == r.power_text()


def test_forest_rows_are_relative_to_the_claimed_threshold():
    doc = _doc()
    ratio = forest_row(ClaimResult.from_dict(doc["results"][0]))
    r = ClaimResult.from_dict(doc["results"][0])
    assert ratio["log"] and ratio["x"] == pytest.approx(r.effect / r.null_effect)
    assert ratio["region"] == (1.0, math.inf) and ratio["low"] == pytest.approx(r.ci[0] / r.null_effect)
    diff = ClaimResult.from_test("SE-2", stats.two_group_test([1.0, 1.1, 1.2], [0.5, 0.6, 0.7], "greater",
                                                              effect="difference", n_boot=100, n_perm=99))
    row = forest_row(diff)
    assert not row["log"] and row["x"] == pytest.approx(diff.effect - diff.null_effect) and row["region"][0] == 0.0
    assert forest_row(ClaimResult.from_dict(doc["results"][2])) is None  # a verified check has no effect to draw


# -- a claim's section ---------------------------------------------------------------------------

def test_preregistration_is_split_into_its_labelled_parts():
    text = ("Source 003: MLP.\nScientific parameter: batch size. Tuned nuisance parameter: the LR, per\n"
            "batch size. Fixed: model, data. Stop rule: early stopping (grid `lr_grid`). Caveats: one setting.")
    assert preregistration_parts(text) == [
        ("Design", "Source 003: MLP."), ("Scientific parameter", "batch size."),
        ("Tuned nuisance parameter", "the LR, per batch size."), ("Fixed", "model, data."),
        ("Stop rule", "early stopping (grid `lr_grid`)."), ("Caveats", "one setting.")]
    assert preregistration_parts("") == []


def test_configurations_are_a_table_of_what_varies_and_a_line_of_what_is_fixed():
    configs = [json.dumps({"batch_size": b, "lr": 0.1, "epochs": e}) for b, e in ((16, 30), (256, 30), (16, 4))]
    fixed, columns, rows = config_table(configs + [configs[0]])  # a repeated configuration is one row
    assert fixed == [("lr", "0.1")] and columns == ["batch_size", "epochs"]
    assert rows == [["16", "30"], ["256", "30"], ["16", "4"]]
    assert config_table(["mnist1d-mlp bs 16"]) == ([], ["configuration"], [["mnist1d-mlp bs 16"]])
    doc = _doc()
    doc["results"][0]["configs"] = configs
    md, html = render_markdown(doc), render_html(doc, "/nonexistent")
    assert "- fixed: lr = 0.1" in md and "| batch\\_size | epochs |" in md and '{"batch_size"' not in md
    assert "<th>batch_size</th><th>epochs</th>" in html and "{&quot;batch_size" not in html


def test_markdown_prose_keeps_arrows_and_escapes_tags():
    doc = _doc()
    doc["results"][0]["caveats"] = ["bs 256 epoch 7.70 s -> 3.97 s; p < 0.05 & <b>x</b>; &amp; stays"]
    md = render_markdown(doc)
    assert "7.70 s -> 3.97 s; p \\< 0.05 & \\<b>x\\</b>; \\&amp; stays" in md and "&gt;" not in md


# -- the terminal --------------------------------------------------------------------------------

def test_terminal_summary_fits_100_columns():
    r = ClaimResult.from_dict(_doc(geo6_slope=0.02, noise=0.6)["results"][0])
    r.params = "mnist1d-mlp-0.0005-subspace100-with-a-long-parametrization-id"
    r.measured_text = "sharpness " * 30
    r.verdict_note = "Holm over this run's 47 p-values gives supported; " * 4
    lines = summary_lines(r)
    assert TERMINAL_WIDTH == 100 and max(map(len, lines)) <= 100 and len(lines) > 4
    assert lines[0].startswith(f"{r.label()}  inconclusive (leans ")
    assert all(line.startswith("    ") for line in lines[1:])


# -- --compare -----------------------------------------------------------------------------------

def test_comparison_names_verdict_changes_shifts_and_results_in_one_run_only():
    before, after = _doc(geo6_slope=0.3), _doc(geo6_slope=-0.3, with_x1=True)
    cmp = comparison(before, after)
    changed = {row[0]: row for row in cmp["changed"]}
    assert set(changed) == {"GEO-6[full]", "GEO-6[subspace]"}
    row = changed["GEO-6[full]"]
    assert row[1] == "supported" and row[2] == "refuted" and row[5].startswith("x") and "outside A's CI" in row[5]
    assert [r[0] for r in cmp["same"]] == ["SE-1[schedule]", "SE-1[restarts]", "SE-1[loss]"]
    assert cmp["only_a"] == [] and cmp["only_b"] == ["X-1"]


def test_compare_command_writes_md_and_html(tmp_path, capsys):
    from lossscape.cli import main
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(_doc(0.3)))
    b.write_text(json.dumps(_doc(-0.3, with_x1=True)))
    assert main(["report", "--compare", str(a), str(b), "--out", str(tmp_path / "cmp")]) == 0
    md = (tmp_path / "cmp" / "comparison.md").read_text()
    assert "verdict changes: 2; unchanged: 3; only in A: 0; only in B: 1" in md and "## Only in B\n\n- X-1" in md
    assert "<h2>Verdict changes</h2>" in (tmp_path / "cmp" / "comparison.html").read_text()
    assert capsys.readouterr().out.split() == [str(tmp_path / "cmp" / n) for n in ("comparison.md", "comparison.html")]


def test_a_run_from_before_the_calibrated_statistics_compares_with_one_after(tmp_path, capsys):
    """Schema 1 lacks only optional fields; the report itself still refuses to render it."""
    from lossscape.cli import main
    old = _doc()
    old["schema"] = 1
    for r in old["results"]:
        for key in ("p_opposite", "p_opposite_adjusted", "min_p", "mde", "preregistration"):
            r.pop(key)
    (tmp_path / "reports").mkdir()
    a, b = tmp_path / "reports" / "claims.json", tmp_path / "b.json"
    a.write_text(json.dumps(old))
    b.write_text(json.dumps(_doc()))
    assert main(["report", "--compare", str(a), str(b), "--out", str(tmp_path)]) == 0
    assert "verdict changes: 0; unchanged: 5" in (tmp_path / "comparison.md").read_text()
    assert main(["report", "--report-dir", str(tmp_path / "reports")]) == 2
    assert "schema 1; this lossscape reads schema 2" in capsys.readouterr().err


@pytest.mark.parametrize("bad", ["missing", "not json", "wrong schema"])
def test_compare_bad_input_is_one_line_exit_2(tmp_path, capsys, bad):
    from lossscape.cli import main
    good, other = tmp_path / "good.json", tmp_path / "other.json"
    good.write_text(json.dumps(_doc()))
    if bad != "missing":
        other.write_text("{" if bad == "not json" else json.dumps({"schema": 0, "results": []}))
    assert main(["report", "--compare", str(good), str(other), "--out", str(tmp_path / "cmp")]) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.splitlines()) == 1 and err.startswith(f"lossscape report: error: {other}")
    assert not (tmp_path / "cmp").exists()


def test_compare_refuses_an_unwritable_folder_in_one_line(tmp_path):
    good = tmp_path / "good.json"
    good.write_text(json.dumps(_doc()))
    (tmp_path / "file").write_text("")
    from lossscape.report.schema import ReportError
    with pytest.raises(ReportError, match="cannot write the comparison into"):
        write_comparison(good, good, tmp_path / "file" / "cmp")


def test_a_claims_text_cannot_open_a_quote_or_list_in_markdown():
    from markdown_it import MarkdownIt
    doc = _doc()
    geo6 = next(c for c in doc["catalog"]["claims"] if c["id"] == "GEO-6")
    geo6["claim"] = "> 1. quoted"
    page = MarkdownIt("commonmark").render(render_markdown(doc))
    assert "<blockquote>" not in page and "<ol>" not in page and "&gt; 1. quoted" in page
