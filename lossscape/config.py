"""RunConfig: everything that determines one training run, validated on construction.

A config is data: a frozen dataclass with a canonical JSON form and a stable key, so the cache can
address runs by content and a report can cite the exact settings behind every number.

It is also where the registries' names live, so that validating a config needs no torch: MODELS
maps each built-in model's name to its factory in lossscape.models, DATASETS names the datasets
lossscape.data loads. `model` and `dataset` may instead name a user's own code as
"package.module:attribute" (resolve_spec): a factory (input_shape, n_classes, width) -> nn.Module
whose forward returns logits, or a loader (n_samples=..., data_dir=...) -> lossscape.data.Dataset.
Such a config imports the user's module to check that the attribute exists and is callable.
"""
from __future__ import annotations

import dataclasses
import hashlib
import importlib
import inspect
import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

# name -> the "package.module:factory" that builds it; a user's model is such a spec itself.
MODELS = {
    "mlp": "lossscape.models:mlp",
    "conv1d": "lossscape.models:conv1d",
    "vgg_small": "lossscape.models:vgg_small",
    "resnet_small": "lossscape.models:resnet_small",
    "densenet_small": "lossscape.models:densenet_small",
}
DATASETS = ("mnist1d", "digits", "mnist", "cats_vs_dogs")
SCHEDULES = ("constant", "linear_scaling", "step", "cyclic_cosine", "freezeout")
STOP_RULES = ("epochs", "target_loss", "early_stop")
# The splits the engine evaluates (lossscape.engine): every epoch those its stop rules read, the
# others only where a run asks for them (RunConfig.eval_every_epoch) and at the end.
SPLITS = ("train", "val", "test")
# stop rule -> the splits it reads after every epoch. The divergence rule (lossscape.engine.diverged)
# reads the training loss under every stop rule; target_loss reads it too, early_stop the validation loss.
STOP_RULE_SPLITS = {"epochs": ("train",), "target_loss": ("train",), "early_stop": ("train", "val")}
DECAY_TARGETS = ("lr", "batch")
FREEZE_SPACINGS = ("linear", "cubic")
DEVICES = ("cpu", "cuda")
DTYPES = ("float32", "float64")
# The fields that take one of a fixed set of names (the command line offers them as choices).
CHOICES = {"schedule": SCHEDULES, "decay_target": DECAY_TARGETS, "freeze_spacing": FREEZE_SPACINGS,
           "stop": STOP_RULES, "device": DEVICES, "dtype": DTYPES}
# What `model` and `dataset` allow besides the registries' names.
SPEC_ALLOWED = {
    "model": "or 'package.module:factory' naming a callable (input_shape, n_classes, width) -> nn.Module "
             "whose forward returns logits",
    "dataset": "or 'package.module:loader' naming a callable (n_samples=..., data_dir=...) -> "
               "lossscape.data.Dataset",
}
MIN_SAMPLES = 10  # one example per digit class
# train.data_seed spaces runs' data-order seeds by this stride and adds the epoch; torch seeds are
# int64, so seeds stop where seed * stride + epochs would leave it, and epochs stay below the stride
# (which is also what keeps seeds s and s + 1 from sharing an epoch's order).
DATA_SEED_STRIDE = 1_000_003
MAX_SEED = (2**63 - 1) // DATA_SEED_STRIDE - 1


class ConfigError(ValueError):
    """A bad setting: the message names the field and the values it allows."""


def _fail(name: str, value, allowed: str):
    raise ConfigError(f"{name}: got {value!r}; allowed: {allowed}")


_SPEC = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")


def is_spec(name) -> bool:
    """Whether a model or dataset name is a "package.module:attribute" reference to user code."""
    return isinstance(name, str) and ":" in name


def resolve_spec(spec: str, field_name: str):
    """The callable that `spec` ("package.module:attribute") names, importing its module; a spec
    that is malformed, not importable, missing or not callable raises a one-line ConfigError."""
    allowed = f"{', '.join(_registry(field_name))}, {SPEC_ALLOWED[field_name]}"
    if not _SPEC.fullmatch(spec):
        _fail(field_name, spec, allowed)
    module_name, _, attr = spec.partition(":")
    try:
        obj = importlib.import_module(module_name)
    except Exception as exc:  # the user's module may fail in any way while it runs: say how, in one line
        _fail(field_name, spec, f"{allowed} (module {module_name} cannot be imported: {type(exc).__name__}: {exc})")
    for part in attr.split("."):
        if not hasattr(obj, part):
            _fail(field_name, spec, f"{allowed} (module {module_name} has no attribute {attr})")
        obj = getattr(obj, part)
    if not callable(obj):
        _fail(field_name, spec, f"{allowed} ({attr} is a {type(obj).__name__}, not callable)")
    return obj


