"""Writing TOML (reading is :mod:`tomllib`): values, keys and inline tables.

One small writer for every file the project emits as data (trained circuit
model files, a run's ``config.toml``); strings are written with JSON escapes,
which are valid TOML basic-string escapes.
"""

from __future__ import annotations

import json
import math
from typing import Any

from cortex_resnet.errors import SpecError

__all__ = ["toml_key", "toml_value"]


def toml_key(k: str) -> str:
    """A bare key where TOML allows one, else a quoted key."""
    return k if k and all(ch.isalnum() or ch in "_-" for ch in k) else json.dumps(k)


def toml_value(v: Any, *, allow_nonfinite: bool = True) -> str:
    """One TOML value: bool, int, float (``nan``/``inf`` unless refused), str, list, inline table.

    ``None`` entries of a table are left out, so their defaults apply when read back.
    """
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            if not allow_nonfinite:
                raise SpecError("value", v, "a finite number")
            return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_value(x, allow_nonfinite=allow_nonfinite) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{toml_key(str(k))} = {toml_value(x, allow_nonfinite=allow_nonfinite)}"
                                for k, x in v.items() if x is not None) + " }"
    raise SpecError("value", type(v).__name__, "numbers, strings, lists and tables only")
