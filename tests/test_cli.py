"""The `lossscape` command: tables, JSON, populations, one-line errors with exit status 2."""
import json
import os
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
    assert out[2].split()[4:6] == ["-", "-"]  # validation is evaluated once training ends: in the summary
    assert "val_loss" in out[-1]
    # a cached run prints the same table
    assert main(ARGS + ["--seed", "0", "--cache-dir", str(tmp_path)]) == 0
    assert capsys.readouterr().out.splitlines() == out


def test_json_population(tmp_path, capsys):
    assert main(ARGS + ["--seeds", "0-2", "--json", "--cache-dir", str(tmp_path)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [d["config"]["seed"] for d in data] == [0, 1, 2]
    assert len(data[0]["history"]) == 2 and data[0]["stop_reason"] == "max_epochs"


@pytest.mark.parametrize("bad, field", [
    (["--batch-size", "-4"], "batch_size"),
    (["--batch-size", "5000"], "batch_size"),
    (["--lr", "0"], "lr"),
    (["--model", "gpt"], "model: got 'gpt'; allowed: mlp, conv1d"),  # a name or a user's "module:factory"
    (["--model", "nosuchmodule:net"], "module nosuchmodule cannot be imported"),
    (["--dataset", "lossscape.data:nothing"], "module lossscape.data has no attribute nothing"),
    (["--schedule", "cosine"], "--schedule: invalid choice"),
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


def mnist_files(folder, content):
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte"):
        (folder / name).write_bytes(content)


def unreadable_pets(folder):
    for name in ("cat.0.jpg", "dog.0.jpg"):
        (folder / name).write_bytes(b"not an image")


@pytest.mark.parametrize("args, make, words", [
    (["--dataset", "digits", "--n-samples", "5000"], None, "n_samples: got 5000; allowed: 10..1797 for digits"),
    (["--dataset", "mnist"], lambda d: mnist_files(d, b"\x1f\x8b\x08\x00"), "cannot decompress"),  # truncated gzip
    (["--dataset", "mnist"], lambda d: mnist_files(d, b"not gzip"), "cannot decompress"),
    (["--dataset", "cats_vs_dogs"], unreadable_pets, "none of the 2 images could be read"),
], ids=["digits too many", "truncated gzip", "not gzip", "cats_vs_dogs all unreadable"])
def test_data_errors_are_one_line_exit_2_D1(tmp_path, capsys, args, make, words):
    if make:
        make(tmp_path)
    assert main(["run"] + args + ["--data-dir", str(tmp_path), "--cache-dir", str(tmp_path / "cache")]) == 2
    captured = capsys.readouterr()
    err = captured.err.splitlines()
    assert captured.out == "" and len(err) == 1 and err[0].startswith("lossscape run: error: ") and words in err[0]


@pytest.mark.parametrize("bad, words", [
    (["--seed", "18446688733644"], "seed: got 18446688733644; allowed: an integer in 0..9223344366820"),
    (["--seeds", "0-18446688733644"], "argument --seeds: got '0-18446688733644'; allowed: seeds in 0..9223344366820"),
    (["--seeds", "0-99999999999"], "allowed: at most 1,000,000 seeds"),
    (["--decay-epochs", "a,b"], "argument --decay-epochs: got 'a,b'; allowed: comma-separated epochs like 10,20"),
], ids=["seed D3", "seeds D3", "seed count D4", "decay epochs D18"])
def test_seed_range_and_epoch_list_errors_name_the_option_D3_D4_D18(tmp_path, capsys, bad, words):
    args = ARGS + ["--schedule", "step"] if "--decay-epochs" in bad else ARGS
    with pytest.raises(SystemExit) as info:  # argparse's own errors exit; RunConfig's return 2
        raise SystemExit(main(args + bad + ["--cache-dir", str(tmp_path)]))
    err = capsys.readouterr().err.splitlines()
    assert info.value.code == 2 and len(err) == 1 and words in err[0]


@pytest.mark.parametrize("bad, words", [
    (["--width", "1000000"], "width: got 1000000; one mlp run needs"),
    (["--width", "1024", "--seeds", "0-100000"], "seeds: got 100001 seeds; they need"),
], ids=["width D23", "population D4"])
def test_width_or_population_beyond_memory_one_line_exit_2_D4_D23(tmp_path, capsys, bad, words):
    # --no-cache: the refusal is the trainer's; a cached population first looks up each of its seeds
    assert main([a for a in ARGS if a not in ("--width", "16")] + bad + ["--no-cache"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and words in err[0] and "GB by estimate" in err[0]


def test_json_is_valid_with_non_finite_values_as_null_D6(capsys):
    def refuse(constant):
        raise AssertionError(f"{constant} is not JSON")
    # the diverging run: its first epoch distance overflows to inf
    assert main(["run", "--dataset", "mnist1d", "--n-samples", "1000", "--model", "mlp", "--width", "32",
                 "--epochs", "3", "--lr", "1e4", "--no-cache", "--json"]) == 0
    out = json.loads(capsys.readouterr().out, parse_constant=refuse)
    assert out["stop_reason"] == "diverged"  # D5, through the command
    assert out["history"][0]["epoch_distance"] is None and out["history"][0]["train_loss"] > 1000


def test_closed_stdout_still_trains_and_caches_the_run_D22(tmp_path):
    from lossscape import RunConfig
    from lossscape.cache import RunStore
    read_end, write_end = os.pipe()
    os.close(read_end)  # as `| head` that has already left: every write fails with EPIPE
    try:
        proc = subprocess.run([sys.executable, "-m", "lossscape.cli"] + ARGS + ["--cache-dir", str(tmp_path)],
                              stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=300)
    finally:
        os.close(write_end)
    assert proc.returncode == 0 and proc.stderr == ""
    cfg = RunConfig(dataset="mnist1d", n_samples=500, model="mlp", width=16, batch_size=64, lr=0.1, epochs=2)
    assert RunStore(tmp_path).load(cfg).epochs_run == 2


def test_warnings_print_one_line_without_source_D25(tmp_path):
    from PIL import Image
    for i in range(5):
        Image.new("RGB", (8, 8), (200, 20, 20)).save(tmp_path / f"cat.{i}.jpg")
        Image.new("RGB", (8, 8), (20, 20, 200)).save(tmp_path / f"dog.{i}.jpg")
    (tmp_path / "cat.9.jpg").write_bytes(b"not an image")
    proc = subprocess.run([sys.executable, "-m", "lossscape.cli", "run", "--dataset", "cats_vs_dogs", "--data-dir",
                           str(tmp_path), "--model", "mlp", "--width", "4", "--batch-size", "2", "--epochs", "1",
                           "--no-cache"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        f"lossscape run: warning: cats_vs_dogs: skipped 1 unreadable image(s), e.g. {tmp_path / 'cat.9.jpg'}: ")


def test_version_and_python_dash_m():
    import lossscape
    proc = subprocess.run([sys.executable, "-m", "lossscape", "--version"], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.strip() == f"lossscape {lossscape.__version__}"


def _non_default(f):
    """A command-line value for field f other than its default, and the value it must parse to."""
    from lossscape.config import CHOICES
    if f.name in CHOICES:
        value = next(c for c in CHOICES[f.name] if c != f.default)
        return [value], value
    kind = f.type.split(" | ")[0]
    if kind == "bool":
        return [], not f.default
    if kind == "tuple[str, ...]":
        return ["val,test"], ("val", "test")
    if kind.startswith("tuple"):
        return ["3,7"], (3, 7)
    value = {"int": 7, "float": 0.25, "str": "some:thing"}[kind]
    return [str(value)], value


def test_every_runconfig_field_is_an_option_with_its_default():
    """The options are RunConfig's fields: record_snapshots was once missing from a hand-made list.
    init_from alone is not one: a continuation needs its parent run's weights, which the cache holds."""
    import dataclasses
    from lossscape import RunConfig
    from lossscape.cli import _config, _parser
    assert _config(_parser().parse_args(["run"])) == RunConfig()
    with pytest.raises(SystemExit):
        _parser().parse_args(["run", "--init-from", "{}"])
    for f in dataclasses.fields(RunConfig):
        if f.name == "init_from":
            continue
        values, expected = _non_default(f)
        flag = f"--{'no-' if expected is False else ''}{f.name.replace('_', '-')}"
        assert getattr(_parser().parse_args(["run", flag, *values]), f.name) == expected, f.name


def test_eval_every_epoch_from_the_command_line(tmp_path, capsys):
    assert main(ARGS + ["--eval-every-epoch", "test,val", "--json", "--no-cache"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["config"]["eval_every_epoch"] == ["val", "test"]  # SPLITS order
    assert all({"val_loss", "test_loss", "train_loss"} <= set(row) for row in out["history"])


def test_bad_eval_every_epoch_is_one_line_exit_2(capsys):
    assert main(ARGS + ["--eval-every-epoch", "val,holdout", "--no-cache"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "eval_every_epoch: got ('val', 'holdout'); allowed: a sequence of split names from " \
        "train, val, test" in err[0]


def test_record_snapshots_from_the_command_line(tmp_path, capsys):
    assert main(ARGS + ["--record-snapshots", "1", "--json", "--no-cache"]) == 0
    assert json.loads(capsys.readouterr().out)["config"]["record_snapshots"] == [1]


def test_torchrun_rank_0_that_cannot_store_prints_one_line_exit_2(tmp_path, monkeypatch, capsys):
    """Under torchrun rank 0 stores with RunStore.save; a failed write was a traceback."""
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "1")
    (tmp_path / "a_file").write_text("")
    assert main(ARGS + ["--json", "--cache-dir", str(tmp_path / "a_file")]) == 2
    captured = capsys.readouterr()
    err = captured.err.splitlines()
    assert json.loads(captured.out)["epochs_run"] == 2  # the results come first
    assert len(err) == 1 and err[0].startswith(f"lossscape run: error: cache folder {tmp_path / 'a_file'} could not "
                                                "store the run of seed 0 (")
