"""lossscape.plan: counting cached runs without writing, the expected-epochs rule, the FLOP model."""
import math

import pytest

from lossscape.cache import RunStore
from lossscape.cli import main
from lossscape.config import RunConfig
from lossscape.plan import Throughput, expected_epochs, make_plan, probe, render, run_seconds
from lossscape.profiles import GridSpec, load_profile
from lossscape.data import load_data

TINY = """
seeds = 2
device = "cpu"
batch_sizes = [32, 128]

[[settings]]
id = "tiny"
dataset = "mnist1d"
n_samples = 500
model = "mlp"
width = 8
lr = 0.1

[grids.budget]
stop = "epochs"
epochs = 2

[grids.pairs]
seeds = 3
batch_sizes = [32]
stop = "epochs"
epochs = 2

[grids.early]
stop = "early_stop"
patience = 2
epochs = 40
expect_epochs = 5
"""

FIXED = Throughput("cpu", train_flops_per_s=1e9, eval_flops_per_s=2e9, step_overhead_s=1e-3,
                   stacked_overhead_s=2e-3, source="test")


@pytest.fixture
def tiny(tmp_path):
    path = tmp_path / "smoke.toml"
    path.write_text(TINY)
    return load_profile("smoke", directory=tmp_path)


def test_counts_cached_shared_and_to_train_and_writes_nothing(tiny, tmp_path):
    store = RunStore(tmp_path / "cache")
    cfg = tiny.grid("budget").configs(tiny.settings[0])[(32, 0.1)]
    store.get_or_train_population(cfg, [0, 1])
    before = sorted(p.name for p in store.root.iterdir())
    plan = make_plan(tiny, store, FIXED)
    assert sorted(p.name for p in store.root.iterdir()) == before
    rows = {g.grid: g for g in plan.grids}
    assert (rows["budget"].runs, rows["budget"].cached, rows["budget"].to_train) == (4, 2, 2)
    # pairs: seeds 0, 1 at bs 32 are budget's (cached) runs, counted once; seed 2 is new
    assert (rows["pairs"].runs, rows["pairs"].cached, rows["pairs"].shared, rows["pairs"].to_train) == (3, 0, 2, 1)
    assert plan.total("to_train") == 2 + 1 + 4
    assert plan.total("seconds") > 0 and plan.throughput is FIXED
    assert render(plan)[-2].startswith("plan smoke: 11 runs (2 shared by two grids), 2 cached, 7 to train")
    assert render(make_plan(tiny, RunStore(tmp_path / "empty"), FIXED))[-2].startswith(
        "plan smoke: 11 runs (2 shared by two grids), 0 cached, 9 to train")


def _entries(root):
    return [p for p in root.iterdir() if (p / "run.json").exists()]


def test_a_run_two_grids_share_is_trained_once(tiny, tmp_path):
    plan = make_plan(tiny, RunStore(tmp_path / "empty"), FIXED)
    rows = {g.grid: g for g in plan.grids}
    assert (rows["pairs"].shared, rows["pairs"].to_train) == (2, 1)


def test_nothing_to_train_needs_no_throughput(tiny, tmp_path):
    store = RunStore(tmp_path / "cache")
    for setting, spec, cfg in tiny.cells():
        store.get_or_train_population(cfg, spec.seeds)
    plan = make_plan(tiny, store)  # no throughput given: a probe would be needed if anything were left
    assert plan.throughput is None and plan.total("to_train") == 0
    assert plan.total("cached") == len(_entries(store.root)) == plan.total("runs") - plan.total("shared")


def test_cells_are_the_harness_grids_configs(tiny):
    cells = [(s.id, spec.name, cfg) for s, spec, cfg in tiny.cells()]
    expected = [(s.id, spec.name, cfg) for s in tiny.settings for spec in tiny.grids.values()
                for cfg in spec.configs(s).values()]
    assert cells == expected and len(cells) == 2 + 1 + 2


def _spec(**kw):
    return GridSpec("g", {}, kw.pop("batch_sizes", (16, 64, 256)), None, (0,), True, kw.pop("expect", None))


