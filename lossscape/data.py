"""Dataset registry: a name -> float32 inputs and int64 labels with a fixed, seeded split.

    ds = load_dataset("mnist1d")               # 3,200 train / 800 val / 1,000 test, shape (40,)
    ds = load_dataset("mnist", data_dir="~/data")

    ds = load_dataset("mymodule:load")         # a user's loader, called as load(n_samples=..., data_dir=...)

Nothing is fetched from the network. `mnist1d` and `digits` are generated or bundled locally;
`mnist` and `cats_vs_dogs` read files from `data_dir` (default: the LOSSSCAPE_DATA environment
variable) and raise `DatasetNotFoundError`, with a message saying which files go where, when they
are absent. Bad arguments and unusable files (corrupt, truncated, empty, one class only) raise
`DataError`, a ValueError whose one-line message names the argument or the file.

Split semantics, the same for every dataset:
- `n_samples` is the total number of examples across train/val/test, drawn class-balanced and
  seeded before splitting (for `mnist1d` it is the generator's `num_samples`; MNIST keeps its
  60k:10k train:test proportion). Unreadable cats_vs_dogs images are replaced by unused ones
  where the folder has them, otherwise the dataset comes out smaller.
- The test split is the dataset's own (mnist1d's generator split, MNIST's t10k file) or, where it
  ships none (digits, cats_vs_dogs), a seeded `TEST_FRACTION` of the examples.
- `val_fraction` is the share of the remaining training pool held out for validation.
- Every random choice uses a `torch.Generator` seeded with `split_seed`, so the global RNGs are
  neither read nor changed. mnist1d's generator keeps its published seed (42) whatever split_seed.
- Inputs are standardized with the train split's statistics (one mean/std for grey images, one
  per channel for RGB), except mnist1d, which its generator already standardized as published.

Results are memoized in-process, keyed on the arguments and on each file's path, size and mtime:
the same arguments return the *same* tensors, so callers must not modify them in place (clone
first).
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import importlib.metadata
import math
import os
import random
import struct
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .config import MIN_SAMPLES, RunConfig, dataset_request_problem, is_spec, resolve_spec, spec_source_digest

ENV_VAR = "LOSSSCAPE_DATA"
# digits and cats_vs_dogs ship no test split; 20% matches mnist1d's 80/20 generator split.
TEST_FRACTION = 0.2


@dataclass(frozen=True, eq=False, repr=False)
class Dataset:
    """Train/val/test tensors on CPU: X float32 of shape (n, *input_shape), y int64 class indices."""

    name: str
    X_train: torch.Tensor
    y_train: torch.Tensor
    X_val: torch.Tensor
    y_val: torch.Tensor
    X_test: torch.Tensor | None
    y_test: torch.Tensor | None
    n_classes: int
    input_shape: tuple[int, ...]

    def __repr__(self) -> str:
        n_test = 0 if self.y_test is None else len(self.y_test)
        return (f"Dataset({self.name!r}, train={len(self.y_train)}, val={len(self.y_val)}, "
                f"test={n_test}, input_shape={self.input_shape}, n_classes={self.n_classes})")


class DatasetNotFoundError(FileNotFoundError):
    """A file-backed dataset's files are absent; the message says which files go where."""


class DataError(ValueError):
    """A bad data request or unusable data files: one line naming the argument or the file, and what
    is allowed or what is wrong with it (the `lossscape` command prints it and exits with status 2)."""


