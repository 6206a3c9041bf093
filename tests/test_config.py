"""RunConfig: validation errors name the field and what is allowed; JSON and key are stable."""
import json

import pytest
import torch

from lossscape import ConfigError, RunConfig


@pytest.mark.parametrize("changes, field", [
    (dict(batch_size=-1), "batch_size"),
    (dict(batch_size=0), "batch_size"),
    (dict(batch_size=2.5), "batch_size"),
    (dict(dataset="cifar"), "dataset"),
    (dict(model="transformer"), "model"),
    (dict(lr=0), "lr"),
    (dict(lr=-0.1), "lr"),
    (dict(lr=float("nan")), "lr"),
    (dict(momentum=1.0), "momentum"),
    (dict(nesterov=True), "nesterov"),
    (dict(weight_decay=-1e-4), "weight_decay"),
    (dict(schedule="cosine"), "schedule"),
    (dict(schedule="linear_scaling"), "base_batch_size"),
    (dict(base_batch_size=32), "base_batch_size"),
    (dict(schedule="step"), "decay_epochs"),
    (dict(schedule="step", decay_epochs=(5, 3)), "decay_epochs"),
    (dict(schedule="step", decay_epochs=(3,), decay_factor=2.0), "decay_factor"),
    (dict(decay_target="batch"), "decay_target"),
    (dict(schedule="cyclic_cosine"), "snapshots"),
    (dict(snapshots=3), "snapshots"),
    (dict(freeze_t0=0), "freeze_t0"),
    (dict(freeze_spacing="quadratic"), "freeze_spacing"),
    (dict(stop="never"), "stop"),
    (dict(epochs=0), "epochs"),
    (dict(stop="target_loss"), "target_loss"),
    (dict(target_loss=0.1), "target_loss"),
    (dict(stop="early_stop"), "patience"),
    (dict(patience=5), "patience"),
    (dict(seed=-1), "seed"),
    (dict(world_size=0), "world_size"),
    (dict(world_size=3, batch_size=64), "batch_size"),
    (dict(device="tpu"), "device"),
    (dict(dtype="float16"), "dtype"),
    (dict(warmup_epochs=20, epochs=10), "warmup_epochs"),
    (dict(n_samples=5), "n_samples"),
    (dict(n_samples=15), "n_samples"),
    (dict(width=0), "width"),
    (dict(record_snapshots=(11,), epochs=10), "record_snapshots"),
    (dict(eval_every_epoch=("holdout",)), "eval_every_epoch"),
    (dict(eval_every_epoch="val"), "eval_every_epoch"),  # a string is not a sequence of names
    (dict(eval_every_epoch=(1,)), "eval_every_epoch"),
])
def test_bad_values_raise_one_line_naming_the_field(changes, field):
    with pytest.raises(ConfigError) as info:
        RunConfig(**changes)
    msg = str(info.value)
    assert msg.startswith(f"{field}:") and "allowed" in msg and "\n" not in msg


def test_canonical_json_round_trip_and_stable_key():
    a = RunConfig(batch_size=32, lr=0.01, schedule="step", decay_epochs=[3, 6], epochs=9)
    b = RunConfig.from_json(a.to_json())
    assert a == b and a.key() == b.key()
    assert json.loads(a.to_json()) == a.to_dict()
    assert a.to_json() == json.dumps(json.loads(a.to_json()), sort_keys=True, separators=(",", ":"))
    assert a.key() != a.replace(seed=1).key() != a.replace(batch_size=64).key()
    # the key is a hash of the content only: an independent sha256 of the canonical JSON
    import hashlib
    assert a.key() == hashlib.sha256(a.to_json().encode()).hexdigest()


def test_unknown_field_in_dict_is_named():
    with pytest.raises(ConfigError, match="^colour: unknown field"):
        RunConfig.from_dict({"colour": "red"})


def test_linear_scaling_effective_lr():
    c = RunConfig(schedule="linear_scaling", base_batch_size=32, batch_size=256, lr=0.01)
    assert c.effective_lr == pytest.approx(0.08)
    assert RunConfig(lr=0.01).effective_lr == 0.01


def test_numpy_scalars_are_accepted_as_the_python_values_they_hold_D16a():
    import numpy as np
    a = RunConfig(seed=np.int64(3), lr=np.float32(0.5), momentum=np.float64(0.5), nesterov=np.bool_(True))
    b = RunConfig(seed=3, lr=0.5, momentum=0.5, nesterov=True)  # 0.5 is exact in float32
    assert a == b and a.key() == b.key() and a.to_json() == b.to_json()
    assert type(a.seed) is int and type(a.lr) is float and type(a.nesterov) is bool


def test_numpy_n_samples_gives_a_key_and_a_scalar_decay_epochs_one_line_D16b():
    import numpy as np
    assert RunConfig(n_samples=np.int64(1000)).key() == RunConfig(n_samples=1000).key()
    steps = RunConfig(schedule="step", decay_epochs=np.array([3, 6]), epochs=9)
    assert steps.decay_epochs == (3, 6) and steps.key() == steps.replace(decay_epochs=[3, 6]).key()
    for bad in (5, "3,6"):
        with pytest.raises(ConfigError) as info:
            RunConfig(schedule="step", decay_epochs=bad, epochs=9)
        assert str(info.value).startswith("decay_epochs: got") and "allowed" in str(info.value)
    # an int where a float is due gives the float's key: lr=1 and lr=1.0 are one run
    assert RunConfig(lr=1).key() == RunConfig(lr=1.0).key()


