"""Experiment profiles (one TOML file each, beside this module): which settings, grids and seeds a
claims run uses.

A profile names its seeds before anything trains, a list of settings (dataset + model + base LR:
the claims are parametrized over them) and named grids: a grid is a stop rule and schedule shared
by several claims, crossed with batch sizes (and LRs where it gives some). Everything here is data;
nothing is executed from the file.

A grid with `population = false` trains one model per process, because claims read its wall times.
The cache serves a run by its config alone, so such a grid must share no config (seed aside) with
a population grid of any profile (the packaged ones and the one loaded): otherwise it is served the population's runs, whose
epoch times are the whole population's wall clock (BS-3 once read a CI of [0.0827, 0.0827] so).
`load_profile` refuses a file where they meet.

A profile file may start from another (`extends = "cpu"`, a packaged name or a .toml path beside
it) and override keys: tables merge key by key, anything else (a number, a list, `[[settings]]`)
replaces the base's whole, and so does a `[not_run]` table (an empty one runs every claim). A
profile's `[not_run]` names the claims it leaves to another profile ("LR-5" = "cpu-long: why");
the harness skips them at collection and the report lists them as not run, with that reason.
"""
from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from ..config import ConfigError, RunConfig

# Package data, so `pytest claims` finds them after a non-editable install too.
PROFILE_DIR = Path(__file__).resolve().parent
PROFILES = ("smoke", "cpu", "cpu-long", "gpu")  # in order of cost; one file each in PROFILE_DIR
_RUN_FIELDS = {f.name for f in dataclasses.fields(RunConfig)}
_GRID_KEYS = {"batch_sizes", "lrs", "seeds", "population", "expect_epochs", "why"}
_SETTING_KEYS = {"id", "why", "requires", "claims", "grids"}
# What a setting's `grids` table may change in a grid, for that setting alone.
_SETTING_GRID_KEYS = {"batch_sizes", "seeds", "expect_epochs"}


@dataclass(frozen=True)
class Setting:
    id: str
    fields: dict  # RunConfig fields: dataset, model, width, lr, ...
    requires: str | None = None  # a dataset whose files must be present, else the setting is skipped
    # A setting that stands for one source's own experiment runs only that source's claims
    # (`claims`, IDs) on only the grids it names (`grids`: grid name -> what changes there for this
    # setting, e.g. the source's epochs and batch sizes). None: every claim, every grid as it is.
    claims: tuple[str, ...] | None = None
    grids: dict | None = None

    def runs_grid(self, name: str) -> bool:
        return self.grids is None or name in self.grids

    def runs_claim(self, claim_id: str) -> bool:
        return self.claims is None or claim_id in self.claims


@dataclass(frozen=True)
class GridSpec:
    name: str
    fields: dict
    batch_sizes: tuple[int, ...]
    lrs: tuple[float, ...] | None
    seeds: tuple[int, ...]
    population: bool  # False: one process per run, for claims about wall time
    # Under a stop rule that can end before the cap: the epochs a pilot took at the grid's smallest
    # batch (lossscape.plan scales it to the other cells); None: the plan assumes the cap.
    expect_epochs: float | None = None

    def for_setting(self, setting: Setting) -> "GridSpec":
        """This grid as `setting` runs it: its `grids` entry for this grid applied (batch sizes,
        seeds and RunConfig fields; the setting's value wins here, since it names this grid)."""
        extra = (setting.grids or {}).get(self.name)
        if not extra:
            return self
        fields = {**self.fields, **{k: v for k, v in extra.items() if k in _RUN_FIELDS}}
        return dataclasses.replace(
            self, fields=fields, batch_sizes=tuple(extra.get("batch_sizes", self.batch_sizes)),
            seeds=tuple(range(extra["seeds"])) if "seeds" in extra else self.seeds,
            expect_epochs=extra.get("expect_epochs", self.expect_epochs))

    def configs(self, setting: Setting) -> dict[tuple[int, float], RunConfig]:
        """(batch size, lr) -> config; lr is the setting's unless the grid sweeps its own."""
        base = {**setting.fields, **self.fields}
        lrs = self.lrs or (base.get("lr", RunConfig.lr),)
        out = {}
        for bs in self.batch_sizes:
            for lr in lrs:
                fields = {**base, "batch_size": bs, "lr": lr}
                if fields.get("schedule") == "linear_scaling" and "base_batch_size" not in fields:
                    fields["base_batch_size"] = min(self.batch_sizes)
                out[(bs, lr)] = RunConfig(**fields)
        return out