def load_dataset(name: str, *, n_samples: int | None = None, val_fraction: float = 0.2,
                 split_seed: int = 0, data_dir: str | os.PathLike | None = None,
                 image_size: int = 64) -> Dataset:
    """Load dataset `name` (one of config.DATASETS) with a deterministic train/val/test split.

    See the module docstring for what n_samples, val_fraction and split_seed mean. `image_size`
    is the side of the square RGB images of cats_vs_dogs and is ignored by the other datasets.
    `name` may also be a user's loader, "package.module:loader": it is called as
    loader(n_samples=n_samples, data_dir=data_dir or LOSSSCAPE_DATA) and must return a Dataset
    (its own split: val_fraction, split_seed and image_size are not passed on).
    The returned tensors are shared with later calls: do not modify them in place.
    """
    validate_request(name, n_samples)
    if is_spec(name):
        root = _data_root(data_dir)
        return _load_user(name, None if n_samples is None else int(n_samples), None if root is None else str(root))
    if isinstance(val_fraction, bool) or not isinstance(val_fraction, (int, float)) \
            or not 0 < val_fraction < 1:
        raise DataError(f"val_fraction: got {val_fraction!r}; allowed: 0 < val_fraction < 1")
    if not _is_int(split_seed) or not 0 <= split_seed < 2**64:
        raise DataError(f"split_seed: got {split_seed!r}; allowed: an integer in 0..2**64-1")
    if not _is_int(image_size) or image_size < 1:
        raise DataError(f"image_size: got {image_size!r}; allowed: an integer >= 1")

    # Plain Python values, and None for what a dataset ignores, so equal requests share a cache entry.
    key = (name, None if n_samples is None else int(n_samples), float(val_fraction), int(split_seed))
    if name in ("mnist1d", "digits"):
        return _load(*key, None, None)
    root = _data_root(data_dir)
    if name == "mnist":
        return _load(*key, _fingerprint(_find_mnist(root)), None)
    found = _find_cats_vs_dogs(root)
    return _load(*key, _fingerprint([p for p, _ in found], [label for _, label in found]), int(image_size))


def load_data(cfg: RunConfig, data_dir: str | os.PathLike | None = None) -> Dataset:
    """The dataset a run of cfg trains on: load_dataset with the config's name and size."""
    return load_dataset(cfg.dataset, n_samples=cfg.n_samples, data_dir=data_dir)


