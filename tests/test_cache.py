"""The run store: round trip, content addressing, damaged entries, killed writes, shared and
read-only caches, locks, and the issue-10 defects (the D-numbers in the test names)."""

import errno
import json
import os
import threading
import time

import numpy as np
import pytest
import torch

import lossscape.cache as cache_mod
import lossscape.run as run_mod
from lossscape import RunConfig
from lossscape.cache import CacheError, RunStore

pytest_plugins = ["pytester"]

CFG = RunConfig(dataset="mnist1d", n_samples=500, model="mlp", width=16, batch_size=64, lr=0.1, epochs=2,
                schedule="cyclic_cosine", snapshots=2)


@pytest.fixture
def counted(monkeypatch):
    """Count the training calls the store makes."""
    calls = []
    real = cache_mod.train

    def fake(cfg, progress=None, init=None):
        calls.append(cfg.seed)
        return real(cfg, progress=progress, init=init)
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
    assert a.evaluated_epochs == b.evaluated_epochs


def test_round_trip(tmp_path, counted):
    store = RunStore(tmp_path)
    first = store.get_or_train(CFG)
    again = RunStore(tmp_path).get_or_train(CFG)
    assert counted == [0]
    _same(first, again)
    # training loss every epoch (the divergence rule), the other splits at the last one
    assert again.evaluated_epochs == {"train": [1, 2], "val": [2], "test": [2]}
    entry = store.path(CFG)
    assert sorted(p.name for p in entry.iterdir()) == ["manifest.json", "run.json", "tensors.safetensors"]
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == [".locks"]


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
    with pytest.warns(UserWarning, match="damaged"):
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
    aside = sorted(tmp_path.glob(f".damaged-{entry.name}-*/notes.txt"))
    assert sorted(p.read_text() for p in aside) == ["mine", "mine too"]


def test_a_write_killed_midway_leaves_no_entry(tmp_path, monkeypatch):
    store = RunStore(tmp_path)
    run = store.get_or_train(CFG.replace(seed=5))
    store2 = RunStore(tmp_path / "b")

    def dies(tensors, path):
        with open(path, "wb") as f:
            f.write(b"partial")
        raise KeyboardInterrupt  # the process is interrupted between the two files
    monkeypatch.setattr(run_mod, "save_file", dies)
    with pytest.raises(KeyboardInterrupt):
        store2.save(run)
    assert store2.load(run.config) is None
    assert [p.name for p in (tmp_path / "b").iterdir()] == [".locks"]


def test_population_trains_only_missing_seeds(tmp_path, monkeypatch):
    store = RunStore(tmp_path)
    store.get_or_train(CFG.replace(seed=1))
    trained = []
    real = cache_mod.train_population

    def spy(cfg, seeds, **kw):
        trained.append(list(seeds))
        return real(cfg, seeds, **kw)
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


# -- issue 10: a cache that can't serve a wrong run or lose one ------------------------------------

@pytest.fixture
def read_only(monkeypatch):
    """read_only(folder): nothing can be created, renamed or moved below folder. Emulated on top of
    chmod, because root (as in CI containers) ignores permission bits."""
    folders = []

    def denied(path):
        path = os.path.abspath(path)
        return any(path == f or path.startswith(f + os.sep) for f in folders)

    def guard(real, *which):
        def wrapper(*args, **kwargs):
            if any(denied(args[i]) for i in which):
                raise PermissionError(errno.EACCES, "Permission denied", str(args[which[0]]))
            return real(*args, **kwargs)
        return wrapper
    monkeypatch.setattr(os, "mkdir", guard(os.mkdir, 0))
    monkeypatch.setattr(os, "rename", guard(os.rename, 0, 1))
    real_open = os.open
    monkeypatch.setattr(os, "open", lambda path, flags, *a, **k: (
        guard(real_open, 0) if flags & (os.O_CREAT | os.O_WRONLY | os.O_RDWR) else real_open)(path, flags, *a, **k))

    def make(folder):
        folder.chmod(0o555)
        folders.append(os.path.abspath(folder))
    yield make
    for f in folders:
        os.chmod(f, 0o755)


def _forbid_training(monkeypatch):
    def trains(*args, **kwargs):
        raise AssertionError("trained, where the cache should have been refused first")
    monkeypatch.setattr(cache_mod, "train", trains)
    monkeypatch.setattr(cache_mod, "train_population", trains)


