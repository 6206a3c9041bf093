"""A user's own model and data: "package.module:factory" models and "package.module:loader"
datasets, through RunConfig, training, the cache, a profile's settings and the command line."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import lossscape
from lossscape import ConfigError, RunConfig, RunStore, load_dataset, train, train_population
from lossscape.data import DataError
from lossscape.profiles import GridSpec, Setting

MODELS_PY = """
from torch import nn

from lossscape.models import StagedNet


def tiny(input_shape, n_classes, width):
    d = 1
    for s in input_shape:
        d *= s
    w = width or 8
    return nn.Sequential(nn.Flatten(), nn.Linear(d, w), nn.ReLU(), nn.Linear(w, n_classes))


def staged(input_shape, n_classes, width):
    return StagedNet([nn.Sequential(nn.Flatten(), nn.Linear(input_shape[0], 4), nn.ReLU()), nn.Linear(4, n_classes)])


def not_a_module(input_shape, n_classes, width):
    return "a string"


def wrong_width(input_shape, n_classes, width):
    return nn.Sequential(nn.Flatten(), nn.Linear(input_shape[0], n_classes + 1))


def wrong_input(input_shape, n_classes, width):
    return nn.Sequential(nn.Flatten(), nn.Linear(input_shape[0] + 1, n_classes))


NOT_CALLABLE = 3
"""

DATA_PY = """
import torch

from lossscape.data import Dataset

calls = []


def blobs(n_samples=None, data_dir=None):
    calls.append((n_samples, data_dir))
    g = torch.Generator().manual_seed(0)
    n = n_samples or 300
    y = torch.arange(n) % 3
    X = torch.randn(n, 6, generator=g) + y[:, None].float()
    a, b = n * 6 // 10, n * 8 // 10
    return Dataset("blobs", X[:a], y[:a], X[a:b], y[a:b], X[b:], y[b:], 3, (6,))


def wrong(n_samples=None, data_dir=None):
    return (1, 2)