@pytest.mark.parametrize("changes, field", [
    (dict(freeze_scale_lr="False"), "freeze_scale_lr"),
    (dict(freeze_scale_lr=0), "freeze_scale_lr"),
    (dict(nesterov=1, momentum=0.9), "nesterov"),
    (dict(nesterov="yes", momentum=0.9), "nesterov"),
])
def test_bool_fields_take_only_bools_D17(changes, field):
    with pytest.raises(ConfigError, match=f"^{field}: got .*; allowed: True or False$"):
        RunConfig(**changes)


def test_seeds_whose_data_seed_overflows_int64_are_refused_D3():
    from lossscape.config import MAX_SEED
    assert RunConfig(seed=MAX_SEED).seed == MAX_SEED
    for seed in (MAX_SEED + 1, 2**70):
        with pytest.raises(ConfigError, match=f"^seed: got {seed}; allowed: an integer in 0..{MAX_SEED}$"):
            RunConfig(seed=seed)


def test_validation_needs_no_torch():
    """config.py validates every built-in setting without importing torch (or lossscape.data)."""
    import subprocess
    import sys
    from pathlib import Path
    import lossscape
    code = (
        "import sys, types, importlib\n"
        "sys.modules['torch'] = None  # any import of torch now fails\n"
        "pkg = types.ModuleType('lossscape'); pkg.__path__ = [sys.argv[1]]; sys.modules['lossscape'] = pkg\n"
        "config = importlib.import_module('lossscape.config')\n"
        "for model in config.MODELS:\n"
        "    for dataset in config.DATASETS:\n"
        "        config.RunConfig(model=model, dataset=dataset)\n"
        "try:\n"
        "    config.RunConfig(model='gpt')\n"
        "except config.ConfigError as exc:\n"
        "    print(exc)\n"
        "print(sorted(m for m in sys.modules if m.startswith('lossscape')))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(Path(lossscape.__file__).parent)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "model: got 'gpt'; allowed: mlp, conv1d, vgg_small, resnet_small, densenet_small, or 'package.module:factory' "
        "naming a callable (input_shape, n_classes, width) -> nn.Module whose forward returns logits",
        "['lossscape', 'lossscape.config']"]


def test_every_registered_model_name_builds_its_factory():
    """One registry: config.MODELS names each built-in factory, and build_model goes through it."""
    from lossscape import models
    from lossscape.config import MODELS
    for name, spec in MODELS.items():
        assert spec == f"lossscape.models:{name}"
        net = models.build_model(name, (40,), 10, 4)
        assert isinstance(net, models.StagedNet) and net(torch.zeros(2, 40)).shape == (2, 10)


@pytest.mark.parametrize("field, allowed", [
    ("schedule", "constant, linear_scaling, step, cyclic_cosine, freezeout"),
    ("decay_target", "lr, batch"), ("freeze_spacing", "linear, cubic"), ("stop", "epochs, target_loss, early_stop"),
    ("device", "cpu, cuda"), ("dtype", "float32, float64"),
])
def test_named_choices_are_the_configs_own(field, allowed):
    from lossscape.config import CHOICES
    assert ", ".join(CHOICES[field]) == allowed
    with pytest.raises(ConfigError, match=f"^{field}: got 'nope'; allowed: {allowed}$"):
        RunConfig(**{field: "nope"})


def test_init_from_is_canonical_and_absent_from_the_key_when_unset():
    parent = RunConfig(batch_size=1024, lr=0.1, seed=3)
    a = RunConfig(init_from=parent.to_json())
    b = RunConfig(init_from=json.dumps(json.loads(parent.replace(seed=7).to_json()), indent=2))
    assert a.init_from == b.init_from == parent.replace(seed=0).to_json()  # any seed, any spelling
    assert a.key() == b.key() != RunConfig().key()
    assert "init_from" not in RunConfig().to_dict()  # every config without a parent keeps its key
    assert RunConfig.from_json(a.to_json()) == a


@pytest.mark.parametrize("value", ["not json", '{"lr": -1}', 3])
def test_bad_init_from_names_the_field(value):
    with pytest.raises(ConfigError, match="^init_from: "):
        RunConfig(init_from=value)


def test_eval_every_epoch_names_the_allowed_splits():
    with pytest.raises(ConfigError, match=r"^eval_every_epoch: got \('val', 'holdout'\); allowed: a sequence of "
                                          r"split names from train, val, test"):
        RunConfig(eval_every_epoch=("val", "holdout"))


@pytest.mark.parametrize("stop, given, stored, every_epoch", [
    (dict(), (), (), ("train",)),  # the divergence rule reads the training loss
    (dict(stop="target_loss", target_loss=0.1), (), (), ("train",)),
    (dict(stop="early_stop", patience=3), (), (), ("train", "val")),
    (dict(), ["test", "val", "test"], ("val", "test"), ("train", "val", "test")),  # one spelling: SPLITS order
    (dict(), ("train", "val"), ("val",), ("train", "val")),  # the stop rules' own splits are not stored
    (dict(stop="early_stop", patience=3), ("val",), (), ("train", "val")),
])
def test_eval_every_epoch_is_stored_canonically_beside_the_stop_rules_splits(stop, given, stored, every_epoch):
    c = RunConfig(eval_every_epoch=given, **stop)
    assert c.eval_every_epoch == stored and c.epoch_splits == every_epoch
    assert c == RunConfig(eval_every_epoch=stored, **stop) and c.key() == RunConfig(eval_every_epoch=stored, **stop).key()
    assert ("eval_every_epoch" in json.loads(c.to_json())) == bool(stored)  # absent when empty: other keys unchanged
    assert RunConfig.from_json(c.to_json()) == c
