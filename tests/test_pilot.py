"""lossscape pilot: X-1/X-2's targets by the documented rule (seed 1000), written back into a copy
of a profile, at toy size on CPU (the gpu profile runs the same code on CUDA)."""
import math

from lossscape.cache import RunStore
from lossscape.cli import main
from lossscape.pilot import PILOT_SEED, write_targets
from lossscape.profiles import load_profile

TOY = """
seeds = 2
device = "cpu"
batch_sizes = [32, 64, 128]

[[settings]]
id = "toy"
dataset = "mnist1d"
n_samples = 500
model = "mlp"
width = 8
lr = 0.1

[grids.lr_grid]
seeds = 2
batch_sizes = [32, 64, 128]
lrs = [0.05, 0.2]
stop = "early_stop"
patience = 2
epochs = 4

[params.x.target_val_loss]
# empty until each gpu setting has had its pilot on seed 1000 (the rule above); X-1/X-2 skip until then

[params.bs]
throughput_steps = 50
"""


def test_pilot_writes_the_rules_target_into_the_profile(tmp_path, capsys):
    path = tmp_path / "gpu.toml"
    path.write_text(TOY)
    cache = tmp_path / "cache"
    assert main(["pilot", "--profile", str(path), "--cache-dir", str(cache)]) == 0
    profile = load_profile(path)
    written = profile.params["x"]["target_val_loss"]["toy"]
    # the rule, recomputed from the pilot's cached runs: smallest and largest batch, best LR each
    store = RunStore(cache)
    cfgs = profile.grid("lr_grid").configs(profile.settings[0])
    best = [min(store.load(cfgs[(bs, lr)].replace(seed=PILOT_SEED)).metric("val_loss").min() for lr in (0.05, 0.2))
            for bs in (32, 128)]
    assert written == math.ceil(max(best) * 1.1 * 100) / 100
    assert store.load(cfgs[(64, 0.05)].replace(seed=PILOT_SEED)) is None  # the middle batch is not piloted
    text = path.read_text()
    assert "empty until" not in text and "throughput_steps = 50" in text  # the rest of the file stays
    assert "pilot: wrote 1 target(s)" in capsys.readouterr().out


def test_write_targets_replaces_an_entry_and_keeps_the_others(tmp_path):
    path = tmp_path / "cpu.toml"
    path.write_text('[params.x.target_val_loss]\n"a" = 1.00  # old\n"b" = 2.00  # kept\n\n[params.bs]\nx = 1\n')
    write_targets({"a": (1.5, "new")}, path)
    assert path.read_text() == ('[params.x.target_val_loss]\n"b" = 2.00  # kept\n"a" = 1.50  # new\n\n'
                                '[params.bs]\nx = 1\n')


def test_the_shipped_gpu_profile_targets_table_is_writable(tmp_path):
    copy = tmp_path / "gpu.toml"
    copy.write_text(load_profile("gpu").path.read_text())
    write_targets({"mnist1d-conv1d": (0.75, "test")}, copy)
    assert load_profile(copy).params["x"]["target_val_loss"] == {"mnist1d-conv1d": 0.75}
    assert {k: v for k, v in load_profile(copy).params.items() if k != "x"} == \
        {k: v for k, v in load_profile("gpu").params.items() if k != "x"}  # the rest of the file stays


def test_pilot_bad_profile_file_one_line_exit_2(tmp_path, capsys):
    assert main(["pilot", "--profile", str(tmp_path / "nope.toml")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "profile:" in err and "nope.toml is not a file" in err
