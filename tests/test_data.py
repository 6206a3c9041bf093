"""Dataset loaders: every check compares against data the test makes or reads independently
(mnist1d's own generator, scikit-learn's digits, IDX files and JPEGs written here)."""

import collections
import gzip
import os
import random
import struct

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st
from PIL import Image

from lossscape import data
from lossscape.data import DataError, DatasetNotFoundError, load_dataset


@pytest.fixture
def fresh_cache():
    """Clear the in-process memo so a load really regenerates or rereads."""
    data._load.cache_clear()
    data._generate_mnist1d.cache_clear()
    yield
    data._load.cache_clear()


def examples(X, y):
    """Multiset of (input bytes, label): compares splits regardless of order."""
    return collections.Counter((x.numpy().tobytes(), int(label)) for x, label in zip(X, y))


def splits(ds):
    return [(ds.X_train, ds.y_train), (ds.X_val, ds.y_val), (ds.X_test, ds.y_test)]


def assert_disjoint(ds):
    keys = [{x.numpy().tobytes() for x in X} for X, _ in splits(ds)]
    assert not (keys[0] & keys[1] or keys[0] & keys[2] or keys[1] & keys[2])


def assert_train_standardized(ds, dims):
    mean = ds.X_train.double().mean(dim=dims)
    std = ds.X_train.double().std(dim=dims, correction=0)
    torch.testing.assert_close(mean, torch.zeros_like(mean), atol=1e-5, rtol=0)
    torch.testing.assert_close(std, torch.ones_like(std), atol=1e-5, rtol=0)


def undo_scalar_affine(ds, top):
    """Map every split back to integer pixel levels 0..top through the one affine map that sends the
    smallest value to 0 and the largest to `top`; it exists only if all splits share one transform."""
    lo = min(X.min() for X, _ in splits(ds))
    hi = max(X.max() for X, _ in splits(ds))
    out = []
    for X, y in splits(ds):
        levels = (X.double() - lo) / (hi - lo) * top
        torch.testing.assert_close(levels, levels.round(), atol=1e-4, rtol=0)
        out.append((levels.round().to(torch.uint8), y))
    return out


def assert_split_sizes(ds, n_pool, val_fraction=0.2):
    n_train, n_val = len(ds.y_train), len(ds.y_val)
    assert n_train + n_val == n_pool
    assert abs(n_val - val_fraction * n_pool) <= 1


# ---------------------------------------------------------------------------------------------
# mnist1d

def reference_mnist1d(num_samples):
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples = num_samples
    py_state, np_state = random.getstate(), np.random.get_state()
    try:
        return make_dataset(args)
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)


def test_mnist1d_is_the_generators_data_split_into_disjoint_parts(fresh_cache):
    ref = reference_mnist1d(500)
    ds = load_dataset("mnist1d", n_samples=500)

    assert (ds.name, ds.n_classes, ds.input_shape) == ("mnist1d", 10, (40,))
    assert ds.X_train.dtype == torch.float32 and ds.y_train.dtype == torch.int64
    assert ds.X_train.shape[1:] == ds.X_val.shape[1:] == ds.X_test.shape[1:] == (40,)
    assert sum(len(y) for _, y in splits(ds)) == 500
    assert_split_sizes(ds, n_pool=400)
    # The generator's train part is split into train + val; its test part is kept as is.
    ref_x = torch.tensor(ref["x"], dtype=torch.float32)
    assert examples(ds.X_train, ds.y_train) + examples(ds.X_val, ds.y_val) == examples(ref_x, ref["y"])
    torch.testing.assert_close(ds.X_test, torch.tensor(ref["x_test"], dtype=torch.float32), rtol=0, atol=0)
    assert torch.equal(ds.y_test, torch.tensor(ref["y_test"]))
    assert len({x.numpy().tobytes() for x in ref_x}) == len(ref_x)  # so disjointness means something
    assert_disjoint(ds)
    assert set(ds.y_train.tolist()) == set(range(10))