@dataclass(frozen=True)
class Profile:
    name: str
    path: Path  # the file it was read from (`lossscape pilot` writes its decisions there)
    description: str
    device: str
    seeds: tuple[int, ...]
    batch_sizes: tuple[int, ...]
    settings: tuple[Setting, ...]
    grids: dict[str, GridSpec] = field(default_factory=dict)
    params: dict = field(default_factory=dict)  # claim-specific knobs (epoch k of BS-1, radii, ...)
    # claim ID -> (the profile that runs it, why this one does not): skipped here, listed as not run
    not_run: dict[str, tuple[str, str]] = field(default_factory=dict)

    def cells(self):
        """(setting, grid, config) for every configuration the profile's grids train, in file order;
        the seeds a cell trains are its grid's. The harness's `grids` fixture builds the same
        configs through GridSpec.configs, so a plan and a run never disagree on what a cell is."""
        for setting in self.settings:
            for spec in self.grids.values():
                if setting.runs_grid(spec.name):
                    spec = spec.for_setting(setting)
                    for cfg in spec.configs(setting).values():
                        yield setting, spec, cfg

    def grid(self, name: str) -> GridSpec:
        if name not in self.grids:
            raise ConfigError(f"grid: {name!r} is not in profile {self.name!r}; allowed: {', '.join(self.grids)}")
        return self.grids[name]


def profile_file(name: str | Path, directory: Path = PROFILE_DIR) -> Path:
    """The file of a packaged profile name, or `name` itself when it is a path to a .toml file."""
    if str(name).endswith(".toml"):
        path = Path(name)
        if not path.is_file():
            raise ConfigError(f"profile: {name} is not a file; allowed: {', '.join(PROFILES)} or a profile .toml file")
        return path
    if name not in PROFILES:
        raise ConfigError(f"profile: got {name!r}; allowed: {', '.join(PROFILES)} or a profile .toml file")
    return Path(directory) / f"{name}.toml"


def load_profile(name: str | Path, n_seeds: int | None = None, *, directory: Path = PROFILE_DIR,
                 device: str | None = None) -> Profile:
    """A packaged profile by name (smoke, cpu, cpu-long, gpu: `directory`/<name>.toml) or a profile
    file by path (its name is the file's stem), with the profile it extends merged in. `device` replaces the profile's own (e.g. the smoke profile
    on cuda, a GPU machine's check)."""
    if device not in (None, "cpu", "cuda"):
        raise ConfigError(f"device: got {device!r}; allowed: cpu, cuda")
    path = profile_file(name, directory)
    profile = _build(path, n_seeds, device, directory)
    # one cache serves every profile: the packaged ones are checked with the loaded one
    others = [_build(p, None, directory=directory) for p in sorted(Path(directory).glob("*.toml"))
              if p.resolve() != path.resolve()]
    _check_single_model_grids([profile, *others])
    return profile


def _read(path: Path) -> dict:
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"profile: {path} is not valid TOML ({exc}); allowed: a profile file as in {PROFILE_DIR}") from None


def _resolved(path: Path, directory: Path, seen: tuple[Path, ...] = ()) -> dict:
    """The file's keys over those of the profile it extends (recursively)."""
    raw = _read(path)
    base = raw.pop("extends", None)
    if base is None:
        return raw
    if not isinstance(base, str):
        raise ConfigError(f"{path.stem}.extends: got {base!r}; allowed: {', '.join(PROFILES)} or a profile .toml file")
    base_path = profile_file(path.parent / base if base.endswith(".toml") else base, directory)
    chain = seen + (path.resolve(),)
    if base_path.resolve() in chain:
        loop = " -> ".join(p.stem for p in (*chain, base_path))
        raise ConfigError(f"{path.stem}.extends: {base!r} makes a loop ({loop}); allowed: profiles that extend without a loop")
    return _merged(_resolved(base_path, directory, chain), raw)


def _merged(base: dict, over: dict) -> dict:
    """`over` on `base`: tables merge key by key; other values, and a `not_run` table, replace."""
    out = dict(base)
    for key, value in over.items():
        if key != "not_run" and isinstance(value, dict) and isinstance(base.get(key), dict):
            value = _merged(base[key], value)
        out[key] = value
    return out


