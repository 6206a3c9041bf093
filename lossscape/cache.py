"""Content-addressed run store: cache/<key>/{run.json, tensors.safetensors}.

The key hashes the canonical config (seed and world size included), the torch version, the device
type and the source of the modules that decide what training computes. Report and geometry code
are left out of that hash on purpose: editing a figure must not retrain every run.

An entry is written to a temporary folder and renamed into place, so a killed run leaves no entry;
run.json records the sha256 of the tensor file, so a truncated or altered entry fails to load, is
reported with a warning, and is recomputed.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import warnings
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from .config import RunConfig
from .train import Run, train, train_population

FORMAT = 1
# The modules whose code changes what a run computes.
_TRAINING_SOURCES = ("config.py", "data.py", "models.py", "schedules.py", "freezeout.py", "train.py", "parallel.py")
_ENTRY_FILES = ("run.json", "tensors.safetensors")


@lru_cache(maxsize=None)
def source_hash(kind: str = "training") -> str:
    """Hash of the code behind a run ("training") or behind a measurement of one ("geometry")."""
    root = Path(__file__).parent
    paths = [root / n for n in _TRAINING_SOURCES] if kind == "training" else sorted((root / "geometry").glob("*.py"))
    h = hashlib.sha256()
    for path in paths:
        if path.exists():
            h.update(path.name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def default_root() -> Path:
    return Path(os.environ.get("LOSSSCAPE_CACHE", "cache"))


class RunStore:
    def __init__(self, root: str | os.PathLike | None = None, data_dir: str | os.PathLike | None = None):
        self.root = Path(root) if root is not None else default_root()
        self.data_dir = data_dir
        self.hits = self.misses = 0

    def key(self, cfg: RunConfig) -> str:
        device = "cuda" if cfg.device == "cuda" else "cpu"
        blob = json.dumps({"config": json.loads(cfg.to_json()), "torch": torch.__version__.split("+")[0],
                           "device": device, "source": source_hash(), "format": FORMAT}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:32]

    def path(self, cfg: RunConfig) -> Path:
        return self.root / self.key(cfg)

    # -- read ------------------------------------------------------------------------------
    def load(self, cfg: RunConfig) -> Run | None:
        path = self.path(cfg)
        if not path.exists():
            return None
        try:
            return _read_entry(path)
        except Exception as exc:  # any damage means: recompute, and say so
            warnings.warn(f"cache entry {path} is unreadable ({type(exc).__name__}: {exc}); recomputing", stacklevel=2)
            _discard(path)
            return None

    # -- write -----------------------------------------------------------------------------
    def save(self, run: Run) -> Path:
        dest = self.path(run.config)
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{dest.name}-", dir=self.root))
        try:
            tmp.chmod(0o777 & ~_umask())  # mkdtemp's folder is private; a cache may be shared like any folder
            _write_entry(run, tmp)
            try:
                os.rename(tmp, dest)
            except OSError:  # another process stored the same run first: theirs is as good
                shutil.rmtree(tmp)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return dest

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
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
        try:
            with os.fdopen(fd, "w") as f:
                json.dump({"name": name, "params": params, "value": value}, f)
            os.chmod(tmp, 0o666 & ~_umask())
            os.replace(tmp, path)
        except BaseException:  # e.g. a value JSON cannot hold: no stray temporary file
            os.unlink(tmp)
            raise
        return value

    def get_or_train(self, cfg: RunConfig, progress=None) -> Run:
        run = self.load(cfg)
        if run is not None:
            self.hits += 1
            return run
        self.misses += 1
        run = train(cfg, progress=progress)
        self.save(run)
        return run

    def get_or_train_population(self, cfg: RunConfig, seeds, progress=None) -> list[Run]:
        """Cached members come from the store; the missing ones train together as one population."""
        seeds = [int(s) for s in seeds]
        found = {s: self.load(cfg.replace(seed=s)) for s in seeds}
        missing = [s for s, r in found.items() if r is None]
        self.hits += len(seeds) - len(missing)
        self.misses += len(missing)
        if missing:
            for run in train_population(cfg, missing, progress=progress):
                self.save(run)
                found[run.config.seed] = run
        return [found[s] for s in seeds]


def _write_entry(run: Run, folder: Path) -> None:
    tensors = {f"initial/{k}": v.contiguous() for k, v in run.initial_state.items()}
    tensors.update({f"final/{k}": v.contiguous() for k, v in run.final_state.items()})
    for i, snap in enumerate(run.snapshots):
        tensors.update({f"snapshot{i}/{k}": v.contiguous() for k, v in snap.items()})
    tensors["update_norms"] = torch.from_numpy(np.ascontiguousarray(run.update_norms, dtype=np.float64))
    save_file(tensors, folder / "tensors.safetensors")
    meta = {
        "format": FORMAT, "config": run.config.to_dict(), "history": run.history, "stop_reason": run.stop_reason,
        "total_time_s": run.total_time_s, "device": run.device, "input_shape": list(run.input_shape),
        "n_classes": run.n_classes, "n_snapshots": len(run.snapshots), "snapshot_steps": run.snapshot_steps,
        "best_epoch": run.best_epoch, "engine_path": run.engine_path, "state_keys": list(run.final_state),
        "tensors_sha256": _sha256(folder / "tensors.safetensors"),
    }
    (folder / "run.json").write_text(json.dumps(meta, indent=1))


def _read_entry(folder: Path) -> Run:
    meta = json.loads((folder / "run.json").read_text())
    if meta.get("format") != FORMAT:
        raise ValueError(f"format {meta.get('format')} != {FORMAT}")
    if _sha256(folder / "tensors.safetensors") != meta["tensors_sha256"]:
        raise ValueError("tensor file checksum mismatch")
    t = load_file(folder / "tensors.safetensors")
    part = lambda prefix: {k: t[f"{prefix}/{k}"] for k in meta["state_keys"]}
    return Run(
        config=RunConfig.from_dict({**meta["config"], "decay_epochs": tuple(meta["config"]["decay_epochs"]),
                                    "record_snapshots": tuple(meta["config"]["record_snapshots"])}),
        history=meta["history"], update_norms=t["update_norms"].numpy(),
        initial_state=part("initial"), final_state=part("final"), stop_reason=meta["stop_reason"],
        total_time_s=meta["total_time_s"], device=meta["device"], input_shape=tuple(meta["input_shape"]),
        n_classes=meta["n_classes"], snapshots=[part(f"snapshot{i}") for i in range(meta["n_snapshots"])],
        snapshot_steps=meta["snapshot_steps"], best_epoch=meta["best_epoch"],
        engine_path=meta.get("engine_path", {}))  # entries written before engine paths were recorded


def _discard(path: Path) -> None:
    """Remove a damaged entry: only the files this store writes; anything else is left alone."""
    for name in _ENTRY_FILES:
        (path / name).unlink(missing_ok=True)
    try:
        path.rmdir()
    except OSError:
        # a fresh name each time: an earlier damaged copy of the same entry may already be aside
        aside = Path(tempfile.mkdtemp(prefix=f"{path.name}.damaged-", dir=path.parent))
        path.rename(aside / path.name)
        warnings.warn(f"{path} held files this store did not write; moved to {aside / path.name}", stacklevel=3)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