def spec_source_digest(spec: str) -> str:
    """sha256 of the source file of the module a spec names, for the run cache's key: editing
    your model or loader there retrains it. Code it imports from other files is not hashed."""
    module = importlib.import_module(spec.partition(":")[0])
    try:
        path = inspect.getsourcefile(module)
    except TypeError:  # a built-in or compiled module: its name is all there is to hash
        path = None
    if path is None:
        return f"{spec} (no source file)"
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _registry(field_name: str):
    return MODELS if field_name == "model" else DATASETS


def dataset_request_problem(name, n_samples) -> str | None:
    """What is wrong with asking dataset `name` for `n_samples` examples (None: nothing); shared by
    RunConfig and lossscape.data.load_dataset. A spec's module is imported to check it."""
    if is_spec(name):
        try:
            resolve_spec(name, "dataset")
        except ConfigError as exc:
            return str(exc)
    elif name not in DATASETS:
        return f"dataset: unknown {name!r}; allowed: {', '.join(DATASETS)}, {SPEC_ALLOWED['dataset']}"
    if n_samples is not None and (not _is_int(_plain(n_samples)) or n_samples < MIN_SAMPLES):
        return f"n_samples: got {n_samples!r}; allowed: None or an integer >= {MIN_SAMPLES}"
    if name == "mnist1d" and n_samples is not None and n_samples % 10:
        return (f"n_samples: got {n_samples}; allowed: a multiple of 10 for mnist1d "
                "(its generator makes n_samples // 10 examples per class)")
    return None


def _doc(default, help: str):
    """A field whose help text the command line shows (lossscape.cli builds its options from them)."""
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class RunConfig:
    # what is trained
    dataset: str = _doc("mnist1d", f"{', '.join(DATASETS)}, {SPEC_ALLOWED['dataset']}")
    n_samples: int | None = _doc(None, "dataset size where the generator takes one (mnist1d); subsample otherwise")
    model: str = _doc("mlp", f"{', '.join(MODELS)}, {SPEC_ALLOWED['model']}")
    width: int | None = _doc(None, "None: the model's documented default (mlp: 1024, as in source 003)")
    # the optimizer: SGD, no momentum by default (the sources' common protocol)
    batch_size: int = 64
    lr: float = 0.05
    momentum: float = 0.0
    nesterov: bool = False
    weight_decay: float = 0.0
    # learning-rate schedule (lossscape.schedules)
    schedule: str = "constant"
    base_batch_size: int | None = _doc(None, "linear_scaling: lr applies at this batch size, scaled by bs/base")
    warmup_epochs: float = 0.0
    decay_epochs: tuple[int, ...] = _doc((), "step: epochs at which lr (or batch) changes by decay_factor, e.g. 10,20")
    decay_factor: float = 0.1
    decay_target: str = _doc("lr", "batch: grow the batch by 1/decay_factor instead (Smith et al. 2018)")
    snapshots: int = _doc(0, "cyclic_cosine: number of cycles M; a snapshot is saved at each cycle's end")
    freeze_t0: float = _doc(0.5, "freezeout: when the first layer freezes, as a fraction of training")
    freeze_spacing: str = "cubic"
    freeze_scale_lr: bool = True
    # when to stop
    stop: str = "epochs"
    epochs: int = _doc(10, "the budget for stop=epochs, the cap otherwise")
    target_loss: float | None = None
    patience: int | None = None
    # where and how
    seed: int = 0
    world_size: int = _doc(1, "data-parallel processes (see lossscape.parallel)")
    device: str = "cpu"
    dtype: str = "float32"
    record_snapshots: tuple[int, ...] = _doc((), "extra epochs at which to keep weights, e.g. 5,10")
    # Evaluation costs forward passes over whole splits, so each epoch evaluates only the splits
    # read there: the stop rules' (STOP_RULE_SPLITS) and these. Every split is evaluated at the last
    # epoch, and under early_stop at the best one (from its kept weights). Stored without the stop
    # rules' own splits and in SPLITS order (equal settings, equal keys), and left out of the JSON
    # when empty; a grid whose claims read a per-epoch curve of another split declares it here.
    eval_every_epoch: tuple[str, ...] = _doc(
        (), "splits evaluated after every epoch besides those the stop rules read (train; val under "
            "early_stop), e.g. val,test; the others at the last epoch (and the best under early_stop)")
    # a continuation (GEO-9): the canonical JSON of the config whose run's final weights this run
    # starts from, seed by seed (stored with seed 0; each member takes its own seed's run); None: the
    # seeded initialization. Left out of the JSON when None, so every other config keeps its key.
    # Not a command-line option: the parent's weights come from the cache (claims, RunStore).
    init_from: str | None = field(default=None, metadata={"cli": False})

    def __post_init__(self):
        _normalize(self)
        _validate(self)

    # -- identity ---------------------------------------------------------------------------
    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["decay_epochs"] = list(self.decay_epochs)
        d["record_snapshots"] = list(self.record_snapshots)
        d["eval_every_epoch"] = list(self.eval_every_epoch)
        for name in ("init_from", "eval_every_epoch"):  # left out at their defaults: other configs keep their JSON
            if not d[name]:
                del d[name]
        return d

    def to_json(self) -> str:
        """Canonical JSON: sorted keys, no whitespace, floats in repr form."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_dict(cls, d: dict) -> "RunConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(f"{unknown[0]}: unknown field; allowed: {', '.join(sorted(names))}")
        return cls(**d)

    @classmethod
    def from_json(cls, s: str) -> "RunConfig":
        return cls.from_dict(json.loads(s))

    def key(self) -> str:
        """Stable content hash of the canonical JSON (the cache adds environment to it)."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()

    def replace(self, **changes) -> "RunConfig":
        return dataclasses.replace(self, **changes)

    @property
    def epoch_splits(self) -> tuple[str, ...]:
        """The splits evaluated after every epoch: the stop rules' and eval_every_epoch, in SPLITS order."""
        every = set(STOP_RULE_SPLITS[self.stop]) | set(self.eval_every_epoch)
        return tuple(s for s in SPLITS if s in every)

    @property
    def effective_lr(self) -> float:
        """The LR at full strength: scaled by batch/base under the linear scaling rule."""
        if self.schedule == "linear_scaling":
            return self.lr * self.batch_size / self.base_batch_size
        return self.lr


