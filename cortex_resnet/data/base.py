"""The leaf of the data stage: :class:`Dataset` (a classification set in memory), the
registry entry :class:`DatasetInfo`, and :func:`standardise`.

Generated sets (:mod:`cortex_resnet.data.generated`) and file-backed ones
(:mod:`cortex_resnet.data.files`) build on it; the registry
(:mod:`cortex_resnet.data.datasets`) imports them all.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cortex_resnet.errors import SpecError

__all__ = ["Dataset", "DatasetInfo", "standardise"]


@dataclass(frozen=True, eq=False)
class Dataset:
    """A classification dataset held in memory.

    Attributes
    ----------
    name : registry name
    x_train, x_test : (n, *in_shape) float32, standardised
    y_train, y_test : (n,) int64 class labels in ``0 .. n_classes-1``
    n_classes : number of classes
    description : one line, with the source
    meta : generation parameters (seed, difficulty, ...)
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    n_classes: int
    description: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def in_shape(self) -> tuple[int, ...]:
        """Shape of one example, ``(C, L)`` or ``(C, H, W)``."""
        return tuple(int(s) for s in self.x_train.shape[1:])

    @property
    def n_features(self) -> int:
        return int(np.prod(self.in_shape))

    @property
    def chance(self) -> float:
        """Accuracy of always guessing the most frequent test class."""
        return float(np.bincount(self.y_test, minlength=self.n_classes).max() / len(self.y_test))

    def subset(self, n_train: int | None = None, n_test: int | None = None) -> "Dataset":
        """The first ``n_train`` / ``n_test`` examples (all when None)."""
        for fld, n, have in (("data.n_train", n_train, len(self.y_train)),
                             ("data.n_test", n_test, len(self.y_test))):
            if n is not None and not 1 <= n <= have:
                raise SpecError(fld, n, f"an integer in 1..{have} ({self.name} has {have})")
        return Dataset(self.name, self.x_train[:n_train], self.y_train[:n_train],
                       self.x_test[:n_test], self.y_test[:n_test], self.n_classes,
                       self.description, {**self.meta, "n_train": n_train, "n_test": n_test})

    def __repr__(self) -> str:
        """One line: kind and key sizes (not the arrays)."""
        return (f"Dataset({self.name!r}: {len(self.x_train)} train / {len(self.x_test)} test, x {tuple(self.x_train.shape[1:])}, "
                f"{self.n_classes} classes)")


@dataclass(frozen=True)
class DatasetInfo:
    """Registry entry: the loader, its parameters with defaults, and whether it reads files."""

    loader: Callable[..., Dataset]
    params: dict[str, Any]
    needs_data_dir: bool
    summary: str

    def __repr__(self) -> str:
        """One line: kind and key sizes (not the arrays)."""
        return f"DatasetInfo({getattr(self.loader, '__name__', 'loader')}: {self.summary[:80]!r})"


def standardise(x_train: np.ndarray, x_test: np.ndarray, axis: tuple[int, ...] | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Subtract the training mean and divide by the training std (over ``axis``)."""
    mean = x_train.mean(axis=axis, keepdims=axis is not None)
    std = x_train.std(axis=axis, keepdims=axis is not None)
    std = np.where(std > 0, std, 1.0)
    return ((x_train - mean) / std).astype(np.float32), ((x_test - mean) / std).astype(np.float32)