def test_mnist1d_is_deterministic_and_leaves_global_rngs_alone(fresh_cache):
    random.seed(123)
    np.random.seed(123)
    torch.manual_seed(123)
    before = random.getstate(), np.random.get_state()[1].copy(), torch.get_rng_state()

    first = load_dataset("mnist1d", n_samples=200)
    data._load.cache_clear()
    data._generate_mnist1d.cache_clear()
    second = load_dataset("mnist1d", n_samples=200)
    other_split = load_dataset("mnist1d", n_samples=200, split_seed=1)

    assert random.getstate() == before[0]
    assert np.array_equal(np.random.get_state()[1], before[1])
    assert torch.equal(torch.get_rng_state(), before[2])
    assert first is not second
    for (Xa, ya), (Xb, yb) in zip(splits(first), splits(second)):
        assert torch.equal(Xa, Xb) and torch.equal(ya, yb)
    # Another split seed reshuffles train/val but draws from the same examples.
    assert not torch.equal(first.X_val, other_split.X_val)
    assert (examples(first.X_train, first.y_train) + examples(first.X_val, first.y_val)
            == examples(other_split.X_train, other_split.y_train) + examples(other_split.X_val, other_split.y_val))


def test_repeated_loads_share_one_memoized_result(fresh_cache):
    assert load_dataset("digits", n_samples=50) is load_dataset("digits", n_samples=50)
    # image_size and data_dir mean nothing to digits, so they do not cause a reload.
    assert load_dataset("digits", n_samples=50) is load_dataset("digits", n_samples=50, image_size=9)


# ---------------------------------------------------------------------------------------------
# digits

def test_digits_partition_the_bundled_scans_standardized_with_train_stats():
    from sklearn.datasets import load_digits

    ref = load_digits()
    ds = load_dataset("digits")

    assert (ds.n_classes, ds.input_shape) == (10, (1, 8, 8))
    n = len(ref.target)
    assert abs(len(ds.y_test) - 0.2 * n) <= 1
    assert_split_sizes(ds, n_pool=n - len(ds.y_test))
    for _, y in splits(ds):
        assert set(y.tolist()) == set(range(10))
    levels = undo_scalar_affine(ds, top=16)
    assert sum((examples(X, y) for X, y in levels), collections.Counter()) == examples(
        torch.tensor(ref.data, dtype=torch.uint8).reshape(-1, 1, 8, 8), ref.target)
    assert_disjoint(ds)
    assert_train_standardized(ds, dims=(0, 1, 2, 3))
    # Val and test were not standardized on their own statistics.
    assert abs(ds.X_val.mean()) > 1e-3 and abs(ds.X_test.mean()) > 1e-3


def test_digits_subsample_is_class_balanced():
    ds = load_dataset("digits", n_samples=100, split_seed=3)
    counts = sum(torch.bincount(y, minlength=10) for _, y in splits(ds))
    assert counts.tolist() == [10] * 10


# ---------------------------------------------------------------------------------------------
# mnist: tiny IDX files written here

MNIST_NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
               "t10k-labels-idx1-ubyte")


def write_idx(path, array):
    payload = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    payload += array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(payload) if path.suffix == ".gz" else payload)


def tiny_mnist(n_train=20, n_test=10):
    """Distinct images (image k: pixel j = (j * (k + 1) + 3k) mod 256; image 0 holds 0 and 255)."""
    k = np.arange(n_train + n_test)[:, None]
    images = ((np.arange(784) * (k + 1) + 3 * k) % 256).astype(np.uint8).reshape(-1, 28, 28)
    labels = (k[:, 0] % 10).astype(np.uint8)
    return images[:n_train], labels[:n_train], images[n_train:], labels[n_train:]


def write_mnist(folder, gz=False, skip=()):
    folder.mkdir(parents=True, exist_ok=True)
    for name, array in zip(MNIST_NAMES, tiny_mnist()):
        if name not in skip:
            write_idx(folder / (name + (".gz" if gz else "")), array)