def _normalize(c: RunConfig) -> None:
    """Numpy scalars become the Python scalars they hold, ints in float fields become floats, and
    sequences become tuples: equal settings must give equal JSON, hence equal cache keys."""
    for f in dataclasses.fields(c):
        value, kind = getattr(c, f.name), f.type.split(" | ")[0]
        if kind.startswith("tuple"):
            if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
                _fail(f.name, value, _SPLITS_ALLOWED if f.name == "eval_every_epoch"
                      else "a sequence of integers (epochs), e.g. (10, 20)")
            value = tuple(_plain(v) for v in value)
        else:
            value = _plain(value)
            if kind == "float" and _is_int(value):
                try:
                    value = float(value)
                except OverflowError:
                    _fail(f.name, value, "a finite number")
        object.__setattr__(c, f.name, value)
    if isinstance(c.init_from, str):  # one parent, one spelling: canonical JSON at seed 0
        try:
            parent = RunConfig.from_json(c.init_from)
        except (ValueError, TypeError) as exc:
            _fail("init_from", c.init_from, f"None or the JSON of a valid RunConfig ({exc})")
        object.__setattr__(c, "init_from", parent.replace(seed=0).to_json())
    if all(s in SPLITS for s in c.eval_every_epoch) and c.stop in STOP_RULE_SPLITS:  # else _validate says what is wrong
        extra = set(c.eval_every_epoch) - set(STOP_RULE_SPLITS[c.stop])
        object.__setattr__(c, "eval_every_epoch", tuple(s for s in SPLITS if s in extra))


_SPLITS_ALLOWED = f"a sequence of split names from {', '.join(SPLITS)}, e.g. ('val', 'test')"


def _plain(value):
    return value.item() if isinstance(value, np.generic) else value


def _validate(c: RunConfig) -> None:
    """Every rule, one group of fields at a time, in field order (the first broken rule is reported)."""
    _check_names(c)
    _check_optimizer(c)
    _check_schedule(c)
    _check_stop_and_place(c)


def _check_names(c: RunConfig) -> None:
    """The bools, and the fields that take a name: dataset, model and the CHOICES."""
    for f in dataclasses.fields(c):
        # bool is checked exactly: "False" and 1 are truthy look-alikes that would change behaviour or key
        if f.type == "bool" and not isinstance(getattr(c, f.name), bool):
            _fail(f.name, getattr(c, f.name), "True or False")
    problem = dataset_request_problem(c.dataset, c.n_samples)
    if problem:
        raise ConfigError(problem)
    if is_spec(c.model):
        resolve_spec(c.model, "model")
    elif c.model not in MODELS:
        _fail("model", c.model, f"{', '.join(MODELS)}, {SPEC_ALLOWED['model']}")
    for name, allowed in CHOICES.items():
        if getattr(c, name) not in allowed:
            _fail(name, getattr(c, name), ", ".join(allowed))