def _rewrite_manifest(entry):
    """Make the manifest agree with the files again, as an editor covering their tracks would."""
    manifest = json.loads((entry / "manifest.json").read_text())
    manifest["sha256"] = {n: cache_mod._sha256(entry / n) for n in manifest["sha256"]}
    (entry / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize("edit", ["seed", "history", "evaluated_epochs"])
def test_edited_run_json_is_detected_D7(tmp_path, counted, edit):
    store = RunStore(tmp_path)
    first = store.get_or_train(CFG)
    entry = store.path(CFG)
    meta = json.loads((entry / "run.json").read_text())
    if edit == "seed":  # checksums made to match: only the config check can tell
        meta["config"]["seed"] = 7
        (entry / "run.json").write_text(json.dumps(meta))
        _rewrite_manifest(entry)
    elif edit == "evaluated_epochs":  # checksums made to match: the record no longer says what the rows carry
        meta["evaluated_epochs"]["val"] = [1, 2]
        (entry / "run.json").write_text(json.dumps(meta))
        _rewrite_manifest(entry)
    else:  # checksums left stale: the manifest tells
        meta["history"][0]["train_loss"] = 0.0
        (entry / "run.json").write_text(json.dumps(meta))
    with pytest.warns(UserWarning, match="damaged"):
        assert store.load(CFG) is None
    _same(first, store.get_or_train(CFG))
    assert counted == [0, 0]


def test_unreadable_entry_is_neither_deleted_nor_overwritten_D8a(tmp_path, counted, monkeypatch):
    store = RunStore(tmp_path)
    store.get_or_train(CFG)
    entry = store.path(CFG)
    before = {p.name: (p.stat().st_ino, p.read_bytes()) for p in entry.iterdir()}
    real = cache_mod._sha256

    def private(path):  # another user's file in a shared cache, made before files were group-readable
        if path.parent == entry:
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real(path)
    monkeypatch.setattr(cache_mod, "_sha256", private)
    with pytest.warns(UserWarning, match="cannot be read.*leaving the entry as it is"):
        run = store.get_or_train(CFG)
    assert counted == [0, 0] and run.config == CFG  # recomputed and returned
    monkeypatch.setattr(cache_mod, "_sha256", real)
    assert {p.name: (p.stat().st_ino, p.read_bytes()) for p in entry.iterdir()} == before
    assert store.load(CFG) is not None
    assert not list(tmp_path.glob(".damaged-*"))


def test_files_take_the_shared_folders_group_bits_D8a(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o2770)  # a group cache: setgid, group rwx
    old = os.umask(0o077)  # a user whose umask would make everything private
    try:
        store = RunStore(shared)
        store.get_or_train(CFG)
        store.memo(CFG, "m", {}, lambda: 1)
    finally:
        os.umask(old)
    entry = store.path(CFG)
    for f in entry.iterdir():
        assert f.stat().st_mode & 0o777 == 0o660, f.name  # safetensors alone writes 0600
    for d in (entry, shared / ".locks", shared / "measures", shared / "measures" / entry.name):
        assert d.stat().st_mode & 0o2777 == 0o2770, d
    assert all(f.stat().st_mode & 0o777 == 0o660 for f in [*(shared / ".locks").iterdir(),
                                                           *(shared / "measures").rglob("*.json")])


def test_damaged_entry_is_moved_aside_whole_D8b(tmp_path, counted):
    store = RunStore(tmp_path)
    store.get_or_train(CFG)
    entry = store.path(CFG)
    tensors = entry / "tensors.safetensors"
    data = bytearray(tensors.read_bytes())
    data[-10] ^= 0xFF
    tensors.write_bytes(bytes(data))
    damaged = {p.name: p.read_bytes() for p in entry.iterdir()}
    with pytest.warns(UserWarning, match=r"damaged \(tensors.safetensors does not match its checksum\); moved to"):
        store.get_or_train(CFG)
    [aside] = tmp_path.glob(f".damaged-{entry.name}-*")
    assert {p.name: p.read_bytes() for p in aside.iterdir()} == damaged
    assert store.load(CFG) is not None and counted == [0, 0]


@pytest.mark.parametrize("where", ["a file", "inside a file", "read-only"])
def test_cache_that_cannot_take_a_run_fails_before_training_D9(tmp_path, monkeypatch, read_only, where):
    if where == "a file":
        root = tmp_path / "cache"
        root.write_text("not a folder")
    elif where == "inside a file":
        (tmp_path / "file").write_text("")
        root = tmp_path / "file" / "cache"
    else:
        root = tmp_path / "cache"
        root.mkdir()
        read_only(root)
    _forbid_training(monkeypatch)
    with pytest.raises(CacheError, match=r"^cache folder .* cannot take new runs \(.*\); allowed: ") as err:
        RunStore(root).get_or_train_population(CFG, [0, 1])
    assert "\n" not in str(err.value)


def test_unwritable_working_directory_fails_before_training_D9(tmp_path, monkeypatch, read_only):
    monkeypatch.delenv("LOSSSCAPE_CACHE", raising=False)
    monkeypatch.chdir(tmp_path)
    read_only(tmp_path)
    _forbid_training(monkeypatch)
    with pytest.raises(CacheError, match="cannot take new runs"):
        RunStore().get_or_train(CFG)


def test_cli_refuses_an_unusable_cache_in_one_line_D9(tmp_path, capsys, monkeypatch):
    from lossscape.cli import main
    (tmp_path / "cache").write_text("a file")
    _forbid_training(monkeypatch)
    assert main(["run", "--dataset", "mnist1d", "--n-samples", "500", "--model", "mlp", "--width", "16",
                 "--epochs", "2", "--cache-dir", str(tmp_path / "cache")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("lossscape run: error: cache folder ") and "is a file" in err[0]


def test_run_whose_write_fails_is_returned_with_a_warning_D9(tmp_path, counted, monkeypatch):
    def disk_full(tensors, path):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))
    monkeypatch.setattr(run_mod, "save_file", disk_full)
    with pytest.warns(UserWarning, match="could not be stored .*No space left on device.*used but not cached"):
        run = RunStore(tmp_path).get_or_train(CFG)
    assert run.config == CFG and counted == [0] and len(run.history) == CFG.epochs


def test_unwritable_cache_fails_a_grid_in_one_line_under_pytest_D9(pytester, tmp_path, monkeypatch):
    pytester.makepyfile(test_grid="def test_grid(grids, setting):\n    grids(setting, 'budget')\n")
    (tmp_path / "cache").write_text("a file")
    _forbid_training(monkeypatch)
    result = pytester.runpytest("-p", "lossscape.harness.plugin", "--profile", "smoke",
                                "--cache-dir", str(tmp_path / "cache"), "-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*cache folder * cannot take new runs (* is a file); allowed: *"])
    assert "Traceback" not in result.stdout.str() and "trained, where" not in result.stdout.str()


