"""Content-addressed run store: cache/<key>/{run.json, tensors.safetensors, manifest.json}.

The key hashes the canonical config (seed and world size included), a fingerprint of the dataset
(lossscape.data.fingerprint), the torch version, the device type, the source of the modules that
decide what training computes, the source file of a user's model factory (a "package.module:factory"
model; code that file imports is not hashed), and CACHE_FORMAT. Report and geometry code are left out of that hash
on purpose: editing a figure must not retrain every run.

The store never serves a wrong run and never loses one:
- an entry is written to a temporary folder and renamed into place, so a killed run leaves no entry;
  `.tmp-*` folders that killed writers leave behind are removed once they are STALE_TMP_S old and
  their key is not locked;
- manifest.json holds the entry's key and the sha256 of every other file, run.json included, and
  run.json's config must equal the one asked for: an entry that fails either check is damaged. A
  damaged entry is moved aside to `.damaged-<key>-<random>`, with a warning, and recomputed; it is
  never deleted. An entry that cannot be read (a PermissionError in a shared cache) is left as it
  is: the run is recomputed and kept in memory, not written over the other entry;
- new files and folders get the cache folder's group permission bits, so a group-shared cache
  stays readable by the whole group whatever each user's umask;
- whether the cache can take a new entry is checked before training, with a one-line CacheError;
  a trained run whose write fails anyway is returned, with a warning;
- each key has a lock (flock on `.locks/<key>`), held while its run is looked up, trained and
  stored, so concurrent processes (pytest-xdist workers) train a key once: the second waits, then
  loads.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import stat
import tempfile
import threading
import time
import uuid
import warnings
from functools import lru_cache
from pathlib import Path

import torch
from safetensors import SafetensorError

from .config import RunConfig, is_spec, spec_source_digest
from .data import fingerprint
from .run import RUN_FILES, Run
from .train import train, train_population

# The entry layout and what the key covers. Changing either changes every key: old entries are then
# simply not found, and `.damaged-*` / old key folders can be deleted by hand.
# 2: manifest.json with every file's checksum; the dataset fingerprint in the key.
# 3: run.json and tensors.safetensors as Run.save writes them: cycle snapshots and record_snapshots
#    epochs apart (`snapshot_epochs`), the key in the manifest only.
# 4: history rows carry only the splits evaluated at their epoch (the stop rules' and the config's
#    eval_every_epoch; every split at the last epoch and early_stop's best), and run.json records
#    which (`evaluated_epochs`). A format-3 entry has every split at every epoch: its rows would
#    still read, but its eval_time_s means more work than the same config's run does now, and its
#    run.json has no record to check.
CACHE_FORMAT = 4
# The modules whose code changes what a run computes.
_TRAINING_SOURCES = ("config.py", "data.py", "data_order.py", "models.py", "schedules.py", "freezeout.py",
                     "losses.py", "stacked_mlp.py", "strategies.py", "engine.py", "parallel.py", "train.py")
_MANIFEST = "manifest.json"
_CHECKED_FILES = RUN_FILES
# The engine paths chosen per step shape and machine (RunStore.engine_path), beside the entries.
ENGINE_PATHS = "engine_paths.json"
# A writer renames its temporary folder within seconds of creating it; one an hour old is a killed writer's.
STALE_TMP_S = 3600


class CacheError(OSError):
    """The cache cannot take a new run; raised before training, the message is one line."""


class _Damaged(Exception):
    """An entry that is not the run its key names: corrupt, incomplete, edited or foreign."""


@lru_cache(maxsize=None)
def source_hash(kind: str = "training") -> str:
    """Hash of the code behind a run ("training") or behind a measurement of one ("geometry")."""
    root = Path(__file__).parent
    paths = ([root / n for n in _TRAINING_SOURCES] if kind == "training"
             # geometry's default loss, and the written-out forward of its MLP surfaces
             else sorted((root / "geometry").glob("*.py")) + [root / "losses.py", root / "stacked_mlp.py"])
    h = hashlib.sha256()
    for path in paths:
        if path.exists():
            h.update(path.name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def default_root() -> Path:
    # An empty variable means unset (as for LOSSSCAPE_DATA), not the current directory.
    return Path(os.environ.get("LOSSSCAPE_CACHE") or "cache")


# The locks this thread holds, by lock file: get_or_train holds a key's lock across load and save,
# and a second flock on the same file from the same thread would wait on itself.
_held = threading.local()


class RunStore:
    def __init__(self, root: str | os.PathLike | None = None):
        self.root = Path(root) if root is not None else default_root()
        self.hits = self.misses = 0
        # The data is fingerprinted once per store: listing 25,000 images per key would dominate lookups.
        self._fingerprints: dict[str, str] = {}
        self._swept = False

    def key(self, cfg: RunConfig) -> str:
        """The entry's name. The dataset fingerprint follows LOSSSCAPE_DATA, the folder training reads."""
        if cfg.dataset not in self._fingerprints:
            self._fingerprints[cfg.dataset] = fingerprint(cfg.dataset)
        device = "cuda" if cfg.device == "cuda" else "cpu"
        parts = {"config": json.loads(cfg.to_json()), "torch": torch.__version__.split("+")[0],
                 "device": device, "source": source_hash(), "format": CACHE_FORMAT,
                 "data": self._fingerprints[cfg.dataset]}
        if is_spec(cfg.model):  # a user's factory: its module's source (built-in models' keys stay as they were)
            parts["model_source"] = spec_source_digest(cfg.model)
        blob = json.dumps(parts, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:32]

    def path(self, cfg: RunConfig) -> Path:
        return self.root / self.key(cfg)

    # -- read ------------------------------------------------------------------------------
    def load(self, cfg: RunConfig) -> Run | None:
        """The stored run of cfg, or None: absent, damaged (moved aside), or unreadable (left alone)."""
        key = self.key(cfg)
        path = self.root / key
        if not os.path.lexists(path):
            return None
        with self._locked([key]):
            try:
                return _read_entry(path, key, cfg)
            except _Damaged as exc:
                self._set_aside(path, exc)
            except OSError as exc:  # not damage (a private file in a shared cache, an I/O error): keep it
                warnings.warn(f"cache entry {path} cannot be read ({_reason(exc)}); recomputing, and leaving "
                              "the entry as it is", stacklevel=2)
            return None

    def _set_aside(self, path: Path, why: _Damaged) -> None:
        aside = path.with_name(f".damaged-{path.name}-{uuid.uuid4().hex[:8]}")
        try:
            path.rename(aside)
        except OSError as exc:  # e.g. a read-only cache: the entry stays, this process recomputes
            warnings.warn(f"cache entry {path} is damaged ({why}) and could not be moved aside "
                          f"({_reason(exc)}); recomputing", stacklevel=3)
        else:
            warnings.warn(f"cache entry {path} is damaged ({why}); moved to {aside.name}; recomputing",
                          stacklevel=3)

    # -- write -----------------------------------------------------------------------------
    def save(self, run: Run) -> Path:
        key = self.key(run.config)
        with self._locked([key]):
            return self._write(run, key)

    def _write(self, run: Run, key: str) -> Path:
        dest = self.root / key
        self._makedirs(self.root)
        self._sweep_stale_tmp()
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{key}-", dir=self.root))
        try:
            file_mode, dir_mode = self._modes()
            tmp.chmod(dir_mode)  # mkdtemp's folder is private
            _write_entry(run, key, tmp, file_mode)
            try:
                os.rename(tmp, dest)
            except OSError:
                if not os.path.lexists(dest):
                    raise
                # an entry is there already: another process's (as good), or one this process could not
                # read, which is not ours to replace
                shutil.rmtree(tmp)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return dest

    def _keep(self, run: Run) -> None:
        """Store a freshly trained run; a failed write costs the cache entry, not the result."""
        key = self.key(run.config)
        try:
            self._write(run, key)
        except (OSError, SafetensorError) as exc:  # safetensors reports a full disk as its own error
            warnings.warn(f"run {self.root / key} (seed {run.config.seed}) could not be stored ({_reason(exc)}); "
                          "it is used but not cached", stacklevel=3)

    def _check_writable(self, key: str) -> None:
        """Raise CacheError unless an entry for `key` can be created: checked before training, so
        that a cache that cannot take the run fails in a second, not after the run."""
        try:
            if self.root.exists() and not self.root.is_dir():
                raise NotADirectoryError(f"{self.root} is a file")
            self._makedirs(self.root)
            # The probe is named like a writer's temporary folder: if it is left behind, it is swept.
            os.rmdir(tempfile.mkdtemp(prefix=f".tmp-{key}-", dir=self.root))
        except OSError as exc:
            raise CacheError(f"cache folder {self.root.absolute()} cannot take new runs ({_reason(exc)}); "
                             "allowed: a folder this user can write, given by --cache-dir or LOSSSCAPE_CACHE") from None

    def memo(self, cfg: RunConfig, name: str, params: dict, compute):
        """A JSON-able measurement of a cached run (a sharpness, an eigenvalue), computed once.

        Stored beside the runs under measures/<run key>/, keyed by the name, the parameters and
        the geometry code's hash, and written atomically like a run entry.
        """
        blob = json.dumps({"name": name, "params": params, "geometry": source_hash("geometry")}, sort_keys=True)
        path = self.root / "measures" / self.key(cfg) / (hashlib.sha256(blob.encode()).hexdigest()[:24] + ".json")
        if path.exists():
            try:
                return json.loads(path.read_text())["value"]
            except (ValueError, KeyError) as exc:
                warnings.warn(f"measurement {path} is unreadable ({exc}); recomputing", stacklevel=2)
        value = compute()
        self._makedirs(path.parent)
        _remove_stale(path.parent.glob(".tmp-*"), os.unlink)  # a killed memo writer's file
        _write_json(path, {"name": name, "params": params, "value": value}, self._modes()[0], ".tmp-")
        return value

    # -- train when missing ----------------------------------------------------------------
    def get_or_train(self, cfg: RunConfig, progress=None, init=None) -> Run:
        return self._get_or_make([cfg], lambda missing: [train(missing[0], progress=progress, init=init)])[0]

    def get_or_train_population(self, cfg: RunConfig, seeds, progress=None, init=None) -> list[Run]:
        """Cached members come from the store; the missing ones train together as one population.
        `init`: {seed: state} of a continuation (cfg.init_from), as train_population takes it."""
        return self._get_or_make([cfg.replace(seed=int(s)) for s in seeds],
                                 lambda missing: train_population(cfg, [c.seed for c in missing], progress=progress,
                                                                  init=init, record=self.engine_path))

    def engine_path(self, key: str, choose) -> dict:
        """The engine path recorded for `key` (a step shape on a machine, lossscape.path_choice) in
        ENGINE_PATHS, or choose()'s, recorded there: a population trains the same way on every
        rerun on the same machine, in every process sharing the cache. The file is read and
        rewritten under its own lock, atomically; one that cannot be read or written is left as it
        is (with a warning) and the path is chosen for this process only."""
        path = self.root / ENGINE_PATHS
        with self._locked([ENGINE_PATHS]):
            try:
                paths = json.loads(path.read_text()) if path.exists() else {}
                if not isinstance(paths, dict):
                    raise ValueError(f"got a {type(paths).__name__}, not an object")
            except (OSError, ValueError) as exc:
                warnings.warn(f"engine paths {path} cannot be read ({_reason(exc)}); choosing for this process "
                              "and leaving the file as it is", stacklevel=2)
                return choose()
            if key in paths:
                return paths[key]
            paths[key] = choice = choose()
            try:
                self._makedirs(self.root)
                _remove_stale(self.root.glob(f".{ENGINE_PATHS}.tmp-*"), os.unlink)  # a killed writer's file
                _write_json(path, paths, self._modes()[0], f".{ENGINE_PATHS}.tmp-")
            except OSError as exc:
                warnings.warn(f"engine paths {path} cannot be written ({_reason(exc)}); the path is chosen for "
                              "this process only", stacklevel=2)
        return choice

    def _get_or_make(self, cfgs: list[RunConfig], make) -> list[Run]:
        """The runs of cfgs: loaded where stored, else made by make(missing cfgs) and stored.

        The keys' locks are held throughout, so a second process asking for the same runs waits
        and then loads them instead of training them again.
        """
        keys = {c: self.key(c) for c in cfgs}
        with self._locked(keys.values()):
            found = {c: self.load(c) for c in dict.fromkeys(cfgs)}
            missing = [c for c, run in found.items() if run is None]
            self.hits += sum(found[c] is not None for c in cfgs)
            self.misses += sum(found[c] is None for c in cfgs)
            if missing:
                self._check_writable(keys[missing[0]])
                for c, run in zip(missing, make(missing)):
                    self._keep(run)
                    found[c] = run
        return [found[c] for c in cfgs]

    # -- locks, modes, temporary folders ---------------------------------------------------
    @contextlib.contextmanager
    def _locked(self, keys):
        """Hold every key's lock, taken in sorted order so that two processes never wait on each
        other crosswise. A cache where no lock file can be made (read-only) is read unlocked: no
        writer of this store can be writing it either."""
        held = _held.__dict__.setdefault("paths", set())
        with contextlib.ExitStack() as stack:
            for key in sorted(set(keys)):
                lock = os.path.abspath(self.root / ".locks" / key)
                if lock in held:
                    continue
                fd = self._open_lock(Path(lock))
                if fd is None:
                    continue
                stack.callback(os.close, fd)  # closing releases the lock
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                except OSError:  # a file system without locks: read and write unlocked, as before locks
                    continue
                held.add(lock)
                stack.callback(held.discard, lock)
            yield

    def _open_lock(self, path: Path) -> int | None:
        try:
            self._makedirs(path.parent)
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL)
                os.fchmod(fd, self._modes()[0])  # other users of a shared cache open it too
                return fd
            except FileExistsError:
                pass
            try:
                return os.open(path, os.O_RDWR)  # NFS emulates flock with fcntl locks, which need write access
            except PermissionError:
                return os.open(path, os.O_RDONLY)  # a local flock needs none
        except OSError:
            return None

    def _modes(self) -> tuple[int, int]:
        """(file mode, folder mode) for new files and folders: what the umask allows, plus the cache
        folder's group bits (and its setgid bit, which a chmod would otherwise clear), so that a
        group-shared cache stays readable by the group. safetensors alone writes 0600."""
        umask = os.umask(0)
        os.umask(umask)
        root_mode = self.root.stat().st_mode
        group = root_mode & 0o070
        return (0o666 & ~umask) | (group & 0o066), (0o777 & ~umask) | group | (root_mode & stat.S_ISGID)

    def _makedirs(self, folder: Path) -> None:
        """mkdir -p; folders made below the cache folder get its shared modes."""
        if folder.is_dir():
            return
        if folder != self.root:
            self._makedirs(folder.parent)
        try:
            folder.mkdir(parents=folder == self.root)
        except FileExistsError:
            if not folder.is_dir():
                raise
            return  # made meanwhile by another process
        if folder != self.root:
            folder.chmod(self._modes()[1])

    def _sweep_stale_tmp(self) -> None:
        """Remove, once per store, the temporary folders of writers killed before their rename."""
        if self._swept:
            return
        self._swept = True

        def remove_unlocked(folder: Path):
            key = folder.name[len(".tmp-"):].split("-")[0]
            lock = self._open_lock(self.root / ".locks" / key)
            if lock is None:
                return
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # raises if a writer holds the key
                shutil.rmtree(folder)
            finally:
                os.close(lock)
        _remove_stale(self.root.glob(".tmp-*"), remove_unlocked)


