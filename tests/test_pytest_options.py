"""The claims suite's own pytest options (lossscape.harness.options): bad values are usage errors."""
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("value", ["0", "-2"])
def test_bad_seed_count_is_a_usage_error_not_an_internal_error_D21(value):
    proc = subprocess.run([sys.executable, "-m", "pytest", "claims", f"--seeds={value}", "--collect-only", "-q",
                           "-p", "no:cacheprovider"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == pytest.ExitCode.USAGE_ERROR
    assert "INTERNALERROR" not in proc.stdout + proc.stderr
    assert f"argument --seeds: got '{value}'; allowed: a positive number N (seeds 0..N-1)" in proc.stderr
