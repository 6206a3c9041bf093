"""The `measure` fixture: a measurement of a trained run (a sharpness, an eigenvalue, a curve),
computed once and cached beside the run (RunStore.memo), as JSON.

    measure(run, g.keskar_sharpness, X, y, epsilon=1e-3)   # = g.keskar_sharpness(run.model(), X, y, epsilon=1e-3)

The entry is keyed by what determines the value, never by a name the caller picks:
- the function: its module, qualified name and a hash of its source (RunStore.memo adds the
  geometry package's source hash). It must be a module-level function: a closure's or lambda's
  captured values would decide the result without being in the key;
- its keyword arguments, the function's defaults filled in, so `epsilon=1e-3` and
  `epsilon=1e-3, maxiter=10, seed=0` (keskar_sharpness's defaults) are the same entry;
- a fingerprint of the data: dtype, shape and a hash of the bytes of X and y;
- what of the run it is computed on (`of`): "final" (default) passes `run.model()`, "initial" the
  model at the run's initial weights, "run" the Run itself (snapshots), or a list of runs (an
  ensemble: stored beside the first, keyed by every member's config).
So two claims computing the same Keskar sharpness of the same run on the same data share one entry.
Keyword values may be JSON values, arrays or tensors (hashed), runs (their config) or functions.
"""
from __future__ import annotations

import functools
import hashlib
import inspect
import json

import numpy as np
import pytest
import torch
from torch.utils.weak import WeakIdKeyDictionary

from lossscape import Run

_OF = ("final", "initial", "run")


@pytest.fixture(scope="session")
def measure(store):
    """measure(run, fn, X, y, **kw) -> fn(run.model(), X, y, **kw) as JSON, cached beside the run."""
    return functools.partial(measured, store)


def measured(store, run, fn, X, y, /, *, of: str = "final", **kw):
    """fn(subject, X, y, **kw) through `store`'s measurement cache; see the module docstring."""
    if of not in _OF:
        raise ValueError(f"of: got {of!r}; allowed: {', '.join(_OF)}")
    group = isinstance(run, (list, tuple))
    runs = list(run) if group else [run]
    if group and of != "run":
        raise ValueError(f"measure: a list of runs needs of='run' (fn takes the list); got of={of!r}")
    name, source = function_id(fn)
    # bind as the call will: an unknown keyword fails here, and every default joins the key
    bound = inspect.signature(fn).bind(None, None, None, **kw)
    bound.apply_defaults()
    params = {"source": source, "of": of, "data": [fingerprint(X), fingerprint(y)],
              "kwargs": canonical(dict(list(bound.arguments.items())[3:]))}
    if group:
        params["runs"] = [json.loads(r.config.to_json()) for r in runs]

    def compute():
        subject = {"final": lambda: runs[0].model(), "initial": lambda: runs[0].model(runs[0].initial_state),
                   "run": lambda: run}[of]()
        # through JSON once, so a fresh value and a cached one are the same Python objects
        return json.loads(json.dumps(fn(subject, X, y, **kw), default=_as_list))

    return store.memo(runs[0].config, name, params, compute)


@functools.lru_cache(maxsize=None)
def function_id(fn) -> tuple[str, str]:
    """(module.qualname, hash of the source) of a module-level function; anything else is refused."""
    if not inspect.isfunction(fn) or "<" in fn.__qualname__ or fn.__closure__:
        raise TypeError(f"measure: {fn!r} is not a module-level function; allowed: a function defined at the top "
                        "of a module, whose result depends only on its arguments")
    return f"{fn.__module__}.{fn.__qualname__}", hashlib.sha256(inspect.getsource(fn).encode()).hexdigest()[:16]


# tensor -> (its version counter, fingerprint): a claim measures every run of a grid on the same X,
# which is hashed once (0.2 s for the gpu profile's MNIST), and again only if written in place
_TENSOR_FINGERPRINTS = WeakIdKeyDictionary()


def fingerprint(a) -> dict:
    """dtype, shape and sha256 of an array's or tensor's bytes."""
    if isinstance(a, torch.Tensor):
        version, known = _TENSOR_FINGERPRINTS.get(a, (None, None))
        if version == a._version:
            return known
        t = a.detach().cpu().contiguous()
        out = {"dtype": str(t.dtype), "shape": list(t.shape),
               "sha256": hashlib.sha256(t.reshape(-1).view(torch.uint8).numpy()).hexdigest()}
        _TENSOR_FINGERPRINTS[a] = (a._version, out)
        return out
    arr = np.ascontiguousarray(a)
    return {"dtype": str(arr.dtype), "shape": list(arr.shape),
            "sha256": hashlib.sha256(arr.reshape(-1).view(np.uint8)).hexdigest()}


def canonical(value):
    """A keyword argument as JSON for the key: arrays by fingerprint, runs by config, functions by id."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (torch.Tensor, np.ndarray)):
        return {"array": fingerprint(value)}
    if isinstance(value, Run):
        return {"run": json.loads(value.config.to_json())}
    if isinstance(value, (list, tuple)):
        return [canonical(v) for v in value]
    if isinstance(value, dict):
        return {str(k): canonical(v) for k, v in value.items()}
    if callable(value):
        return {"function": function_id(value)}
    raise TypeError(f"measure: cannot key an argument of type {type(value).__name__}; allowed: JSON values, "
                    "arrays, tensors, runs, module-level functions")


def _as_list(value):
    """numpy arrays and scalars and tensors, as JSON holds them."""
    if isinstance(value, (np.ndarray, np.generic, torch.Tensor)):
        return value.tolist()
    raise TypeError(f"measure: a result of type {type(value).__name__} cannot be stored as JSON")
