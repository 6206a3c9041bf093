"""The verdict rules as the report applies them: refutation under Holm, `verified` checks outside
Holm, what an inconclusive result says, and designs refused before anything trains."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from lossscape import stats
from lossscape.report import ClaimResult
from lossscape.report.result import apply_holm, build_doc

ROOT = Path(__file__).resolve().parent.parent


def _result(p, p_opp, effect, cid="BS-1"):
    lo, hi = (effect * 0.9, effect * 1.1)
    return ClaimResult(id=cid, verdict="inconclusive", effect_name="ratio", effect=effect, ci=[lo, hi], ci_level=0.95,
                       p_value=p, p_opposite=p_opp, null_effect=1.0, direction="increasing")


def test_refuted_needs_the_holm_adjusted_opposite_test():
    """An opposite p of 0.02 refutes alone (m = 1) but not among four results (Holm: 0.08); a CI on
    the wrong side is never enough."""
    alone = apply_holm([_result(0.98, 0.02, 0.5)])
    assert alone[0].verdict == "refuted" and alone[0].p_opposite_adjusted == 0.02
    among = apply_holm([_result(0.98, 0.02, 0.5)] + [_result(0.5, 0.5, 1.0) for _ in range(3)])
    assert among[0].verdict == "inconclusive" and among[0].p_opposite_adjusted == 0.08
    assert among[0].lean() == "refuted"
    assert apply_holm([_result(0.98, None, 0.5)])[0].verdict == "inconclusive"


def test_verified_checks_stay_outside_holm():
    check = ClaimResult(id="GEO-4", verdict=stats.Verdict.VERIFIED.value, measured_text="bound holds")
    doc = build_doc([_result(0.001, 0.999, 2.0), check], {}, {})
    assert doc["holm_m"] == 1
    assert [r["verdict"] for r in doc["results"]] == ["supported", "verified"]


def test_inconclusive_result_says_what_its_n_could_detect():
    rng = np.random.default_rng(3)
    test = stats.threshold_test(rng.lognormal(0.05, 0.2, 12), 1.0, "greater", scale="log")
    r = ClaimResult.from_test("FO-1", test, mde=test.mde(0.001))
    r = apply_holm([r])[0]
    text = r.power_text()
    assert r.verdict == "inconclusive" and "detects" in text and f"{r.mde:.3g}" in text
    floor = stats.threshold_test(rng.lognormal(0.05, 0.2, 5), 1.0, "greater", scale="log")
    r5 = ClaimResult.from_test("FO-1", floor, mde=floor.mde(0.001), test_alpha=0.001)
    assert "no ratio could reach" in r5.power_text() or "could reach" in r5.power_text()


def test_underpowered_design_is_refused_before_anything_trains(tmp_path):
    """GEO-5 alone (m = 1, alpha 0.05) with 3 seeds: 3 sign flips cannot go below 1/8, so the test is
    skipped at collection with the grid and the seeds it needs, and nothing is trained."""
    cache = tmp_path / "cache"
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "claims", "-k", "GEO-5", "--seeds", "3", "-rs", "-q", "-p", "no:cacheprovider",
         "--cache-dir", str(cache), "--report-dir", str(tmp_path / "reports")],
        cwd=ROOT, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    assert "grid `minimizer_pairs` of profile cpu has 3 seeds" in out.stdout, out.stdout + out.stderr
    assert "it needs 5 seeds" in out.stdout
    assert not cache.exists() or not any(cache.iterdir())
