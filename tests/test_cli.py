"""The `lossscape` command: tables, JSON, populations, one-line errors with exit status 2."""
import json
import subprocess
import sys

import pytest

from lossscape.cli import main

ARGS = ["run", "--dataset", "mnist1d", "--n-samples", "500", "--model", "mlp", "--width", "16",
        "--batch-size", "64", "--lr", "0.1", "--epochs", "2"]


def test_run_prints_a_table_and_summary(tmp_path, capsys):
    assert main(ARGS + ["--seed", "0", "--cache-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:3] == ["seed", "epoch", "train_loss"]
    assert [line.split()[1] for line in out[1:3]] == ["1", "2"]
    assert out[-1].startswith("seed 0: stopped (max_epochs) after 2 epochs")
    # a cached run prints the same table
    assert main(ARGS + ["--seed", "0", "--cache-dir", str(tmp_path)]) == 0
    assert capsys.readouterr().out.splitlines()[:3] == out[:3]


def test_json_population(tmp_path, capsys):
    assert main(ARGS + ["--seeds", "0-2", "--json", "--cache-dir", str(tmp_path)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [d["config"]["seed"] for d in data] == [0, 1, 2]
    assert len(data[0]["history"]) == 2 and data[0]["stop_reason"] == "max_epochs"


@pytest.mark.parametrize("bad, field", [
    (["--batch-size", "-4"], "batch_size"),
    (["--batch-size", "5000"], "batch_size"),
    (["--lr", "0"], "lr"),
    (["--model", "gpt"], "--model"),
    (["--seeds", "a-b"], "--seeds"),
    (["--stop", "early_stop"], "patience"),
])
def test_bad_arguments_one_line_exit_2_no_traceback(tmp_path, bad, field):
    proc = subprocess.run([sys.executable, "-m", "lossscape.cli"] + ARGS + bad + ["--cache-dir", str(tmp_path)],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and field in err[0] and "Traceback" not in proc.stderr


def test_report_without_results_is_a_clear_error(tmp_path, capsys):
    assert main(["report", "--report-dir", str(tmp_path)]) == 2
    assert "pytest claims" in capsys.readouterr().err


def test_public_api_names_survive_submodule_imports():
    import lossscape
    import lossscape.train  # noqa: F401  (binds the submodule on the package, as any import does)
    from lossscape import RunConfig, train, train_population
    assert callable(train) and callable(train_population) and RunConfig().batch_size == 64
    assert hasattr(lossscape.geometry, "keskar_sharpness")