def test_entry_that_is_a_file_is_moved_aside_D10(tmp_path):
    store = RunStore(tmp_path)
    store.path(CFG).parent.mkdir(parents=True, exist_ok=True)
    store.path(CFG).write_text("stray")
    with pytest.warns(UserWarning, match="damaged"):
        assert store.load(CFG) is None
    [aside] = tmp_path.glob(f".damaged-{store.key(CFG)}-*")
    assert aside.read_text() == "stray"


def test_damaged_entry_in_a_read_only_cache_is_left_in_place_D10(tmp_path, read_only, monkeypatch):
    store = RunStore(tmp_path / "c")
    store.get_or_train(CFG)
    entry = store.path(CFG)
    (entry / "run.json").write_text("{")
    read_only(tmp_path / "c")
    with pytest.warns(UserWarning, match="damaged .* could not be moved aside"):
        assert store.load(CFG) is None
    assert (entry / "run.json").read_text() == "{"
    _forbid_training(monkeypatch)
    with pytest.warns(UserWarning), pytest.raises(CacheError):
        store.get_or_train(CFG)


def test_stale_temporary_folders_are_swept_D11(tmp_path):
    store = RunStore(tmp_path)
    run = store.get_or_train(CFG)
    other = store.key(CFG.replace(seed=1))
    stale, fresh = tmp_path / f".tmp-{other}-killed", tmp_path / f".tmp-{other}-writing"
    for folder in (stale, fresh):
        folder.mkdir()
        (folder / "tensors.safetensors").write_bytes(b"partial")
    old = time.time() - cache_mod.STALE_TMP_S - 60
    os.utime(stale, (old, old))
    measures = tmp_path / "measures" / store.key(CFG)
    measures.mkdir(parents=True)
    (measures / ".tmp-killed").write_text("{")
    os.utime(measures / ".tmp-killed", (old, old))
    RunStore(tmp_path).save(run)  # any write sweeps, once per store
    store.memo(CFG, "m", {}, lambda: 1)
    assert not stale.exists() and fresh.exists() and not (measures / ".tmp-killed").exists()


def test_stale_temporary_folder_of_a_locked_key_is_kept_D11(tmp_path):
    store = RunStore(tmp_path)
    run = store.get_or_train(CFG)
    other = store.key(CFG.replace(seed=1))
    slow = tmp_path / f".tmp-{other}-slow"
    slow.mkdir()
    old = time.time() - cache_mod.STALE_TMP_S - 60
    os.utime(slow, (old, old))
    with RunStore(tmp_path)._locked([other]):  # its writer is alive, if slow
        done = threading.Thread(target=RunStore(tmp_path).save, args=(run,))
        done.start()
        done.join()
    assert slow.exists()


