"""lossscape: published claims about batch size, sharpness and training dynamics, tested with real
training runs and honest statistics.

    from lossscape import RunConfig, RunStore, train
    run = train(RunConfig(dataset="mnist1d", model="mlp", batch_size=64, lr=0.05, epochs=3, seed=0))
    run = RunStore().get_or_train(RunConfig(...))   # through the cache (LOSSSCAPE_CACHE or ./cache)
"""
from .config import ConfigError, RunConfig
from .data import Dataset, load_dataset
# Bound here, eagerly: the function `train` shares its name with the module lossscape.train, and a
# lazy binding would be overwritten by the module the first time anything imports lossscape.train.
from .run import Run
from .train import train, train_population
# The run cache, above training: store.get_or_train(cfg) loads a stored run or trains and stores it.
from .cache import RunStore

__all__ = ["ConfigError", "Dataset", "RunConfig", "Run", "RunStore", "load_dataset", "train", "train_population",
           "geometry"]
__version__ = "0.1.0"


def __getattr__(name):
    # geometry pulls in scipy; it is imported on first use.
    if name == "geometry":
        import importlib
        return importlib.import_module(".geometry", __name__)
    raise AttributeError(f"module 'lossscape' has no attribute {name!r}")