def _build(path: Path, n_seeds: int | None, device: str | None = None, directory: Path = PROFILE_DIR) -> Profile:
    name, raw = path.stem, _resolved(path, Path(directory))
    missing = [k for k in ("seeds", "batch_sizes", "settings") if k not in raw]
    if missing:
        raise ConfigError(f"{name}: missing key {missing[0]!r}; allowed: a profile with seeds, batch_sizes, settings "
                          "and optional extends, description, device, grids, params, not_run")
    seeds = tuple(range(n_seeds if n_seeds is not None else raw["seeds"]))
    if not seeds:
        raise ConfigError(f"seeds: got {n_seeds}; allowed: a positive number")
    device = device or raw.get("device", "cpu")
    batch_sizes = tuple(raw["batch_sizes"])
    settings = tuple(_setting(s) for s in raw["settings"])
    grids = {}
    for gname, g in raw.get("grids", {}).items():
        unknown = set(g) - _RUN_FIELDS - _GRID_KEYS
        if unknown:
            raise ConfigError(f"{name}.grids.{gname}: unknown key {sorted(unknown)[0]!r}; allowed: RunConfig fields and {', '.join(sorted(_GRID_KEYS))}")
        fields = {k: v for k, v in g.items() if k in _RUN_FIELDS}
        fields.setdefault("device", device)
        grid_seeds = tuple(range(g["seeds"])) if "seeds" in g and n_seeds is None else seeds
        grids[gname] = GridSpec(gname, fields, tuple(g.get("batch_sizes", batch_sizes)),
                                tuple(g["lrs"]) if "lrs" in g else None, grid_seeds, g.get("population", True),
                                g.get("expect_epochs"))
    for setting in settings:
        for gname in setting.grids or {}:
            if gname not in grids:
                raise ConfigError(f"settings.{setting.id}.grids: {gname!r} is not a grid of profile {name!r}; "
                                  f"allowed: {', '.join(grids)}")
    return Profile(name, path, raw.get("description", ""), device, seeds, batch_sizes, settings,
                   grids, raw.get("params", {}), _not_run(name, raw.get("not_run", {}), directory))


def _not_run(name: str, table: dict, directory: Path) -> dict[str, tuple[str, str]]:
    """`"LR-5" = "cpu-long: why"` -> {"LR-5": ("cpu-long", "why")}: the profile named must be another one."""
    others = sorted({p.stem for p in Path(directory).glob("*.toml")} - {name})
    out = {}
    for cid, text in table.items():
        run_with, _, why = str(text).partition(":")
        run_with = run_with.strip()
        if Path(run_with).stem == name:  # e.g. cpu-long extending cpu without a [not_run] table of its own
            raise ConfigError(f"{name}.not_run.{cid}: names {name} itself (a table it extends?); allowed: another "
                              "profile, or a [not_run] table of its own, which replaces the one it extends")
        if not why.strip() or not (run_with in others or run_with.endswith(".toml")):
            raise ConfigError(f"{name}.not_run.{cid}: got {text!r}; allowed: \"PROFILE: why\", PROFILE another "
                              f"profile that runs it ({', '.join(others)} or a .toml file)")
        out[cid] = (run_with, why.strip())
    return out


def _check_single_model_grids(profiles: list[Profile]) -> None:
    """Refuse single-model (population = false) grids whose runs a population grid also trains."""
    def runs(population: bool):
        for p in profiles:
            for setting in p.settings:
                for g in p.grids.values():
                    if g.population == population and setting.runs_grid(g.name):
                        g = g.for_setting(setting)
                        for (bs, lr), cfg in g.configs(setting).items():
                            yield cfg.replace(seed=0).to_json(), f"{p.name}.grids.{g.name}", setting.id, bs, lr

    pooled = {key: where for key, where, *_ in runs(True)}
    for key, where, setting, bs, lr in runs(False):
        if key in pooled:
            raise ConfigError(f"{where}: its run for setting {setting}, batch size {bs}, lr {lr:g} is also a run of "
                              f"population grid {pooled[key]}, and the cache would serve it that population's "
                              "shared wall times; allowed: single-model grids that differ from every population "
                              "grid in a field (e.g. epochs)")


def missing_data(setting: Setting) -> str | None:
    """Why a setting cannot run here (its dataset's files are absent), or None."""
    if setting.requires:
        from ..data import DatasetNotFoundError, load_dataset
        try:
            load_dataset(setting.requires)
        except DatasetNotFoundError as exc:
            return f"setting {setting.id}: {exc}"
    return None


def _setting(s: dict) -> Setting:
    unknown = set(s) - _RUN_FIELDS - _SETTING_KEYS
    if unknown:
        raise ConfigError(f"settings: unknown key {sorted(unknown)[0]!r}; allowed: RunConfig fields and "
                          f"{', '.join(sorted(_SETTING_KEYS))}")
    grids = s.get("grids")
    for gname, extra in (grids or {}).items():
        bad = set(extra) - _RUN_FIELDS - _SETTING_GRID_KEYS
        if bad:
            raise ConfigError(f"settings.{s['id']}.grids.{gname}: unknown key {sorted(bad)[0]!r}; allowed: RunConfig "
                              f"fields and {', '.join(sorted(_SETTING_GRID_KEYS))}")
    claims = s.get("claims")
    return Setting(s["id"], {k: v for k, v in s.items() if k in _RUN_FIELDS}, s.get("requires"),
                   tuple(claims) if claims is not None else None, grids)
