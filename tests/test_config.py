"""RunConfig: validation errors name the field and what is allowed; JSON and key are stable."""
import json

import pytest

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
