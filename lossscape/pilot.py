"""X-1/X-2's target validation loss per setting, from a pilot, written back into the profile:
`lossscape pilot --profile NAME`.

The rule (the profile files state it beside `x.target_val_loss`): train lr_grid's LRs under
its stop rule on seed PILOT_SEED (outside every profile's seeds, so the claims' own runs are not
seen) at lr_grid's smallest and largest batch; take each batch size's best-LR minimum validation
loss, the largest of them, plus 10% for seed-to-seed spread and the batch sizes the pilot left
out, rounded up to two decimals. The pilot's runs go through the run cache like any other.
"""
from __future__ import annotations

import math
import re
from pathlib import Path

from .profiles import Profile, missing_data

PILOT_SEED = 1000
MARGIN = 1.10


def pilot_target(profile: Profile, setting, store) -> tuple[float, str]:
    """(target, the note that says where it came from) for one setting."""
    spec = profile.grid("lr_grid")
    sizes = sorted({min(spec.batch_sizes), max(spec.batch_sizes)})
    configs = spec.configs(setting)
    best = {}
    for bs in sizes:
        minima = {lr: float(store.get_or_train(cfg.replace(seed=PILOT_SEED)).metric("val_loss").min())
                  for (b, lr), cfg in configs.items() if b == bs}
        lr = min(minima, key=minima.get)
        best[bs] = (lr, minima[lr])
    worst = max(v for _, v in best.values())
    target = math.ceil(round(worst * MARGIN * 100, 9)) / 100
    minima = ", ".join(f"{v:.3f} (lr {lr:g})" for lr, v in best.values())
    note = (f"pilot seed {PILOT_SEED}, bs {'/'.join(map(str, sizes))}: best-LR minima {minima}; "
            f"{worst:.3f} x {MARGIN:g} = {worst * MARGIN:.4f}")
    return target, note


def write_targets(targets: dict[str, tuple[float, str]], path: Path) -> None:
    """Set `[params.x.target_val_loss]` entries in a profile file, keeping the rest of the file (its
    comments included) as it is; a placeholder comment saying the table is empty goes."""
    text = Path(path).read_text()
    header = "[params.x.target_val_loss]"
    lines = text.split("\n")
    if header not in lines:
        lines += ["", header]
    start = lines.index(header) + 1
    end = start
    while end < len(lines) and not lines[end].startswith("["):
        end += 1
    while end > start and not lines[end - 1].strip():  # the blank lines before the next table stay after it
        end -= 1
    keep = [line for line in lines[start:end]
            if not re.match(r"#\s*empty until", line)
            and not any(re.match(rf'"{re.escape(sid)}"\s*=', line) for sid in targets)]
    new = [f'"{sid}" = {target:.2f}  # {note}' for sid, (target, note) in targets.items()]
    lines[start:end] = keep + new
    Path(path).write_text("\n".join(lines))


def pilot(profile: Profile, store, *, say=print) -> dict[str, tuple[float, str]]:
    """Pilot every setting whose data is here, write the targets into the profile's file, return them."""
    targets = {}
    for setting in profile.settings:
        if not setting.runs_grid("lr_grid"):
            continue  # a source's own setting that runs only its source's claims, not
        reason = missing_data(setting)
        if reason:
            say(f"pilot: skipped {reason}")
            continue
        targets[setting.id] = pilot_target(profile, setting, store)
        say(f'pilot: {setting.id}: target {targets[setting.id][0]:.2f} ({targets[setting.id][1]})')
    if targets:
        write_targets(targets, profile.path)
        say(f"pilot: wrote {len(targets)} target(s) into [params.x.target_val_loss] of {profile.path}")
    return targets
