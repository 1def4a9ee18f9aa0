"""The one JSON converter: NumPy/torch scalars and arrays, paths and non-finite floats."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def to_jsonable(obj: Any, *, keep_nan: bool = False) -> Any:
    """Convert ``obj`` into plain JSON types, recursively.

    Parameters
    ----------
    obj : Any
        Dicts, lists, tuples, paths, NumPy arrays/scalars, torch scalars/tensors.
    keep_nan : bool
        ``False`` (default, for printed summaries): NaN and ±inf become ``None`` (strict JSON).
        ``True`` (for caches read back by Python): they stay floats, so a cached result equals
        a fresh one.
    """
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v, keep_nan=keep_nan) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v, keep_nan=keep_nan) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist(), keep_nan=keep_nan)
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        f = float(obj)
        return f if keep_nan or np.isfinite(f) else None
    if hasattr(obj, "item") and callable(obj.item):
        return to_jsonable(obj.item(), keep_nan=keep_nan)
    return obj