@pytest.mark.parametrize("subfolder", [".", "MNIST/raw", "mnist"])
@pytest.mark.parametrize("gz", [False, True])
def test_mnist_idx_round_trip(tmp_path, subfolder, gz):
    write_mnist(tmp_path / subfolder, gz=gz)
    train_images, train_labels, test_images, test_labels = tiny_mnist()
    ds = load_dataset("mnist", data_dir=tmp_path)

    assert (ds.n_classes, ds.input_shape) == (10, (1, 28, 28))
    assert ds.X_train.dtype == torch.float32 and ds.y_train.dtype == torch.int64
    assert_split_sizes(ds, n_pool=20)
    (tr, ytr), (va, yva), (te, yte) = undo_scalar_affine(ds, top=255)
    expected_pool = examples(torch.from_numpy(train_images).unsqueeze(1), train_labels)
    assert examples(tr, ytr) + examples(va, yva) == expected_pool
    assert torch.equal(te, torch.from_numpy(test_images).unsqueeze(1))
    assert torch.equal(yte, torch.from_numpy(test_labels).long())
    assert_train_standardized(ds, dims=(0, 1, 2, 3))
    assert_disjoint(ds)


def test_mnist_subsample_keeps_the_train_test_proportion_and_balance(tmp_path):
    write_mnist(tmp_path)
    ds = load_dataset("mnist", data_dir=tmp_path, n_samples=15)
    assert len(ds.y_train) + len(ds.y_val) == 10 and len(ds.y_test) == 5  # 20:10 files
    pool_counts = torch.bincount(torch.cat([ds.y_train, ds.y_val]), minlength=10)
    assert pool_counts.tolist() == [1] * 10
    assert len(set(ds.y_test.tolist())) == 5


def test_mnist_data_dir_from_environment(tmp_path, monkeypatch):
    write_mnist(tmp_path / "MNIST" / "raw", gz=True)
    monkeypatch.setenv("LOSSSCAPE_DATA", str(tmp_path))
    assert len(load_dataset("mnist").y_test) == 10
    monkeypatch.delenv("LOSSSCAPE_DATA")
    with pytest.raises(DatasetNotFoundError, match="LOSSSCAPE_DATA"):
        load_dataset("mnist")


def test_mnist_missing_file_is_named(tmp_path):
    write_mnist(tmp_path, skip=("t10k-labels-idx1-ubyte",))
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("mnist", data_dir=tmp_path)
    message = str(info.value)
    assert "missing t10k-labels-idx1-ubyte (or .gz);" in message
    assert str(tmp_path / "MNIST" / "raw") in message and "--data-dir" in message
    assert "\n" not in message
    assert isinstance(info.value, FileNotFoundError)


def corrupt_magic(raw):
    return raw[:3] + b"\x01" + raw[4:]


