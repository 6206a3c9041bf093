"""claims.html as a person sees it: headless Chromium loads it at 1280 px and reports what it found.

A probe script is added to a copy of the page: it records page errors (a script error, an image
that fails) and, once the page has loaded, whether every image decoded and how wide the document
is. Chromium prints the page's console to stderr (`--enable-logging=stderr`), and the report has
no scripts of its own, so any console line is a defect. Skipped when `chromium` is not installed
(`.ci/run` installs it).
"""

import json
import re
import shutil
import subprocess

import numpy as np
import pytest

from lossscape import stats
from lossscape.report import ClaimResult, build_doc, load_catalog, write_reports

CHROMIUM = shutil.which("chromium")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")

WIDTH = 1280
PROBE_HEAD = """<script>
window.__errors = [];
addEventListener("error", e => __errors.push(String(e.message || (e.target && e.target.src) || e)), true);
</script>"""
PROBE_BODY = """<script>
addEventListener("load", () => {
  const p = document.createElement("pre");
  p.id = "probe";
  p.textContent = JSON.stringify({errors: __errors, images: [...document.images].map(i => i.complete && i.naturalWidth > 0),
                                  scrollWidth: document.documentElement.scrollWidth, innerWidth: innerWidth});
  document.body.appendChild(p);
});
</script>"""


def see(page: str, tmp_path) -> tuple[dict, list[str]]:
    """Load `page` in headless Chromium at WIDTH px: (the probe's findings, console lines)."""
    probed = tmp_path / "probed.html"
    probed.write_text(page.replace("<head>", "<head>" + PROBE_HEAD, 1).replace("</body>", PROBE_BODY + "</body>"))
    run = subprocess.run([CHROMIUM, "--headless", "--disable-gpu", "--no-sandbox", "--hide-scrollbars",
                          f"--window-size={WIDTH},2000", f"--user-data-dir={tmp_path / 'profile'}",
                          "--enable-logging=stderr", "--v=0", "--dump-dom", probed.as_uri()],
                         capture_output=True, text=True, timeout=180)
    found = re.search(r'<pre id="probe">(.*?)</pre>', run.stdout, re.S)
    assert found, f"chromium gave no probe result (exit {run.returncode}): {run.stderr[-2000:]}"
    console = [line for line in run.stderr.splitlines() if ":CONSOLE" in line]
    return json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&")), console


def _doc(report_dir) -> dict:
    """A report with what makes pages wide: several results per claim, a check, long unbroken
    texts, configurations that differ in many fields, a wide table, figures."""
    from lossscape.report import figures
    rng = np.random.default_rng(1)
    levels = np.repeat([16, 64, 256, 1024], 3)
    up = stats.trend_test(levels, np.log2(levels) * rng.lognormal(0, 0.3, levels.size), n_boot=200, n_perm=199)
    flat = stats.trend_test(levels, rng.lognormal(0, 0.3, levels.size), n_boot=200, n_perm=199)
    fig = figures.metric_vs_batch(report_dir / "figures" / "GEO-6-a.png",
                                  {b: rng.lognormal(k, 0.2, 3) for k, b in enumerate([16, 64, 256, 1024])},
                                  ylabel="sharpness").relative_to(report_dir).as_posix()
    configs = [json.dumps({"batch_size": b, "lr": 0.1, "dataset": "mnist1d", "model": "mlp", "epochs": 30 + k,
                           "note": "x" * 200}) for k, b in enumerate([16, 64, 256, 1024])]
    long_word = "a" * 400
    results = [
        ClaimResult.from_test("GEO-6", up, label="sharpness", params=f"mnist1d-mlp-{eps}", figures=[fig],
                              configs=configs, caveats=[long_word], preregistration="Scientific parameter: batch "
                              "size. Fixed: LR. Stop rule: target training loss.",
                              tables=[{"title": "wide", "columns": [f"column {i}" for i in range(30)],
                                       "rows": [[long_word] * 30]}])
        for eps in ("0.001", "0.0005")
    ] + [ClaimResult.from_test("BS-1", flat, label="training loss", configs=configs),
         ClaimResult("SE-1", "verified", params="schedule", measured_text="max |lr - formula| = 0")]
    return build_doc(results, load_catalog().to_dict(), {"command": "pytest " + long_word, "alpha": 0.05})


def test_claims_html_in_a_browser_has_no_errors_decodes_every_figure_and_fits_1280px(tmp_path):
    reports = tmp_path / "reports"
    write_reports(_doc(reports), reports)
    found, console = see((reports / "claims.html").read_text(), tmp_path)
    assert console == [] and found["errors"] == []
    assert len(found["images"]) == 3 and all(found["images"])  # the overview and the figure of each GEO-6 result
    assert found["innerWidth"] == WIDTH and found["scrollWidth"] <= WIDTH


def test_the_browser_check_sees_errors_broken_figures_and_overflow(tmp_path):
    """The probe is not blind: a page with each defect is caught."""
    page = ('<!DOCTYPE html><html><head></head><body><img src="data:image/png;base64,AAAA">'
            '<div style="width:3000px">wide</div><script>console.error("boom"); missing();</script></body></html>')
    found, console = see(page, tmp_path)
    assert any('"boom"' in line for line in console) and any("missing" in e for e in found["errors"])
    assert found["images"] == [False] and found["scrollWidth"] > WIDTH
