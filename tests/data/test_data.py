"""Dataset registry: generated sets are seeded and correct; file readers fail clearly."""

from __future__ import annotations

import gzip
import struct
from collections import deque

import numpy as np
import pytest

from cortex_resnet.data.datasets import CIFAR10_FILES, MNIST_FILES, get_dataset, known_datasets, read_idx
from cortex_resnet.errors import SpecError, UnknownNameError


@pytest.fixture(scope="module")
def mnist1d():
    return get_dataset("mnist1d")


def test_mnist1d_published_shape(mnist1d):
    """4000 train / 1000 test, length 40, 10 balanced classes (Greydanus 2020)."""
    assert mnist1d.x_train.shape == (4000, 1, 40) and mnist1d.x_test.shape == (1000, 1, 40)
    assert mnist1d.x_train.dtype == np.float32 and mnist1d.y_train.dtype == np.int64
    counts = np.bincount(np.concatenate([mnist1d.y_train, mnist1d.y_test]), minlength=10)
    assert counts.tolist() == [500] * 10  # num_samples // 10 per class
    # mnist1d standardises the whole set to mean 0, std 1
    x = np.concatenate([mnist1d.x_train, mnist1d.x_test])
    assert abs(x.mean()) < 1e-3 and abs(x.std() - 1) < 1e-3


def test_mnist1d_seeded_and_leaves_global_rng_alone(mnist1d):
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    again = get_dataset("mnist1d", params={"num_samples": 200})
    other = get_dataset("mnist1d", seed=7, params={"num_samples": 200})
    assert np.array_equal(np.random.get_state()[1], before)
    first = get_dataset("mnist1d", params={"num_samples": 200})
    assert np.array_equal(again.x_train, first.x_train)
    assert not np.array_equal(again.x_train, other.x_train)


def test_digits_stratified_split():
    d = get_dataset("digits", seed=3)
    assert d.in_shape == (1, 8, 8) and len(d.y_train) + len(d.y_test) == 1797
    frac = np.bincount(d.y_test, minlength=10) / np.bincount(
        np.concatenate([d.y_train, d.y_test]), minlength=10)
    np.testing.assert_allclose(frac, 0.2, atol=0.02)  # every class split 80/20 (rounding per class)
    assert not np.array_equal(d.y_test, get_dataset("digits", seed=4).y_test)


def _bfs_connected(grid: np.ndarray, a: tuple[int, int], b: tuple[int, int]) -> bool:
    """Independent reference: breadth-first search over 4-neighbour 'on' cells."""
    seen, todo = {a}, deque([a])
    while todo:
        i, j = todo.popleft()
        if (i, j) == b:
            return True
        for di, dj in ((1, 0), (-1, 0), (0, 1), (0, -1)):
            n = (i + di, j + dj)
            if 0 <= n[0] < grid.shape[0] and 0 <= n[1] < grid.shape[1] and grid[n] and n not in seen:
                seen.add(n)
                todo.append(n)
    return False


@pytest.mark.parametrize("size,density,min_distance", [(6, 0.5, 3), (10, 0.55, 8)])
def test_connected_labels_match_breadth_first_search(size, density, min_distance):
    d = get_dataset("connected", seed=1, params={"size": size, "density": density,
                                                  "min_distance": min_distance,
                                                  "n_train": 150, "n_test": 50})
    x = np.concatenate([d.x_train, d.x_test]) > 0
    y = np.concatenate([d.y_train, d.y_test])
    assert abs(y.mean() - 0.5) < 0.01  # balanced by construction
    labels = []
    for grid, markers in zip(x[:, 0], x[:, 1]):
        (a, b) = [tuple(p) for p in np.argwhere(markers)]
        assert grid[a] and grid[b]
        assert abs(a[0] - b[0]) + abs(a[1] - b[1]) >= min_distance
        labels.append(_bfs_connected(grid, a, b))
    assert np.array_equal(np.array(labels, dtype=np.int64), y)


def test_unknown_dataset_lists_known():
    with pytest.raises(UnknownNameError) as err:
        get_dataset("imagenet")
    for name in known_datasets():
        assert name in str(err.value)
    assert err.value.field == "data.name"


def test_unknown_parameter_lists_allowed():
    with pytest.raises(SpecError, match="size, density, min_distance") as err:
        get_dataset("connected", params={"sise": 5})
    assert err.value.field == "data.params.sise"


@pytest.mark.parametrize("params,field", [({"size": 2}, "data.params.size"),
                                          ({"density": 1.5}, "data.params.density"),
                                          ({"size": 5, "min_distance": 9}, "data.params.min_distance"),
                                          ({"size": 5.5}, "data.params.size")])
def test_connected_bad_parameters(params, field):
    with pytest.raises(SpecError) as err:
        get_dataset("connected", params=params)
    assert err.value.field == field


def test_subset_bounds():
    with pytest.raises(SpecError, match="1..360|1..359"):
        get_dataset("digits", n_test=100000)


