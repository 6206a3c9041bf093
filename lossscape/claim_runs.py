"""The runs claims train beyond their profile's grids, as configs.

The claims build these configs here, and lossscape.plan counts (and lossscape.sweep trains) the
same ones, so a swept cache leaves `pytest claims` nothing to train. One kind cannot be listed
before training: X-1 retrains lr_grid's smallest-batch runs up to the epoch they first reached
X-2's target, which only their results say; those few short runs train in the claims session.
"""
from __future__ import annotations

from .config import RunConfig
from .profiles import Profile, Setting

UNFROZEN_T0 = 1.0  # FO's baseline: every stage keeps its LR to the end, nothing freezes
FO_MODELS = ("resnet_small", "densenet_small", "vgg_small")  # FO-1's two models, FO-2's VGG
FO3_MODEL = "resnet_small"  # FO-3 also trains it at params.fo.t0_levels
PER_MODEL_GRIDS = ("freezeout",)  # grids the claims cross with FO_MODELS, not with the settings


def freezeout_config(profile: Profile, model: str, **changes) -> RunConfig:
    """Grid `freezeout` for `model` (at its default width), with `changes`."""
    (cfg,) = profile.grid("freezeout").configs(Setting(model, {"model": model})).values()
    return cfg.replace(**changes)


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
        if spec.name not in PER_MODEL_GRIDS:
            yield setting.id, setting, spec.name, spec, cfg
    k = profile.params.get("dp", {}).get("world_size")
    for setting in profile.settings:
        if k and "dp_equality" in profile.grids and setting.runs_grid("dp_equality"):
            spec = profile.grid("dp_equality")
            for cfg in spec.configs(setting).values():
                if dp_devices_present(cfg.device, k):
                    yield setting.id, setting, "dp_equality DP-1 on k ranks", spec, data_parallel(cfg, k)
                    yield setting.id, setting, "dp_equality DP-1 control", spec, per_worker_batch(cfg, k)
        if k and "dp_timing" in profile.grids and setting.runs_grid("dp_timing"):
            spec = profile.grid("dp_timing")
            for cfg in spec.configs(setting).values():
                if dp_devices_present(cfg.device, k):
                    yield setting.id, setting, "dp_timing DP-2 on k ranks", spec, data_parallel(cfg, k)
        if "schedules" in profile.grids and setting.runs_grid("schedules"):
            spec = profile.grid("schedules")
            for cfg in spec.configs(setting).values():
                yield setting.id, setting, "schedules LR-6 batch growth", spec, batch_growth(cfg)
    if "freezeout" in profile.grids:
        spec = profile.grid("freezeout")
        levels = profile.params.get("fo", {}).get("t0_levels", [])
        for model in FO_MODELS:
            t0s = [freezeout_config(profile, model).freeze_t0, UNFROZEN_T0]
            if model == FO3_MODEL:
                t0s += [t for t in sorted(levels) if t not in t0s]
            for t0 in t0s:
                yield model, None, f"freezeout t0={t0:g}", spec, freezeout_config(profile, model, freeze_t0=t0)