def test_concurrent_callers_train_a_key_once_D13a(tmp_path, monkeypatch):
    """Two workers (threads here: flock locks open files, so threads exclude each other as processes
    do) ask for the same run; the first trains, holding the key, the second waits and loads."""
    trained = cache_mod.train(CFG)
    calls, first_trains, second_looked = [], threading.Event(), threading.Event()
    real_load = RunStore.load

    def slow_train(cfg, progress=None, init=None):
        calls.append(cfg.seed)
        first_trains.set()
        second_looked.wait(timeout=2)  # without the lock, the second worker finds nothing and trains too
        return trained

    def load(self, cfg):
        if threading.current_thread().name == "second":
            second_looked.set()
        return real_load(self, cfg)
    monkeypatch.setattr(cache_mod, "train", slow_train)
    monkeypatch.setattr(RunStore, "load", load)
    runs = {}
    workers = [threading.Thread(target=lambda n=n: runs.update({n: RunStore(tmp_path).get_or_train(CFG)}), name=n)
               for n in ("first", "second")]
    workers[0].start()
    assert first_trains.wait(timeout=60)
    workers[1].start()
    for w in workers:
        w.join()
    assert calls == [0] and set(runs) == {"first", "second"}


def test_empty_cache_variable_means_unset_D24(monkeypatch):
    monkeypatch.setenv("LOSSSCAPE_CACHE", "")
    assert RunStore().root == cache_mod.Path("cache")


# -- stale runs: the data's identity is part of the key ----------------------------------------

def _keys(cfg):
    """The key a fresh store gives cfg (a store fingerprints the data once, then keeps it)."""
    return RunStore("unused").key(cfg)


def test_new_release_of_a_data_generator_changes_the_key_stale_runs(monkeypatch):
    import importlib.metadata
    before = _keys(CFG)
    assert _keys(CFG) == before  # nothing changed: same key
    real = importlib.metadata.version
    monkeypatch.setattr(importlib.metadata, "version", lambda pkg: "99.0" if pkg == "mnist1d" else real(pkg))
    assert _keys(CFG) != before
    digits = CFG.replace(dataset="digits", n_samples=None, model="mlp")
    assert _keys(digits) == _keys(digits) != _keys(CFG)


def _image(path, colour):
    from PIL import Image
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), colour).save(path)


def test_cats_vs_dogs_folder_is_part_of_the_key_stale_runs(tmp_path, monkeypatch):
    import shutil
    cfg = CFG.replace(dataset="cats_vs_dogs", n_samples=None)
    data = tmp_path / "data"
    for i in range(3):
        _image(data / f"cat.{i}.png", (200, 10 * i, 0))
        _image(data / f"dog.{i}.png", (0, 10 * i, 200))
    monkeypatch.setenv("LOSSSCAPE_DATA", str(data))
    before = _keys(cfg)
    assert _keys(cfg) == before
    shutil.copytree(data, tmp_path / "copy")  # same names, sizes and times elsewhere: the same data
    monkeypatch.setenv("LOSSSCAPE_DATA", str(tmp_path / "copy"))
    assert _keys(cfg) == before
    _image(tmp_path / "copy" / "dog.3.png", (0, 0, 0))  # n_samples=None: every image found is used
    assert _keys(cfg) != before
    other = tmp_path / "other"
    for i in range(3):
        _image(other / "cat" / f"{i}.png", (10 * i, 200, 0))
        _image(other / "dog" / f"{i}.png", (10 * i, 0, 200))
    monkeypatch.setenv("LOSSSCAPE_DATA", str(other))
    assert _keys(cfg) != before


def test_mnist_files_contents_are_part_of_the_key_stale_runs(tmp_path, monkeypatch):
    import shutil
    cfg = CFG.replace(dataset="mnist", n_samples=None, model="mlp")
    names = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
    for name in names:
        (tmp_path / "a" / name).parent.mkdir(exist_ok=True)
        (tmp_path / "a" / name).write_bytes(name.encode() * 10)
    monkeypatch.setenv("LOSSSCAPE_DATA", str(tmp_path / "a"))
    before = _keys(cfg)
    shutil.copytree(tmp_path / "a", tmp_path / "b", copy_function=shutil.copyfile)  # new mtimes, same bytes
    monkeypatch.setenv("LOSSSCAPE_DATA", str(tmp_path / "b"))
    assert _keys(cfg) == before
    labels = tmp_path / "b" / names[1]
    labels.write_bytes(labels.read_bytes()[::-1])  # same size, other contents
    os.utime(labels, ns=(1, 1))  # a file system with coarse times may not have moved the mtime
    assert _keys(cfg) != before
