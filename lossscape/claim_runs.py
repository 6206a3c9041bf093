"""The runs claims train beyond their profile's grids, as configs.

The claims build these configs here, and lossscape.plan counts (and lossscape.sweep trains) the
same ones, so a swept cache leaves `pytest claims` nothing to train. One kind cannot be listed
before training: X-1 retrains lr_grid's smallest-batch runs up to the epoch they first reached
X-2's target, which only their results say; those few short runs train in the claims session. Nor
can GEO-9's continuations (grid `escape`): each starts from a parent run's final weights, which
exist only once the parent has trained, so they too train in the claims session.
"""
from __future__ import annotations

from .config import RunConfig
from .profiles import Profile, Setting

UNFROZEN_T0 = 1.0  # FO's baseline: every stage keeps its LR to the end, nothing freezes
FO_MODELS = ("resnet_small", "densenet_small", "vgg_small")  # FO-1's two models, FO-2's VGG
FO3_MODEL = "resnet_small"  # FO-3 also trains it at params.fo.t0_levels
PER_MODEL_GRIDS = ("freezeout",)  # grids the claims cross with FO_MODELS, not with the settings
CONTINUATION_GRIDS = ("escape",)  # GEO-9: runs that start from a parent's weights (RunConfig.init_from)


def freezeout_config(profile: Profile, model: str, **changes) -> RunConfig:
    """Grid `freezeout` for `model` (at its default width), with `changes`."""
    (cfg,) = profile.grid("freezeout").configs(Setting(model, {"model": model})).values()
    return cfg.replace(**changes)


def fo_rows(profile: Profile) -> dict[str, dict]:
    """FO-1's rows: "primary" (the grid's FreezeOut setting) and, where the profile gives
    params.fo.secondary (a table of freeze_* fields), "secondary"."""
    rows = {"primary": {}}
    secondary = profile.params.get("fo", {}).get("secondary")
    if secondary:
        rows["secondary"] = dict(secondary)
    return rows


def data_parallel(cfg: RunConfig, k: int) -> RunConfig:
    """DP-1 / DP-2: the same run on k data-parallel processes."""
    return cfg.replace(world_size=k)


def per_worker_batch(cfg: RunConfig, k: int) -> RunConfig:
    """DP-1's control: one process at the per-worker batch."""
    return cfg.replace(batch_size=cfg.batch_size // k)


def batch_growth(cfg: RunConfig) -> RunConfig:
    """LR-6: the schedules grid with the batch grown where the LR would decay."""
    return cfg.replace(decay_target="batch")


def dp_devices_present(device: str, k: int) -> bool:
    """k processes need k GPUs under nccl; gloo's CPU processes need nothing (DP claims skip otherwise)."""
    import torch
    return device != "cuda" or torch.cuda.device_count() >= k


def claim_cells(profile: Profile):
    """(owner, setting, label, grid spec, config) for every config a claims session of `profile`
    trains (each for the grid's seeds, as a population where the grid says so), but X-1's
    retrains. owner: a setting id, or the model for the per-model grids (setting None there)."""
    for setting, spec, cfg in profile.cells():
        if spec.name not in PER_MODEL_GRIDS + CONTINUATION_GRIDS:
            yield setting.id, setting, spec.name, spec, cfg
    k = profile.params.get("dp", {}).get("world_size")
    for setting in profile.settings:
        if k and "dp_equality" in profile.grids and setting.runs_grid("dp_equality"):
            spec = profile.grid("dp_equality")
            for cfg in spec.configs(setting).values():
                if dp_devices_present(cfg.device, k):
                    yield setting.id, setting, "dp_equality DP-1 on k ranks", spec, data_parallel(cfg, k)
                    yield setting.id, setting, "dp_equality DP-1 control", spec, per_worker_batch(cfg, k)
        if "schedules" in profile.grids and setting.runs_grid("schedules"):
            spec = profile.grid("schedules")
            for cfg in spec.configs(setting).values():
                yield setting.id, setting, "schedules LR-6 batch growth", spec, batch_growth(cfg)
    if "freezeout" in profile.grids:
        spec = profile.grid("freezeout")
        levels = profile.params.get("fo", {}).get("t0_levels", [])
        for model in FO_MODELS:
            cfgs = [freezeout_config(profile, model), freezeout_config(profile, model, freeze_t0=UNFROZEN_T0)]
            if model in FO_MODELS[:2]:  # FO-1's models also train its secondary row
                cfgs += [freezeout_config(profile, model, **c) for r, c in fo_rows(profile).items() if r != "primary"]
            if model == FO3_MODEL:
                cfgs += [freezeout_config(profile, model, freeze_t0=t) for t in sorted(levels)]
            seen = []
            for cfg in cfgs:
                if cfg not in seen:
                    seen.append(cfg)
                    yield model, None, f"freezeout t0={cfg.freeze_t0:g} {cfg.freeze_spacing}", spec, cfg
