"""The run store: round trip, content addressing, damaged entries, killed writes."""

import numpy as np
import pytest
import torch

import lossscape.cache as cache_mod
from lossscape import RunConfig
from lossscape.cache import RunStore

CFG = RunConfig(dataset="mnist1d", n_samples=500, model="mlp", width=16, batch_size=64, lr=0.1, epochs=2,
                schedule="cyclic_cosine", snapshots=2)


@pytest.fixture
def counted(monkeypatch):
    """Count the training calls the store makes."""
    calls = []
    real = cache_mod.train

    def fake(cfg, progress=None):
        calls.append(cfg.seed)
        return real(cfg, progress=progress)
    monkeypatch.setattr(cache_mod, "train", fake)
    return calls


def _untimed(history):
    return [{k: v for k, v in row.items() if not k.endswith("time_s")} for row in history]


def _same(a, b):
    """Equal runs; wall times differ between a run and its recomputation, so they are left out."""
    assert a.config == b.config and _untimed(a.history) == _untimed(b.history) and a.stop_reason == b.stop_reason
    assert np.array_equal(a.update_norms, b.update_norms)
    for s, t in [(a.initial_state, b.initial_state), (a.final_state, b.final_state)] + list(zip(a.snapshots, b.snapshots)):
        assert s.keys() == t.keys() and all(torch.equal(s[k], t[k]) for k in s)
    assert len(a.snapshots) == len(b.snapshots) == 2 and a.snapshot_steps == b.snapshot_steps
    assert a.engine_path == b.engine_path and a.engine_path["kind"]


def test_round_trip(tmp_path, counted):
    store = RunStore(tmp_path)
    first = store.get_or_train(CFG)
    again = RunStore(tmp_path).get_or_train(CFG)
    assert counted == [0]
    _same(first, again)
    entry = store.path(CFG)
    assert sorted(p.name for p in entry.iterdir()) == ["run.json", "tensors.safetensors"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp")]


def test_key_depends_on_content_and_environment(tmp_path, monkeypatch):
    store = RunStore(tmp_path)
    k = store.key(CFG)
    assert k == RunStore(tmp_path / "other").key(RunConfig.from_json(CFG.to_json()))
    assert k != store.key(CFG.replace(seed=1)) and k != store.key(CFG.replace(world_size=2, batch_size=64))
    monkeypatch.setattr(torch, "__version__", "9.9.9")
    assert store.key(CFG) != k


@pytest.mark.parametrize("damage", ["truncate", "flip", "json", "missing"])
def test_damaged_entry_is_warned_about_and_recomputed(tmp_path, counted, damage):
    store = RunStore(tmp_path)
    first = store.get_or_train(CFG)
    entry = store.path(CFG)
    tensors = entry / "tensors.safetensors"
    if damage == "truncate":
        tensors.write_bytes(tensors.read_bytes()[: tensors.stat().st_size // 2])
    elif damage == "flip":
        data = bytearray(tensors.read_bytes())
        data[-10] ^= 0xFF
        tensors.write_bytes(bytes(data))
    elif damage == "json":
        (entry / "run.json").write_text("{not json")
    else:
        tensors.unlink()
    with pytest.warns(UserWarning, match="unreadable"):
        again = store.get_or_train(CFG)
    assert counted == [0, 0]
    _same(first, again)
    _same(first, RunStore(tmp_path).get_or_train(CFG))  # the recomputed entry is sound
    assert counted == [0, 0]


def test_damaged_entry_with_foreign_files_is_moved_aside_not_deleted(tmp_path, counted):
    store = RunStore(tmp_path)
    store.get_or_train(CFG)
    entry = store.path(CFG)
    (entry / "run.json").write_text("{")
    (entry / "notes.txt").write_text("mine")
    with pytest.warns(UserWarning):
        store.get_or_train(CFG)
    (entry / "run.json").write_text("{")  # damaged again, with a foreign file again
    (entry / "notes.txt").write_text("mine too")
    with pytest.warns(UserWarning):
        store.get_or_train(CFG)
    aside = sorted(tmp_path.glob(f"{entry.name}.damaged-*/{entry.name}/notes.txt"))
    assert sorted(p.read_text() for p in aside) == ["mine", "mine too"]


def test_a_write_killed_midway_leaves_no_entry(tmp_path, monkeypatch):
    store = RunStore(tmp_path)
    run = store.get_or_train(CFG.replace(seed=5))
    store2 = RunStore(tmp_path / "b")

    def dies(tensors, path):
        with open(path, "wb") as f:
            f.write(b"partial")
        raise KeyboardInterrupt  # the process is interrupted between the two files
    monkeypatch.setattr(cache_mod, "save_file", dies)
    with pytest.raises(KeyboardInterrupt):
        store2.save(run)
    assert store2.load(run.config) is None
    assert list((tmp_path / "b").iterdir()) == []


def test_population_trains_only_missing_seeds(tmp_path, monkeypatch):
    store = RunStore(tmp_path)
    store.get_or_train(CFG.replace(seed=1))
    trained = []
    real = cache_mod.train_population

    def spy(cfg, seeds, progress=None):
        trained.append(list(seeds))
        return real(cfg, seeds, progress=progress)
    monkeypatch.setattr(cache_mod, "train_population", spy)
    runs = store.get_or_train_population(CFG, [0, 1, 2])
    assert trained == [[0, 2]] and [r.config.seed for r in runs] == [0, 1, 2]
    assert store.get_or_train_population(CFG, [0, 1, 2]) and trained == [[0, 2]]


def test_cache_dir_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("LOSSSCAPE_CACHE", str(tmp_path / "env"))
    assert RunStore().root == tmp_path / "env"


def test_memo_that_cannot_be_stored_leaves_no_temporary_file(tmp_path):
    store = RunStore(tmp_path)
    with pytest.raises(TypeError):
        store.memo(CFG, "bad", {}, lambda: {"array": np.ones(2)})
    assert [p.name for p in (tmp_path / "measures").rglob("*")] == [store.key(CFG)]


def test_memo_computes_once_and_survives_damage(tmp_path):
    store = RunStore(tmp_path)
    calls = []
    value = lambda: calls.append(1) or {"x": 1.5}
    assert store.memo(CFG, "sharpness", {"eps": 1e-3}, value) == {"x": 1.5}
    assert store.memo(CFG, "sharpness", {"eps": 1e-3}, value) == {"x": 1.5}
    assert len(calls) == 1
    assert store.memo(CFG, "sharpness", {"eps": 5e-4}, value) and len(calls) == 2
    for p in (tmp_path / "measures").rglob("*.json"):
        p.write_text("{")
    with pytest.warns(UserWarning):
        store.memo(CFG, "sharpness", {"eps": 1e-3}, value)
    assert len(calls) == 3