def _check_optimizer(c: RunConfig) -> None:
    if c.width is not None and (not _is_int(c.width) or c.width < 1):
        _fail("width", c.width, "a positive integer, or None for the model's default")
    if not _is_int(c.batch_size) or c.batch_size < 1:
        _fail("batch_size", c.batch_size, "a positive integer (at most the training set size)")
    if not _finite(c.lr) or c.lr <= 0:
        _fail("lr", c.lr, "a finite number > 0")
    if not _finite(c.momentum) or not 0 <= c.momentum < 1:
        _fail("momentum", c.momentum, "0 <= momentum < 1")
    if c.nesterov and c.momentum == 0:
        _fail("nesterov", c.nesterov, "True only with momentum > 0")
    if not _finite(c.weight_decay) or c.weight_decay < 0:
        _fail("weight_decay", c.weight_decay, "a finite number >= 0")


def _check_schedule(c: RunConfig) -> None:
    if c.schedule == "linear_scaling":
        if c.base_batch_size is None or not _is_int(c.base_batch_size) or c.base_batch_size < 1:
            _fail("base_batch_size", c.base_batch_size, "a positive integer when schedule='linear_scaling'")
    elif c.base_batch_size is not None:
        _fail("base_batch_size", c.base_batch_size, "None unless schedule='linear_scaling'")
    if not _finite(c.warmup_epochs) or c.warmup_epochs < 0 or c.warmup_epochs >= max(c.epochs, 1):
        _fail("warmup_epochs", c.warmup_epochs, f"0 <= warmup_epochs < epochs ({c.epochs})")
    if c.schedule == "step":
        if not c.decay_epochs or any(not _is_int(e) or not 0 < e < c.epochs for e in c.decay_epochs) \
                or list(c.decay_epochs) != sorted(set(c.decay_epochs)):
            _fail("decay_epochs", c.decay_epochs, f"increasing epochs strictly between 0 and epochs ({c.epochs}) when schedule='step'")
        if not _finite(c.decay_factor) or not 0 < c.decay_factor < 1:
            _fail("decay_factor", c.decay_factor, "0 < decay_factor < 1")
    elif c.decay_epochs:
        _fail("decay_epochs", c.decay_epochs, "empty unless schedule='step'")
    if c.decay_target == "batch" and c.schedule != "step":
        _fail("decay_target", c.decay_target, "'lr' unless schedule='step'")
    if c.schedule == "cyclic_cosine":
        if not _is_int(c.snapshots) or c.snapshots < 1:
            _fail("snapshots", c.snapshots, "a positive integer (the number of cycles M) when schedule='cyclic_cosine'")
    elif c.snapshots:
        _fail("snapshots", c.snapshots, "0 unless schedule='cyclic_cosine'")
    if not _finite(c.freeze_t0) or not 0 < c.freeze_t0 <= 1:
        _fail("freeze_t0", c.freeze_t0, "0 < freeze_t0 <= 1")


def _check_stop_and_place(c: RunConfig) -> None:
    """The stop rule, the seed and where the run trains."""
    if not _is_int(c.epochs) or not 1 <= c.epochs < DATA_SEED_STRIDE:
        _fail("epochs", c.epochs, f"an integer in 1..{DATA_SEED_STRIDE - 1}")
    if c.stop == "target_loss":
        if c.target_loss is None or not _finite(c.target_loss) or c.target_loss <= 0:
            _fail("target_loss", c.target_loss, "a finite number > 0 when stop='target_loss'")
    elif c.target_loss is not None:
        _fail("target_loss", c.target_loss, "None unless stop='target_loss'")
    if c.stop == "early_stop":
        if c.patience is None or not _is_int(c.patience) or c.patience < 1:
            _fail("patience", c.patience, "a positive integer when stop='early_stop'")
    elif c.patience is not None:
        _fail("patience", c.patience, "None unless stop='early_stop'")
    if not _is_int(c.seed) or not 0 <= c.seed <= MAX_SEED:
        _fail("seed", c.seed, f"an integer in 0..{MAX_SEED}")
    if not _is_int(c.world_size) or c.world_size < 1:
        _fail("world_size", c.world_size, "a positive integer")
    if c.batch_size % c.world_size:
        _fail("batch_size", c.batch_size, f"a multiple of world_size ({c.world_size}): each rank takes batch_size / world_size")
    if c.init_from is not None and not isinstance(c.init_from, str):
        _fail("init_from", c.init_from, "None or the JSON of a valid RunConfig")
    if c.init_from is not None and c.world_size > 1:
        _fail("world_size", c.world_size, "1 when init_from is set (data-parallel runs start from their seeded initialization)")
    if any(not _is_int(e) or not 0 < e <= c.epochs for e in c.record_snapshots):
        _fail("record_snapshots", c.record_snapshots, f"epochs between 1 and epochs ({c.epochs})")
    if any(s not in SPLITS for s in c.eval_every_epoch):
        _fail("eval_every_epoch", c.eval_every_epoch, _SPLITS_ALLOWED)


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