"""



def cfg(**changes) -> RunConfig:
    """The tests' config (built in the tests: validating it imports the user's modules)."""
    return RunConfig(**{"dataset": "byo_data:blobs", "model": "byo_models:tiny", "width": 8, "batch_size": 20,
                        "lr": 0.1, "epochs": 2, **changes})


@pytest.fixture(scope="module", autouse=True)
def user_code(tmp_path_factory):
    """byo_models.py, byo_data.py and a module that fails on import, in a folder on sys.path."""
    folder = tmp_path_factory.mktemp("user_code")
    (folder / "byo_models.py").write_text(MODELS_PY)
    (folder / "byo_data.py").write_text(DATA_PY)
    (folder / "byo_broken.py").write_text("raise RuntimeError('boom')\n")
    sys.path.insert(0, str(folder))
    yield folder
    sys.path.remove(str(folder))
    for name in ("byo_models", "byo_data", "byo_broken"):
        sys.modules.pop(name, None)


def test_a_user_model_and_loader_train_and_the_run_holds_the_factorys_module():
    run = train(cfg())
    assert run.epochs_run == 2 and run.input_shape == (6,) and run.n_classes == 3
    import byo_models
    torch.manual_seed(0)  # a run's initialization is its factory's, built under the run's seed
    expected = byo_models.tiny((6,), 3, 8).state_dict()
    assert {k.removeprefix("stages.0."): v for k, v in run.initial_state.items()}.keys() == expected.keys()
    assert all(torch.equal(run.initial_state[f"stages.0.{k}"], v) for k, v in expected.items())
    # the trained module is the user's, wrapped as the one stage of a StagedNet
    mine = byo_models.tiny((6,), 3, 8)
    mine.load_state_dict({k.removeprefix("stages.0."): v for k, v in run.final_state.items()})
    X = load_dataset("byo_data:blobs").X_val
    with torch.no_grad():
        assert torch.equal(run.model()(X), mine(X))


def test_a_population_of_a_user_model_equals_its_single_runs():
    stacked = train_population(cfg(), [0, 1], path="stacked")
    for run in stacked:
        single = train(cfg(seed=run.config.seed))
        for k, v in single.final_state.items():
            torch.testing.assert_close(run.final_state[k], v, rtol=1e-4, atol=1e-5)


def test_a_factory_that_returns_a_stagednet_keeps_its_stages():
    run = train(cfg(model="byo_models:staged", width=None, epochs=1))
    assert {k.split(".")[1] for k in run.final_state} == {"0", "1"}


@pytest.mark.parametrize("field, spec, words", [
    ("model", "byo_models", "allowed: mlp, conv1d"),  # no colon: a registry name, and not one
    ("model", "byo models:tiny", "allowed: mlp, conv1d"),
    ("model", "no_such_module:tiny", "module no_such_module cannot be imported: ModuleNotFoundError"),
    ("model", "byo_broken:tiny", "module byo_broken cannot be imported: RuntimeError: boom"),
    ("model", "byo_models:nothing", "module byo_models has no attribute nothing"),
    ("model", "byo_models:NOT_CALLABLE", "NOT_CALLABLE is a int, not callable"),
    ("dataset", "byo_data:nothing", "module byo_data has no attribute nothing"),
    ("dataset", "no_such_module:load", "module no_such_module cannot be imported"),
])
def test_a_bad_spec_is_one_line_naming_the_field_and_what_is_allowed(field, spec, words):
    with pytest.raises(ConfigError) as info:
        RunConfig(**{field: spec})
    msg = str(info.value)
    assert msg.startswith(f"{field}: ") and words in msg and "package.module:" in msg and "\n" not in msg


def test_a_factory_that_returns_no_module_is_a_config_error():
    with pytest.raises(ConfigError, match="^model: byo_models:not_a_module returned a str; allowed: "):
        train(cfg(model="byo_models:not_a_module"))


@pytest.mark.parametrize("factory, words", [
    ("wrong_width", "returned outputs of shape (2, 4) for a batch of 2; allowed: a module mapping (batch, 6) to logits (batch, 3)"),
    ("wrong_input", "failed on a batch of shape (2, "),
])
def test_a_factory_whose_module_does_not_give_logits_is_a_one_line_config_error(factory, words):
    with pytest.raises(ConfigError) as info:
        train(cfg(model=f"byo_models:{factory}"))
    msg = str(info.value)
    assert msg.startswith(f"model: byo_models:{factory} ") and words in msg and "\n" not in msg


def test_a_loader_gets_n_samples_and_the_data_folder_and_must_return_a_dataset(tmp_path):
    import byo_data
    ds = load_dataset("byo_data:blobs", n_samples=50, data_dir=tmp_path)
    assert byo_data.calls[-1] == (50, str(tmp_path.absolute())) and len(ds.y_train) == 30
    with pytest.raises(DataError, match="^dataset: byo_data:wrong returned a tuple; allowed: a lossscape.data.Dataset"):
        load_dataset("byo_data:wrong")


def test_the_cache_stores_a_user_run_and_its_key_follows_the_user_code(tmp_path, user_code):
    store, later = RunStore(tmp_path), RunStore(tmp_path)
    first = store.get_or_train(cfg(epochs=1))
    again = later.get_or_train(cfg(epochs=1))
    X = load_dataset("byo_data:blobs").X_val
    assert store.misses == 1 and later.hits == 1 and torch.equal(again.model()(X), first.model()(X))
    # editing the factory's or the loader's file makes a new key: the old run is not served
    for name in ("byo_models.py", "byo_data.py"):
        path = user_code / name
        before = RunStore(tmp_path).key(cfg())
        original = path.read_text()
        try:
            path.write_text(original + "\n# edited\n")
            assert RunStore(tmp_path).key(cfg()) != before
        finally:
            path.write_text(original)
        assert RunStore(tmp_path).key(cfg()) == before


def test_a_profile_setting_may_name_a_user_model_and_loader():
    grid = GridSpec("g", {"epochs": 2}, (10, 20), None, (0, 1), True)
    configs = grid.configs(Setting("mine", {"model": "byo_models:tiny", "dataset": "byo_data:blobs", "width": 4}))
    assert [c.batch_size for c in configs.values()] == [10, 20]
    assert {(c.model, c.dataset) for c in configs.values()} == {("byo_models:tiny", "byo_data:blobs")}


def test_the_command_finds_a_user_module_in_the_current_folder(tmp_path):
    """As the `lossscape` console script runs: sys.path[0] is the script's folder, not the current one."""
    work, bin_dir = tmp_path / "work", tmp_path / "bin"
    work.mkdir()
    bin_dir.mkdir()
    (work / "byo_cli.py").write_text(MODELS_PY + DATA_PY)
    script = bin_dir / "lossscape_script.py"
    script.write_text("import sys\nfrom lossscape.cli import main\nsys.exit(main())\n")
    env = {**os.environ, "PYTHONPATH": str(Path(lossscape.__file__).parent.parent)}
    proc = subprocess.run([sys.executable, str(script), "run", "--model", "byo_cli:tiny", "--dataset", "byo_cli:blobs",
                           "--batch-size", "30", "--epochs", "1", "--no-cache", "--json"],
                          cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["config"]["model"] == "byo_cli:tiny" and out["epochs_run"] == 1
    # a module whose logits have the wrong width: one line naming the field, exit 2, no traceback
    proc = subprocess.run([sys.executable, str(script), "run", "--model", "byo_cli:wrong_width", "--dataset",
                           "byo_cli:blobs", "--epochs", "1", "--no-cache"],
                          cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].endswith(
        "model: byo_cli:wrong_width returned outputs of shape (2, 4) for a batch of 2; "
        "allowed: a module mapping (batch, 6) to logits (batch, 3)")


def test_the_run_options_state_what_a_factory_and_a_loader_must_be():
    from lossscape.cli import _parser
    help_text = " ".join(_parser()._subparsers._group_actions[0].choices["run"].format_help().split())
    assert "'package.module:factory' naming a callable (input_shape, n_classes, width) -> nn.Module" in help_text
    assert "'package.module:loader' naming a callable (n_samples=..., data_dir=...) -> lossscape.data.Dataset" \
        in help_text