def _remove_stale(paths, remove) -> None:
    """remove(path) for each path last modified more than STALE_TMP_S ago; failures are left for later."""
    cutoff = time.time() - STALE_TMP_S
    for path in paths:
        with contextlib.suppress(OSError):
            if path.stat().st_mtime < cutoff:
                remove(path)


def _write_entry(run: Run, key: str, folder: Path, file_mode: int) -> None:
    run.save(folder)
    manifest = {"format": CACHE_FORMAT, "key": key, "sha256": {n: _sha256(folder / n) for n in _CHECKED_FILES}}
    (folder / _MANIFEST).write_text(json.dumps(manifest, indent=1))
    for name in (*_CHECKED_FILES, _MANIFEST):
        (folder / name).chmod(file_mode)


def _read_entry(folder: Path, key: str, cfg: RunConfig) -> Run:
    """The run in `folder`, verified against its key and config.

    Raises _Damaged when the entry is not that run, and OSError (a PermissionError, an I/O error)
    when it cannot be read, which says nothing about the entry.
    """
    try:
        if not folder.is_dir():
            raise _Damaged("not a folder")
        manifest = json.loads((folder / _MANIFEST).read_text())
        if manifest["format"] != CACHE_FORMAT or manifest["key"] != key:
            raise _Damaged(f"its manifest names format {manifest['format']}, key {manifest['key']}")
        names = sorted(p.name for p in folder.iterdir())
        if names != sorted([*manifest["sha256"], _MANIFEST]):
            raise _Damaged(f"it holds {', '.join(names)}, its manifest lists {', '.join(manifest['sha256'])}")
        for name, digest in manifest["sha256"].items():
            if _sha256(folder / name) != digest:
                raise _Damaged(f"{name} does not match its checksum")
        run = Run.load(folder)
        if run.config.to_dict() != cfg.to_dict():
            raise _Damaged("run.json holds a different run than the one asked for")
        return run
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError) as exc:  # a file missing, or not a file
        raise _Damaged(_reason(exc)) from None
    except (ValueError, KeyError, TypeError, AttributeError, SafetensorError) as exc:  # unparseable, wrong shape
        raise _Damaged(f"{type(exc).__name__}: {exc}") from None


def _write_json(path: Path, obj, mode: int, prefix: str) -> None:
    """Write obj to path atomically: a temporary file named `prefix`... beside it, renamed into place."""
    fd, tmp = tempfile.mkstemp(prefix=prefix, dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=1)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:  # e.g. a value JSON cannot hold: no stray temporary file
        os.unlink(tmp)
        raise


def _reason(exc: Exception) -> str:
    strerror, filename = getattr(exc, "strerror", None), getattr(exc, "filename", None)
    return f"{strerror}: {filename}" if strerror and filename else str(exc)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
