"""Datasets read from a folder the user names (``--data-dir``): MNIST (IDX) and CIFAR-10 (binary).

Nothing is downloaded. A missing folder, missing files, or files of the wrong
size give a :class:`~cortex_resnet.errors.SpecError` that says what to put where.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from cortex_resnet.data.base import Dataset, standardise
from cortex_resnet.errors import SpecError

__all__ = ["MNIST_FILES", "CIFAR10_FILES", "read_idx", "load_mnist", "load_cifar10"]

MNIST_FILES = {"train_x": "train-images-idx3-ubyte", "train_y": "train-labels-idx1-ubyte",
               "test_x": "t10k-images-idx3-ubyte", "test_y": "t10k-labels-idx1-ubyte"}
CIFAR10_FILES = [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]
_IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (LeCun's MNIST format; ``.gz`` allowed) into an array."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            raw = fh.read()
    except (OSError, EOFError) as err:
        raise SpecError("--data-dir", str(path), f"a readable IDX file ({err})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES or raw[3] < 1:
        raise SpecError("--data-dir", str(path), "an IDX file (magic 0x0000TTDD); is it the "
                        "uncompressed or .gz original from the MNIST page?")
    ndim = raw[3]
    dims = np.frombuffer(raw, dtype=">u4", count=ndim, offset=4).astype(np.int64)
    dtype = np.dtype(_IDX_TYPES[raw[2]])
    need = 4 + 4 * ndim + int(np.prod(dims)) * dtype.itemsize
    if len(raw) != need:
        raise SpecError("--data-dir", str(path), f"an IDX file of {need} bytes for shape "
                        f"{tuple(dims)} (it has {len(raw)}: truncated or corrupt)")
    return np.frombuffer(raw, dtype=dtype, offset=4 + 4 * ndim).reshape(tuple(dims))


def _need_dir(data_dir: Path | None, name: str, what: str) -> Path:
    if data_dir is None:
        raise SpecError("--data-dir", None, f"a folder holding {what}: the {name} dataset is read "
                        "from local files, never downloaded (pass --data-dir or data.data_dir)")
    data_dir = Path(data_dir).expanduser()
    if not data_dir.is_dir():
        raise SpecError("--data-dir", str(data_dir), f"an existing folder holding {what}")
    return data_dir


def _find(data_dir: Path, names: list[str], subdirs: list[str]) -> dict[str, Path] | None:
    for sub in subdirs:
        base = data_dir / sub
        found = {}
        for n in names:
            for cand in (base / n, base / f"{n}.gz"):
                if cand.is_file():
                    found[n] = cand
                    break
        if len(found) == len(names):
            return found
    return None


def load_mnist(seed: int, data_dir: Path | None) -> Dataset:
    """MNIST (LeCun et al. 1998) from the four IDX files, scaled by the training mean/std."""
    files = list(MNIST_FILES.values())
    what = "the four MNIST IDX files " + ", ".join(files) + " (optionally .gz)"
    root = _need_dir(data_dir, "mnist", what)
    found = _find(root, files, [".", "mnist", "MNIST/raw", "MNIST"])
    if found is None:
        raise SpecError("--data-dir", str(root), f"a folder holding {what}; put them directly in "
                        "it (or in mnist/ or MNIST/raw/)")
    arr = {k: read_idx(found[v]) for k, v in MNIST_FILES.items()}
    for split in ("train", "test"):
        x, y = arr[f"{split}_x"], arr[f"{split}_y"]
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y) or (y.size and y.max() > 9):
            raise SpecError("--data-dir", str(found[MNIST_FILES[f"{split}_x"]]),
                            "MNIST images (n, 28, 28) and matching labels 0..9")
    xtr, xte = standardise(arr["train_x"].astype(np.float64) / 255.0,
                            arr["test_x"].astype(np.float64) / 255.0)
    return Dataset("mnist", xtr[:, None], arr["train_y"].astype(np.int64), xte[:, None],
                   arr["test_y"].astype(np.int64), 10, "MNIST (IDX files from --data-dir)",
                   {"data_dir": str(root)})


def load_cifar10(seed: int, data_dir: Path | None) -> Dataset:
    """CIFAR-10 (Krizhevsky 2009), binary version: 5 x 10000 train + 10000 test, per-channel std."""
    what = "the CIFAR-10 binary version: " + ", ".join(CIFAR10_FILES)
    root = _need_dir(data_dir, "cifar10", what)
    found = _find(root, CIFAR10_FILES, [".", "cifar-10-batches-bin"])
    if found is None:
        raise SpecError("--data-dir", str(root), f"a folder holding {what} (the folder "
                        "cifar-10-batches-bin/ from cifar-10-binary.tar.gz, or its files)")
    parts = {}
    for name, path in found.items():
        raw = np.fromfile(path, dtype=np.uint8) if path.suffix != ".gz" else \
            np.frombuffer(gzip.open(path).read(), np.uint8)
        if raw.size % 3073 or raw.size == 0:
            raise SpecError("--data-dir", str(path), "a CIFAR-10 binary batch of records of "
                            f"3073 bytes (1 label + 3x32x32 pixels); got {raw.size} bytes")
        rec = raw.reshape(-1, 3073)
        if rec[:, 0].max() > 9:
            raise SpecError("--data-dir", str(path), "CIFAR-10 labels 0..9 (is it CIFAR-100?)")
        parts[name] = (rec[:, 1:].reshape(-1, 3, 32, 32), rec[:, 0].astype(np.int64))
    xtr = np.concatenate([parts[n][0] for n in CIFAR10_FILES[:5]]).astype(np.float64) / 255.0
    ytr = np.concatenate([parts[n][1] for n in CIFAR10_FILES[:5]])
    xte, yte = parts["test_batch.bin"][0].astype(np.float64) / 255.0, parts["test_batch.bin"][1]
    xtr, xte = standardise(xtr, xte, axis=(0, 2, 3))
    return Dataset("cifar10", xtr, ytr, xte, yte, 10, "CIFAR-10 (binary version from --data-dir)",
                   {"data_dir": str(root)})