@pytest.mark.parametrize("gz, corrupt, expected", [
    (False, corrupt_magic, "magic number 0x00000801, expected 0x00000803"),
    (False, lambda raw: raw[:-100], "truncated"),
    (False, lambda raw: raw[:10], "truncated"),
    (True, lambda raw: raw[:len(raw) // 2], "cannot decompress"),
])
def test_mnist_corrupt_file_is_named(tmp_path, gz, corrupt, expected):
    write_mnist(tmp_path, gz=gz)
    path = tmp_path / ("train-images-idx3-ubyte" + (".gz" if gz else ""))
    path.write_bytes(corrupt(path.read_bytes()))
    with pytest.raises(ValueError, match=expected) as info:
        load_dataset("mnist", data_dir=tmp_path)
    assert str(path) in str(info.value)


def idx_header(ndim, *dims):
    return struct.pack(">HBB", 0, 0x08, ndim) + struct.pack(f">{ndim}I", *dims)


# Each case damages the tiny MNIST folder in one way: (id, file, how, words the message must hold).
# The file named is the one the message must name.
IMAGES, LABELS = "train-images-idx3-ubyte", "train-labels-idx1-ubyte"
MNIST_DAMAGE = [
    ("wrong magic", IMAGES, lambda p: p.write_bytes(corrupt_magic(p.read_bytes())), "magic number"),
    ("truncated gzip", IMAGES + ".gz", lambda p: p.write_bytes(p.read_bytes()[:40]), "cannot decompress"),
    ("not gzip", IMAGES + ".gz", lambda p: p.write_bytes(gzip.decompress(p.read_bytes())), "cannot decompress"),
    ("label count mismatch", LABELS, lambda p: write_idx(p, np.zeros(19, np.uint8)), "19 labels for 20 images"),
    ("truncated header", IMAGES, lambda p: p.write_bytes(p.read_bytes()[:10]), "header cut off"),
    ("truncated body", IMAGES, lambda p: p.write_bytes(p.read_bytes()[:-100]), "truncated"),
    ("0 images", IMAGES, lambda p: write_idx(p, np.zeros((0, 28, 28), np.uint8)), "holds 0 images"),
    ("2^32 images", IMAGES, lambda p: p.write_bytes(idx_header(3, 2**32 - 1, 28, 28) + bytes(784)), "header says shape"),
    ("label above 9", LABELS, lambda p: write_idx(p, np.full(20, 10, np.uint8)), "label 10 outside 0..9"),
    ("27x27 images", IMAGES, lambda p: write_idx(p, np.zeros((20, 27, 27), np.uint8)), "27x27, expected 28x28"),
]


def damage_mnist(folder, name, how):
    write_mnist(folder, gz=name.endswith(".gz"))
    path = folder / name
    how(path)
    return path


@pytest.mark.parametrize("name, how, words", [c[1:] for c in MNIST_DAMAGE], ids=[c[0] for c in MNIST_DAMAGE])
def test_damaged_mnist_file_is_a_one_line_data_error_naming_it_D1(tmp_path, name, how, words):
    path = damage_mnist(tmp_path, name, how)
    with pytest.raises(DataError) as info:
        load_dataset("mnist", data_dir=tmp_path)
    message = str(info.value)
    assert str(path) in message and words in message and "\n" not in message


def test_mnist_file_replaced_on_disk_is_reread(tmp_path):
    write_mnist(tmp_path)
    first = load_dataset("mnist", data_dir=tmp_path)
    labels = tmp_path / "t10k-labels-idx1-ubyte"
    write_idx(labels, np.full(10, 7, dtype=np.uint8))
    stat = labels.stat()
    os.utime(labels, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # beyond timestamp granularity
    second = load_dataset("mnist", data_dir=tmp_path)
    assert first.y_test.tolist() == list(range(10)) and second.y_test.tolist() == [7] * 10


# ---------------------------------------------------------------------------------------------
# cats_vs_dogs: solid-colour images written here (cats reddish, dogs bluish)

# Every channel differs between the two colours, so each has a spread to standardize.
RED, BLUE = (230, 40, 20), (20, 140, 230)


def write_image(path, colour):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (20, 14), colour).save(path)


def looks_like_dog(X):
    """Blue over red after per-channel standardization: compares each image with the others."""
    return (X[:, 2].mean(dim=(1, 2)) > X[:, 0].mean(dim=(1, 2))).long()


def kaggle_layout(root):
    folder = root / "cats_vs_dogs" / "train"
    for i in range(6):
        write_image(folder / f"cat.{i}.jpg", RED)
        write_image(folder / f"dog.{i}.jpg", BLUE)
    write_image(folder / "Cat.6.JPEG", RED)
    write_image(folder / "dog.6.png", BLUE)
    write_image(folder / "bird.0.jpg", (0, 255, 0))  # neither class: ignored
    (folder / "cat_notes.txt").write_text("not an image suffix: ignored")
    return 14


def folder_layout(root):
    for i in range(5):
        write_image(root / "Cat" / f"{i}.jpg", RED)
        write_image(root / "dogs" / f"{i}.png", BLUE)
    return 10


@pytest.mark.parametrize("layout", [kaggle_layout, folder_layout])
def test_cats_vs_dogs_labels_follow_colour(tmp_path, layout, fresh_cache):
    n = layout(tmp_path)
    ds = load_dataset("cats_vs_dogs", data_dir=tmp_path, image_size=8)

    assert (ds.n_classes, ds.input_shape) == (2, (3, 8, 8))
    assert sum(len(y) for _, y in splits(ds)) == n
    for X, y in splits(ds):
        assert X.shape[1:] == (3, 8, 8) and X.dtype == torch.float32 and X.is_contiguous()
        assert torch.equal(looks_like_dog(X), y)
    assert_train_standardized(ds, dims=(0, 2, 3))
    data._load.cache_clear()
    again = load_dataset("cats_vs_dogs", data_dir=tmp_path, image_size=8)
    assert all(torch.equal(a, b) for (a, _), (b, _) in zip(splits(ds), splits(again)))


def test_cats_vs_dogs_skips_unreadable_images_with_one_warning(tmp_path):
    n = kaggle_layout(tmp_path)
    (tmp_path / "cats_vs_dogs" / "train" / "cat.99.jpg").write_bytes(b"not a jpeg")
    (tmp_path / "cats_vs_dogs" / "train" / "dog.98.png").write_bytes(b"")
    with pytest.warns(UserWarning) as record:
        ds = load_dataset("cats_vs_dogs", data_dir=tmp_path, image_size=8)
    assert [str(w.message).split(", e.g.")[0] for w in record] == [
        "cats_vs_dogs: skipped 2 unreadable image(s)"]
    assert record[0].filename == __file__  # attributed to the caller of load_dataset
    assert sum(len(y) for _, y in splits(ds)) == n


def test_cats_vs_dogs_subsample_is_balanced(tmp_path):
    kaggle_layout(tmp_path)  # 7 cats, 7 dogs
    ds = load_dataset("cats_vs_dogs", data_dir=tmp_path, image_size=4, n_samples=10)
    assert torch.bincount(torch.cat([y for _, y in splits(ds)])).tolist() == [5, 5]


def test_cats_vs_dogs_subsample_replaces_unreadable_images(tmp_path):
    for i in range(6):
        write_image(tmp_path / "cat" / f"{i}.jpg", RED)
        write_image(tmp_path / "dog" / f"{i}.jpg", BLUE)
    for i in range(3):
        (tmp_path / "cat" / f"broken{i}.jpg").write_bytes(b"")
    # 14 of the 15 files are drawn, so at least two broken ones; the one file left over replaces
    # them, so all 12 readable images end up in the data.
    with pytest.warns(UserWarning, match="unreadable"):
        ds = load_dataset("cats_vs_dogs", data_dir=tmp_path, image_size=4, n_samples=14)
    assert torch.bincount(torch.cat([y for _, y in splits(ds)])).tolist() == [6, 6]
    assert all(torch.equal(looks_like_dog(X), y) for X, y in splits(ds))


def test_cats_vs_dogs_missing_folder_explains_both_layouts(tmp_path):
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("cats_vs_dogs", data_dir=tmp_path / "nowhere")
    assert "cat*.jpg" in str(info.value) and "cat/ and dog/ subfolders" in str(info.value)
    write_image(tmp_path / "cat.0.jpg", RED)
    with pytest.raises(DatasetNotFoundError, match="1 cat and 0 dog images"):
        load_dataset("cats_vs_dogs", data_dir=tmp_path)


def test_cats_vs_dogs_all_unreadable_is_an_error(tmp_path):
    for name in ("cat.0.jpg", "dog.0.jpg"):
        (tmp_path / name).write_bytes(b"")
    with pytest.raises(ValueError, match="none of the 2 images could be read"):
        load_dataset("cats_vs_dogs", data_dir=tmp_path)


def test_cats_vs_dogs_all_unreadable_is_a_data_error_D1(tmp_path):
    for name in ("cat.0.jpg", "dog.0.jpg"):
        (tmp_path / name).write_bytes(b"not an image")
    with pytest.raises(DataError, match="^cats_vs_dogs: none of the 2 images could be read"):
        load_dataset("cats_vs_dogs", data_dir=tmp_path)


def test_cats_vs_dogs_one_class_left_after_skipping_is_an_error_D15(tmp_path):
    for i in range(6):
        write_image(tmp_path / f"cat.{i}.jpg", RED)
        (tmp_path / f"dog.{i}.jpg").write_bytes(b"not an image")
    with pytest.raises(DataError) as info:
        load_dataset("cats_vs_dogs", data_dir=tmp_path, image_size=4)
    message = str(info.value)
    assert "after skipping 6 unreadable image(s)" in message and "6 cat and 0 dog images remain" in message
    assert "\n" not in message


def test_cats_vs_dogs_data_dir_that_is_a_file_is_not_a_folder_D25(tmp_path):
    path = tmp_path / "images.zip"
    path.write_bytes(b"PK")
    with pytest.raises(DatasetNotFoundError, match=f"^cats_vs_dogs: {path} is not a folder\\. "):
        load_dataset("cats_vs_dogs", data_dir=path)
    with pytest.raises(DatasetNotFoundError, match=f"^cats_vs_dogs: {tmp_path / 'nowhere'} does not exist\\. "):
        load_dataset("cats_vs_dogs", data_dir=tmp_path / "nowhere")


# ---------------------------------------------------------------------------------------------
# arguments and the balanced order

@pytest.mark.parametrize("kwargs, field", [
    (dict(name="foo"), "dataset: unknown 'foo'; allowed: mnist1d, digits, mnist, cats_vs_dogs"),
    (dict(name="digits", n_samples=5), "n_samples: got 5; allowed"),
    (dict(name="digits", n_samples=20.0), "n_samples: got 20.0; allowed"),
    (dict(name="digits", n_samples=True), "n_samples: got True; allowed"),
    (dict(name="digits", n_samples=5000), "n_samples: got 5000; allowed: 10..1797 for digits"),
    (dict(name="mnist1d", n_samples=15), "n_samples: got 15; allowed: a multiple of 10"),
    (dict(name="digits", val_fraction=0), "val_fraction: got 0; allowed: 0 < val_fraction < 1"),
    (dict(name="digits", val_fraction=1.0), "val_fraction: got 1.0; allowed"),
    (dict(name="digits", val_fraction="0.2"), "val_fraction: got '0.2'; allowed"),
    (dict(name="digits", n_samples=10, val_fraction=0.01), "val_fraction: 0.01 of 8 training"),
    (dict(name="digits", image_size=0), "image_size: got 0; allowed: an integer >= 1"),
    (dict(name="digits", split_seed="0"), "split_seed: got '0'; allowed: an integer"),
    (dict(name="digits", split_seed=-1), "split_seed: got -1; allowed: an integer in 0..2**64-1"),
])
def test_bad_arguments_give_one_line_errors(kwargs, field):
    with pytest.raises(ValueError) as info:
        load_dataset(**kwargs)
    assert str(info.value).startswith(field) and "\n" not in str(info.value)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(0, 4), min_size=1, max_size=60), st.integers(0, 2**31))
def test_stratified_order_prefixes_are_balanced(labels, seed):
    y = torch.tensor(labels)
    order = data._stratified_order(y, torch.Generator().manual_seed(seed))
    assert sorted(order.tolist()) == list(range(len(labels)))
    totals = collections.Counter(labels)
    for k in range(1, len(labels) + 1):
        counts = collections.Counter(y[order[:k]].tolist())
        top = max(counts.values())
        # Every class not yet used up is within one of the most-drawn class.
        assert all(counts[c] >= top - 1 for c in totals if counts[c] < totals[c])
