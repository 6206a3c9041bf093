"""Run: what one training produced, and its form on disk.

    run.save(folder)          # run.json (config, history, scalars) + tensors.safetensors
    run = Run.load(folder)

The run cache (lossscape.cache) stores entries in this form and adds its checksums; a spawned
data-parallel run (lossscape.parallel) hands rank 0's Run back to its caller through it.

Which epochs carry which splits. `history` has one row per epoch; a row holds `{split}_loss` and
`{split}_acc` only for the splits evaluated at that epoch (lossscape.engine):
- every epoch: the splits the stop rules read (the training loss, for the divergence rule and
  target_loss; the validation loss under early_stop) and the config's eval_every_epoch
  (config.epoch_splits);
- the last epoch: every split, from the final weights;
- under early_stop, the best epoch (`best_epoch`, whose weights final_state holds): every split,
  from those weights.
`evaluated_epochs` ({split: [epochs, 1-based]}) states it per run, and is saved with it; reading a
split at an epoch that did not evaluate it raises a KeyError that says so, never a NaN. A row's
eval_time_s is the time spent evaluating the splits it carries (the end-of-training passes too).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from .config import RunConfig
from .models import build_model

# The files a saved Run consists of.
RUN_FILES = ("run.json", "tensors.safetensors")
_SPLIT_METRIC = re.compile(r"(train|val|test)_(loss|acc)")


class HistoryRow(dict):
    """One epoch's row: a dict whose missing split metric says why it is missing."""

    def __missing__(self, key):
        match = _SPLIT_METRIC.fullmatch(key) if isinstance(key, str) else None
        if match:
            raise KeyError(f"{key}: epoch {self.get('epoch')} did not evaluate the {match[1]} split (every epoch "
                           f"evaluates the stop rules' splits and RunConfig.eval_every_epoch, the last epoch and "
                           f"early_stop's best every split); declare a per-epoch curve with eval_every_epoch")
        raise KeyError(key)


def evaluated_epochs(history: list[dict]) -> dict[str, list[int]]:
    """split -> the epochs whose rows carry its loss and accuracy."""
    out: dict[str, list[int]] = {}
    for row in history:
        for key in row:
            match = _SPLIT_METRIC.fullmatch(key)
            if match and match[2] == "loss":
                out.setdefault(match[1], []).append(row["epoch"])
    return out


@dataclass
class Run:
    config: RunConfig
    history: list[dict]
    update_norms: np.ndarray
    initial_state: dict[str, torch.Tensor]
    final_state: dict[str, torch.Tensor]
    stop_reason: str  # target_loss | early_stop | max_epochs | diverged
    total_time_s: float
    device: str
    input_shape: tuple[int, ...]
    n_classes: int
    # cyclic_cosine: the state at the end of each cycle, taken after step snapshot_steps[i]
    snapshots: list[dict[str, torch.Tensor]] = field(default_factory=list)
    snapshot_steps: list[int] = field(default_factory=list)
    # record_snapshots: epoch -> the state at that epoch's end, for the listed epochs the run reached
    epoch_snapshots: dict[int, dict[str, torch.Tensor]] = field(default_factory=dict)
    best_epoch: int | None = None  # early_stop: the epoch whose weights final_state holds
    # how the run was trained: {"kind": "single" | "loop" | "stacked", "members_per_chunk", "threads",
    # and for a probed population "probe_s_per_member_step": {threads: {chunk: seconds}}} (lossscape.path_choice)
    engine_path: dict = field(default_factory=dict)
    # split -> the epochs that evaluated it (module docstring), from the rows
    evaluated_epochs: dict[str, list[int]] = field(init=False)

    def __post_init__(self):
        self.history = [HistoryRow(row) for row in self.history]
        self.evaluated_epochs = evaluated_epochs(self.history)

    def model(self, state: dict[str, torch.Tensor] | None = None) -> nn.Module:
        """A fresh module holding the final weights (or `state`), in eval mode, on the CPU."""
        m = build_model(self.config.model, self.input_shape, self.n_classes, self.config.width)
        m = m.to(getattr(torch, self.config.dtype))
        m.load_state_dict(state if state is not None else self.final_state)
        return m.eval()

    @property
    def epochs_run(self) -> int:
        return len(self.history)

    def metric(self, name: str) -> np.ndarray:
        """`name` at every epoch; a split metric that some epoch did not evaluate raises KeyError."""
        return np.array([h[name] for h in self.history], dtype=float)

    # -- on disk ---------------------------------------------------------------------------
    def save(self, folder: str | Path) -> None:
        """Write the run into `folder` (which must exist) as RUN_FILES."""
        folder = Path(folder)
        states = {"initial": self.initial_state, "final": self.final_state}
        states.update({f"snapshot{i}": s for i, s in enumerate(self.snapshots)})
        states.update({f"epoch{e}": s for e, s in self.epoch_snapshots.items()})
        tensors = {f"{name}/{k}": v.contiguous() for name, state in states.items() for k, v in state.items()}
        tensors["update_norms"] = torch.from_numpy(np.ascontiguousarray(self.update_norms, dtype=np.float64))
        save_file(tensors, folder / "tensors.safetensors")
        meta = {
            "config": self.config.to_dict(), "history": self.history, "stop_reason": self.stop_reason,
            "total_time_s": self.total_time_s, "device": self.device, "input_shape": list(self.input_shape),
            "n_classes": self.n_classes, "n_snapshots": len(self.snapshots), "snapshot_steps": self.snapshot_steps,
            "snapshot_epochs": list(self.epoch_snapshots), "best_epoch": self.best_epoch,
            "engine_path": self.engine_path, "evaluated_epochs": self.evaluated_epochs,
            "state_keys": list(self.final_state),
        }
        (folder / "run.json").write_text(json.dumps(meta, indent=1))

    @classmethod
    def load(cls, folder: str | Path) -> "Run":
        """The run `save` wrote into `folder`. Raises OSError where a file cannot be read, and
        ValueError, KeyError or safetensors' error where the files are not a saved Run (its record
        of evaluated epochs disagreeing with its rows included)."""
        folder = Path(folder)
        meta = json.loads((folder / "run.json").read_text())
        t = load_file(folder / "tensors.safetensors")
        state = lambda name: {k: t[f"{name}/{k}"] for k in meta["state_keys"]}
        run = cls(
            config=RunConfig.from_dict(meta["config"]), history=meta["history"],
            update_norms=t["update_norms"].numpy(), initial_state=state("initial"), final_state=state("final"),
            stop_reason=meta["stop_reason"], total_time_s=meta["total_time_s"], device=meta["device"],
            input_shape=tuple(meta["input_shape"]), n_classes=meta["n_classes"],
            snapshots=[state(f"snapshot{i}") for i in range(meta["n_snapshots"])],
            snapshot_steps=meta["snapshot_steps"],
            epoch_snapshots={int(e): state(f"epoch{e}") for e in meta["snapshot_epochs"]},
            best_epoch=meta["best_epoch"], engine_path=meta["engine_path"])
        if run.evaluated_epochs != meta["evaluated_epochs"]:
            raise ValueError(f"evaluated_epochs: run.json records {meta['evaluated_epochs']}, its rows carry "
                             f"{run.evaluated_epochs}")
        return run