def fingerprint(name: str, data_dir: str | os.PathLike | None = None) -> str:
    """A digest of the data a run of `name` trains on, for the run cache's key: a new release of a
    generator, or images added to a folder, must not be served runs made from the old data.

    - mnist1d, digits: the version of the package that generates or bundles them (mnist1d,
      scikit-learn).
    - mnist: the sha256 of the four IDX files' contents (about 11 MB gzipped; hashed once per
      process per file version), so a copy of the files elsewhere gives the same digest.
    - cats_vs_dogs: every image's path below the data folder, label, size and mtime: hashing
      25,000 photos on every lookup would cost more than the lookup saves.
    - a user's loader ("package.module:loader"): the sha256 of its module's source file
      (config.spec_source_digest); data it reads from elsewhere is not hashed.
    Raises DatasetNotFoundError, as load_dataset does, where a file-backed dataset's files are absent.
    """
    validate_request(name, None)
    if is_spec(name):
        return spec_source_digest(name)
    if name in ("mnist1d", "digits"):
        package = "mnist1d" if name == "mnist1d" else "scikit-learn"
        return f"{package}=={importlib.metadata.version(package)}"
    root = _data_root(data_dir)
    h = hashlib.sha256()
    if name == "mnist":
        for path in _find_mnist(root):
            st = path.stat()
            h.update(f"{path.name}\0{_content_sha256(path, st.st_size, st.st_mtime_ns)}\0".encode())
    else:
        for path, label in _find_cats_vs_dogs(root):
            st = path.stat()
            h.update(f"{path.relative_to(root)}\0{label}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
    return h.hexdigest()


@functools.lru_cache(maxsize=16)  # keyed on size and mtime too: a file replaced on disk is hashed again
def _content_sha256(path: Path, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def validate_request(name: str, n_samples: int | None) -> None:
    """The checks RunConfig makes too (config.dataset_request_problem): a known dataset or an
    importable loader, and a size its generator or files allow."""
    problem = dataset_request_problem(name, n_samples)
    if problem:
        raise DataError(problem)


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


@functools.lru_cache(maxsize=8)  # small: a full cats_vs_dogs at 64x64 is ~1.2 GB of float32
def _load(name, n_samples, val_fraction, split_seed, files, image_size) -> Dataset:
    gen = torch.Generator().manual_seed(split_seed)
    if name == "mnist1d":
        return _mnist1d(n_samples, val_fraction, gen)
    if name == "digits":
        return _digits(n_samples, val_fraction, gen)
    if name == "mnist":
        return _mnist([Path(f[0]) for f in files], n_samples, val_fraction, gen)
    return _cats_vs_dogs([(Path(f[0]), f[1]) for f in files], n_samples, val_fraction, image_size, gen)


@functools.lru_cache(maxsize=4)
def _load_user(spec: str, n_samples: int | None, data_dir: str | None) -> Dataset:
    """A user's loader, called once per arguments in a process (training asks for the data often)."""
    ds = resolve_spec(spec, "dataset")(n_samples=n_samples, data_dir=data_dir)
    if not isinstance(ds, Dataset):
        raise DataError(f"dataset: {spec} returned a {type(ds).__name__}; allowed: a lossscape.data.Dataset")
    return ds


# ---------------------------------------------------------------------------------------------
# Splitting and normalization

def _stratified_order(y: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """A seeded order of all indices in which every prefix is as class-balanced as the counts allow.

    Examples are shuffled, ranked within their class, and ordered by (rank, class): the first k
    entries take one example of each class in turn, and a class that runs out simply drops out.
    """
    perm = torch.randperm(len(y), generator=gen)
    ys = y[perm]
    counts = torch.bincount(ys)
    by_class = torch.argsort(ys, stable=True)
    rank = torch.empty_like(ys)
    rank[by_class] = torch.arange(len(ys)) - torch.repeat_interleave(torch.cumsum(counts, 0) - counts, counts)
    return perm[torch.argsort(rank * len(counts) + ys)]


def _take(n: int, y: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Indices of a seeded, class-balanced subset of size n."""
    return _stratified_order(y, gen)[:n]


def _split(n: int, n_first: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded permutation of range(n) cut into (the rest, the first n_first)."""
    perm = torch.randperm(n, generator=gen)
    return perm[n_first:], perm[:n_first]


def _n_val(n_pool: int, val_fraction: float) -> int:
    n_val = round(val_fraction * n_pool)
    if not 1 <= n_val < n_pool:
        raise DataError(f"val_fraction: {val_fraction} of {n_pool} training examples leaves the train or "
                         "val split empty; allowed: 0 < val_fraction < 1 with >= 1 example in each")
    return n_val


def _n_test(n: int) -> int:
    n_test = round(TEST_FRACTION * n)
    if not 1 <= n_test <= n - 2:
        raise DataError(f"n_samples: {n} examples are too few to split into train, val and test")
    return n_test


def _standardize_(train: torch.Tensor, *others: torch.Tensor, dims: tuple[int, ...]) -> None:
    """Shift and scale every split, in place, by the train split's mean and std over `dims`.

    In place because the splits are fresh copies and full MNIST is ~200 MB of float32.
    """
    mean = train.mean(dim=dims, keepdim=True)
    std = train.std(dim=dims, keepdim=True, correction=0)
    std = torch.where(std > 0, std, 1.0)  # a constant channel is only centred, not divided by zero
    for x in (train, *others):
        x.sub_(mean).div_(std)


def _finish(name, X_pool, y_pool, X_test, y_test, val_fraction, gen, n_classes, std_dims):
    """Cut val out of the training pool, standardize with train statistics, and package.

    X_test must be a fresh tensor: it is standardized in place.
    """
    train_idx, val_idx = _split(len(y_pool), _n_val(len(y_pool), val_fraction), gen)
    X_train, X_val = X_pool[train_idx], X_pool[val_idx]  # indexing copies
    _standardize_(X_train, X_val, X_test, dims=std_dims)
    return Dataset(name, X_train, y_pool[train_idx], X_val, y_pool[val_idx], X_test, y_test,
                   n_classes, tuple(X_train.shape[1:]))


def _holdout_test(name, X, y, n_samples, val_fraction, gen, n_classes, std_dims):
    """For datasets without a test split: subsample, hold out TEST_FRACTION, then split the rest."""
    if n_samples is not None:
        if n_samples > len(y):
            raise DataError(f"n_samples: got {n_samples}; allowed: {MIN_SAMPLES}..{len(y)} for {name}")
        keep = _take(n_samples, y, gen)
        X, y = X[keep], y[keep]
    pool_idx, test_idx = _split(len(y), _n_test(len(y)), gen)
    return _finish(name, X[pool_idx], y[pool_idx], X[test_idx], y[test_idx], val_fraction, gen,
                   n_classes, std_dims)


# ---------------------------------------------------------------------------------------------
# mnist1d and digits: generated or bundled locally

_GLOBAL_RNG_LOCK = threading.Lock()


@functools.lru_cache(maxsize=4)  # generation takes ~1 ms per example; splits reuse it
def _generate_mnist1d(num_samples: int):
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()  # default seed 42: the published MNIST-1D recipe
    args.num_samples = num_samples
    # make_dataset reseeds and draws from numpy's and python's global RNGs; put them back so that
    # loading data never changes anybody else's random stream. The lock keeps two of our own
    # threads from interleaving here; it cannot guard other code drawing concurrently.
    with _GLOBAL_RNG_LOCK:
        py_state, np_state = random.getstate(), np.random.get_state()
        try:
            d = make_dataset(args)
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)
    return d["x"], d["y"], d["x_test"], d["y_test"]


def _mnist1d(n_samples, val_fraction, gen) -> Dataset:
    x, y, x_test, y_test = _generate_mnist1d(n_samples or 5000)
    # Already standardized by the generator (over all splits, as published): keep it that way.
    train_idx, val_idx = _split(len(y), _n_val(len(y), val_fraction), gen)
    # torch.tensor copies, so no returned tensor shares memory with the cached generator output.
    X, Y = torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.long)
    return Dataset("mnist1d", X[train_idx], Y[train_idx], X[val_idx], Y[val_idx],
                   torch.tensor(x_test, dtype=torch.float32), torch.tensor(y_test, dtype=torch.long),
                   10, (40,))


def _digits(n_samples, val_fraction, gen) -> Dataset:
    from sklearn.datasets import load_digits

    d = load_digits()  # bundled with scikit-learn: 1,797 8x8 scans, pixel values 0..16
    X = torch.from_numpy(d.data).float().div_(16).reshape(-1, 1, 8, 8)
    return _holdout_test("digits", X, torch.from_numpy(d.target).long(), n_samples, val_fraction, gen,
                         10, std_dims=(0, 1, 2, 3))


# ---------------------------------------------------------------------------------------------
# File-backed datasets

def _data_root(data_dir) -> Path | None:
    data_dir = data_dir if data_dir is not None else os.environ.get(ENV_VAR) or None
    return None if data_dir is None else Path(data_dir).expanduser().absolute()


def _fingerprint(paths, labels=None) -> tuple:
    """Hashable cache key: paths plus size and mtime, so a file replaced on disk is re-read."""
    labels = labels or (None,) * len(paths)
    return tuple((str(p), label, st.st_size, st.st_mtime_ns)
                 for p, label in zip(paths, labels) for st in [p.stat()])


_MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
# data_dir itself, torchvision's layout, and a named subfolder (also holding torchvision's layout).
_MNIST_FOLDERS = (".", "MNIST/raw", "mnist", "mnist/MNIST/raw")
_MNIST_HELP = (f"Put the four MNIST IDX files ({', '.join(_MNIST_FILES)}; each may end in .gz) in one "
               f"folder and pass it with --data-dir or the {ENV_VAR} environment variable; the files "
               "may also sit in its MNIST/raw/ (torchvision's layout) or mnist/ subfolder.")


def _find_mnist(root: Path | None) -> list[Path]:
    if root is None:
        raise DatasetNotFoundError(f"mnist: no data folder given. {_MNIST_HELP}")
    folders = [root / sub for sub in _MNIST_FOLDERS]
    fewest_missing = list(_MNIST_FILES)
    for folder in folders:
        found = [next((p for p in (folder / base, folder / f"{base}.gz") if p.is_file()), None)
                 for base in _MNIST_FILES]
        missing = [base for base, p in zip(_MNIST_FILES, found) if p is None]
        if not missing:
            return found
        if len(missing) < len(fewest_missing):
            fewest_missing = missing
    raise DatasetNotFoundError(
        f"mnist: missing {', '.join(fewest_missing)} (or .gz); searched {', '.join(map(str, folders))}. "
        f"{_MNIST_HELP}")


def _read_idx(path: Path, ndim: int) -> np.ndarray:
    """Parse an IDX file of unsigned bytes with `ndim` dimensions, checking header against size."""
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError) as e:  # gzip.BadGzipFile is an OSError; a cut-off stream an EOFError
        raise DataError(f"{path}: cannot decompress ({e}); the file is corrupt or truncated") from e
    header = 4 + 4 * ndim
    expected_magic = 0x0800 + ndim  # two zero bytes, type 0x08 = unsigned byte, number of dims
    magic = struct.unpack(">I", raw[:4])[0] if len(raw) >= 4 else None
    if magic != expected_magic:
        found = "none" if magic is None else f"{magic:#010x}"
        raise DataError(f"{path}: IDX magic number {found}, expected {expected_magic:#010x}; "
                         "the file is corrupt or not an MNIST file of this kind")
    if len(raw) < header:
        raise DataError(f"{path}: IDX header cut off ({len(raw)} bytes); the file is truncated")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    if len(raw) - header != math.prod(dims):
        raise DataError(f"{path}: IDX header says shape {dims} ({math.prod(dims)} bytes) but the file "
                         f"holds {len(raw) - header}; the file is truncated or corrupt")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _read_mnist_pair(images_path: Path, labels_path: Path):
    images, labels = _read_idx(images_path, 3), _read_idx(labels_path, 1)
    if not len(images):
        raise DataError(f"{images_path}: holds 0 images; an MNIST split needs at least one")
    if images.shape[1:] != (28, 28):
        raise DataError(f"{images_path}: images are {images.shape[1]}x{images.shape[2]}, expected 28x28")
    if len(labels) != len(images):
        raise DataError(f"{labels_path}: {len(labels)} labels for {len(images)} images in {images_path.name}")
    if len(labels) and labels.max() > 9:
        raise DataError(f"{labels_path}: label {labels.max()} outside 0..9")
    # The arrays view read-only bytes; torch.tensor copies them into writable storage.
    return torch.tensor(images), torch.tensor(labels).long()


def _mnist(files: list[Path], n_samples, val_fraction, gen) -> Dataset:
    X_pool, y_pool = _read_mnist_pair(files[0], files[1])
    X_test, y_test = _read_mnist_pair(files[2], files[3])
    if n_samples is not None:
        total = len(y_pool) + len(y_test)
        if n_samples > total:
            raise DataError(f"n_samples: got {n_samples}; allowed: {MIN_SAMPLES}..{total} for mnist")
        # Keep the official train/test proportions (60k:10k) in the subsample.
        n_pool = round(n_samples * len(y_pool) / total)
        if not 2 <= n_pool < n_samples:
            raise DataError(f"n_samples: {n_samples} examples are too few to split into train, val and test")
        keep, keep_test = _take(n_pool, y_pool, gen), _take(n_samples - n_pool, y_test, gen)
        X_pool, y_pool, X_test, y_test = X_pool[keep], y_pool[keep], X_test[keep_test], y_test[keep_test]
    # Subsample before converting: the uint8 images are a quarter of the float32 size.
    X_pool, X_test = (x.float().div_(255).unsqueeze(1) for x in (X_pool, X_test))
    return _finish("mnist", X_pool, y_pool, X_test, y_test, val_fraction, gen, 10, std_dims=(0, 1, 2, 3))


_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
_CLASS_FOLDERS = {"cat": 0, "cats": 0, "dog": 1, "dogs": 1}
_CATS_VS_DOGS_HELP = (
    "Accepted layouts: image files named cat*.jpg and dog*.jpg (Kaggle's cat.0.jpg, dog.0.jpg; "
    ".jpeg and .png too, any case) directly in the folder or in its train/ subfolder, or cat/ and "
    "dog/ subfolders (also Cat/, Dog/, cats/, dogs/, and Microsoft's PetImages/Cat, PetImages/Dog) "
    f"holding the images. The folder is data_dir/cats_vs_dogs or data_dir itself, with data_dir "
    f"given by --data-dir or the {ENV_VAR} environment variable.")


def _subfolders(folder: Path, names) -> list[Path]:
    """Subfolders whose lower-cased name is in `names` (folder names differ in case across sources)."""
    return sorted(p for p in folder.iterdir() if p.is_dir() and p.name.lower() in names)


def _is_image(p: Path) -> bool:
    return p.suffix.lower() in _IMAGE_SUFFIXES and p.is_file()


def _find_cats_vs_dogs(root: Path | None) -> list[tuple[Path, int]]:
    """(path, label) pairs, sorted, from the first folder that holds either layout."""
    if root is None:
        raise DatasetNotFoundError(f"cats_vs_dogs: no data folder given. {_CATS_VS_DOGS_HELP}")
    base = root / "cats_vs_dogs" if (root / "cats_vs_dogs").is_dir() else root
    if not base.is_dir():
        problem = "is not a folder" if base.exists() else "does not exist"
        raise DatasetNotFoundError(f"cats_vs_dogs: {base} {problem}. {_CATS_VS_DOGS_HELP}")
    for folder in [base, *_subfolders(base, {"train", "petimages"})]:
        files = [(p, 0 if p.name.lower().startswith("cat") else 1) for p in folder.iterdir()
                 if p.name.lower().startswith(("cat", "dog")) and _is_image(p)]
        if not files:
            files = [(p, _CLASS_FOLDERS[sub.name.lower()])
                     for sub in _subfolders(folder, _CLASS_FOLDERS) for p in sub.iterdir() if _is_image(p)]
        if files:
            counts = [sum(label == c for _, label in files) for c in (0, 1)]
            if min(counts) == 0:
                raise DatasetNotFoundError(f"cats_vs_dogs: {folder} holds {counts[0]} cat and {counts[1]} "
                                           f"dog images; both classes are needed. {_CATS_VS_DOGS_HELP}")
            return sorted(files)
    raise DatasetNotFoundError(f"cats_vs_dogs: no cat or dog images in {base}. {_CATS_VS_DOGS_HELP}")


def _decode(path: Path, size: int):
    """An (size, size, 3) uint8 array, or the exception that made the file unreadable."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            # For JPEGs, let libjpeg decode at the smallest power-of-two scale still >= size
            # (less work on large photos); the bilinear resize below does the rest.
            img.draft("RGB", (size, size))
            return np.asarray(img.convert("RGB").resize((size, size), Image.BILINEAR))
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        return e


def _cats_vs_dogs(files: list[tuple[Path, int]], n_samples, val_fraction, image_size, gen) -> Dataset:
    labels = torch.tensor([label for _, label in files])
    if n_samples is not None and n_samples > len(files):
        raise DataError(f"n_samples: got {n_samples}; allowed: {MIN_SAMPLES}..{len(files)} for "
                         "cats_vs_dogs (the images found)")
    want = n_samples or len(files)
    order = _stratified_order(labels, gen).tolist()
    images, kept, bad = [], [], []
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:  # Pillow releases the GIL
        # Unreadable files are replaced by the next ones in the balanced order until `want` are read.
        while len(kept) < want and order:
            batch, order = order[:want - len(kept)], order[want - len(kept):]
            for i, result in zip(batch, pool.map(_decode, [files[i][0] for i in batch],
                                                 [image_size] * len(batch))):
                if isinstance(result, Exception):
                    bad.append((files[i][0], result))
                else:
                    images.append(result)
                    kept.append(i)
    if bad:
        path, err = bad[0]
        if not images:
            raise DataError(f"cats_vs_dogs: none of the {len(bad)} images could be read, e.g. {path}: {err}")
        # The folder held both classes; what was read must too, or the model learns one class only.
        counts = torch.bincount(labels[kept], minlength=2).tolist()
        if min(counts) == 0:
            raise DataError(f"cats_vs_dogs: after skipping {len(bad)} unreadable image(s) (e.g. {path}: {err}), "
                            f"{counts[0]} cat and {counts[1]} dog images remain; both classes are needed")
        warnings.warn(f"cats_vs_dogs: skipped {len(bad)} unreadable image(s), e.g. {path}: {err}",
                      stacklevel=4)
    # contiguous() before float(): float() would keep the permuted (channels-last) strides.
    X = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous().float().div_(255)
    return _holdout_test("cats_vs_dogs", X, labels[kept], None, val_fraction, gen, 2, std_dims=(0, 2, 3))