def test_expected_epochs_rule():
    cfg = RunConfig(dataset="mnist1d", model="mlp", batch_size=16, lr=0.1, stop="early_stop", patience=3, epochs=800)
    assert expected_epochs(cfg.replace(stop="epochs", patience=None, epochs=7), _spec(), 0.1)[0] == 7
    assert expected_epochs(cfg, _spec(), 0.1)[0] == 800  # no pilot figure: the cap
    spec = _spec(expect=30)
    assert expected_epochs(cfg, spec, 0.1)[0] == 30
    assert expected_epochs(cfg.replace(batch_size=64), spec, 0.1)[0] == 60         # sqrt(4) x
    assert expected_epochs(cfg.replace(batch_size=64, lr=0.4), spec, 0.1)[0] == 30  # same B / lr
    assert expected_epochs(cfg.replace(batch_size=256, lr=0.0125), spec, 0.1)[0] == 340  # ceil(sqrt(128) x 30)
    assert expected_epochs(cfg.replace(epochs=100, batch_size=256, lr=0.0125), spec, 0.1)[0] == 100  # capped
    scaled = cfg.replace(schedule="linear_scaling", base_batch_size=16, batch_size=256)
    assert expected_epochs(scaled, spec, 0.1)[0] == 30  # linear scaling keeps B / lr: the pilot's epochs
    target = cfg.replace(stop="target_loss", patience=None, target_loss=0.2, batch_size=256)
    assert expected_epochs(target, spec, 0.1)[0] == math.ceil(30 * 16 ** 0.8)  # a target loss: nearly constant steps


def test_run_seconds_is_the_flop_model():
    cfg = RunConfig(dataset="mnist1d", n_samples=500, model="mlp", width=8, batch_size=32, lr=0.1, epochs=3)
    ds = load_data(cfg)
    n, n_val, n_test = len(ds.y_train), len(ds.y_val), len(ds.y_test)
    steps, secs = run_seconds(cfg, 2, True, 3, ds, 1000.0, FIXED)
    assert steps == 3 * math.ceil(n / 32)
    # evaluation: the training split after each of the 3 epochs, validation and test once at the end
    assert secs == pytest.approx(steps * 2e-3 + 2 * 1000.0 * (3 * 3 * n / 1e9 + (3 * n + n_val + n_test) / 2e9))
    # early stopping adds the validation split every epoch, and the test split at the best epoch too
    early = cfg.replace(stop="early_stop", patience=2)
    assert run_seconds(early, 2, True, 3, ds, 1000.0, FIXED)[1] == pytest.approx(
        steps * 2e-3 + 2 * 1000.0 * (3 * 3 * n / 1e9 + (3 * (n + n_val) + 2 * n_test) / 2e9))
    every = cfg.replace(eval_every_epoch=("val", "test"))
    assert run_seconds(every, 2, True, 3, ds, 1000.0, FIXED)[1] == pytest.approx(
        steps * 2e-3 + 2 * 1000.0 * (3 * 3 * n / 1e9 + 3 * (n + n_val + n_test) / 2e9))
    # a batch that grows at the decay epochs takes fewer steps
    grown = cfg.replace(schedule="step", decay_epochs=(1,), decay_factor=0.5, decay_target="batch")
    assert run_seconds(grown, 1, False, 3, ds, 1000.0, FIXED)[0] == math.ceil(n / 32) + 2 * math.ceil(n / 64)


def test_probe_measures_positive_rates():
    tp = probe(RunConfig(dataset="mnist1d", n_samples=500, model="mlp", width=8, lr=0.1), 16, 128)
    assert tp.train_flops_per_s > 0 and tp.eval_flops_per_s > 0
    assert tp.step_overhead_s >= 0 and tp.stacked_overhead_s >= 0 and tp.device == "cpu"


def test_cli_plan_reads_the_cache_and_prints_the_total(tmp_path, capsys):
    assert main(["plan", "--profile", "smoke", "--cache-dir", str(tmp_path / "c")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:5] == ["setting/grid", "runs", "cached", "shared", "train"]
    assert any(line.startswith("plan smoke: ") and " to train, " in line for line in out)
    assert not (tmp_path / "c").exists()


def test_cli_plan_bad_profile_one_line_exit_2(capsys):
    assert main(["plan", "--profile", "huge"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "profile: got 'huge'" in err and "smoke, cpu, cpu-long, gpu" in err