# ------------------------------------------------------------------ files from --data-dir

def _idx(path, arr: np.ndarray, compress: bool = False) -> None:
    head = bytes([0, 0, 0x08, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    raw = head + arr.astype(np.uint8).tobytes()
    if compress:
        with gzip.open(str(path) + ".gz", "wb") as fh:
            fh.write(raw)
    else:
        path.write_bytes(raw)


@pytest.fixture
def mnist_dir(tmp_path, rng):
    sizes = {"train": 30, "test": 10}
    for split, n in sizes.items():
        x = rng.integers(0, 256, (n, 28, 28))
        y = rng.integers(0, 10, n)
        _idx(tmp_path / MNIST_FILES[f"{split}_x"], x, compress=split == "test")
        _idx(tmp_path / MNIST_FILES[f"{split}_y"], y)
    return tmp_path


def test_mnist_idx_reader(mnist_dir):
    d = get_dataset("mnist", data_dir=mnist_dir)
    assert d.x_train.shape == (30, 1, 28, 28) and d.x_test.shape == (10, 1, 28, 28)
    raw = read_idx(mnist_dir / MNIST_FILES["train_y"])
    assert np.array_equal(d.y_train, raw)
    assert abs(float(d.x_train.mean())) < 1e-5  # standardised by the training statistics


def test_mnist_needs_data_dir():
    with pytest.raises(SpecError, match="never downloaded") as err:
        get_dataset("mnist")
    assert err.value.field == "--data-dir"


def test_mnist_missing_files_say_what_to_put_where(tmp_path):
    with pytest.raises(SpecError, match="train-images-idx3-ubyte.*t10k-labels-idx1-ubyte"):
        get_dataset("mnist", data_dir=tmp_path)


def test_mnist_truncated_file(mnist_dir):
    p = mnist_dir / MNIST_FILES["train_x"]
    p.write_bytes(p.read_bytes()[:-100])
    with pytest.raises(SpecError, match="truncated or corrupt"):
        get_dataset("mnist", data_dir=mnist_dir)


def test_cifar10_binary_reader(tmp_path, rng):
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    records = {}
    for name in CIFAR10_FILES:
        rec = rng.integers(0, 256, (4, 3073)).astype(np.uint8)
        rec[:, 0] = rng.integers(0, 10, 4)
        rec.tofile(folder / name)
        records[name] = rec
    d = get_dataset("cifar10", data_dir=tmp_path)
    assert d.x_train.shape == (20, 3, 32, 32) and d.x_test.shape == (4, 3, 32, 32)
    assert np.array_equal(d.y_test, records["test_batch.bin"][:, 0])
    np.testing.assert_allclose(d.x_train.mean(axis=(0, 2, 3)), 0.0, atol=1e-5)  # per channel
    # the channel layout: record bytes 1..1024 are the red plane of image 0
    red = records["data_batch_1.bin"][0, 1:1025].reshape(32, 32).astype(float)
    corr = np.corrcoef(red.ravel(), d.x_train[0, 0].ravel())[0, 1]
    assert corr == pytest.approx(1.0)


def test_cifar10_wrong_record_size(tmp_path):
    for name in CIFAR10_FILES:
        np.zeros(3000, np.uint8).tofile(tmp_path / name)
    with pytest.raises(SpecError, match="3073 bytes"):
        get_dataset("cifar10", data_dir=tmp_path)


def test_cifar10_missing_folder(tmp_path):
    with pytest.raises(SpecError, match="cifar-10-batches-bin"):
        get_dataset("cifar10", data_dir=tmp_path)
    with pytest.raises(SpecError, match="an existing folder"):
        get_dataset("cifar10", data_dir=tmp_path / "nope")


def test_crossing_labels_and_matched_density():
    """Labels by breadth-first search from every left-edge cell; both labels have the same
    distribution of "on" counts (density says nothing), the border is off, the source marked."""
    d = get_dataset("crossing", seed=2, params={"size": 6, "n_train": 150, "n_test": 50})
    x = np.concatenate([d.x_train, d.x_test])
    y = np.concatenate([d.y_train, d.y_test])
    assert x.shape[1:] == (2, 8, 8) and abs(y.mean() - 0.5) < 1e-9
    on = x[:, 0] > 0
    assert not on[:, 0].any() and not on[:, -1].any() and not on[:, :, 0].any() and not on[:, :, -1].any()
    assert (x[:, 1, 1:-1, 0] > 0).all() and (x[:, 1] > 0).sum() == 6 * len(y)
    counts = on.sum(axis=(1, 2))
    assert sorted(counts[y == 1]) == sorted(counts[y == 0])
    inner = on[:, 1:-1, 1:-1]
    labels = [any(_bfs_connected(g, (i, 0), (j, 5)) for i in range(6) for j in range(6)
                  if g[i, 0] and g[j, 5]) for g in inner]
    assert np.array_equal(np.array(labels, dtype=np.int64), y)
