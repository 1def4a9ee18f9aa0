"""Short printed forms: ``repr()`` of a public object is one line naming its kind and key sizes,
never a dump of its arrays (``repr(spec)``, ``repr(circuit)``, ``repr(result)`` in a notebook).

    short_repr(obj, ["name", "W", "tau_ms"])   # "Circuit(name='isn', W=array(4, 4), tau_ms=array(4,))"

Classes either write their own one-line ``__repr__`` (kind, sizes, units) or call :func:`short_repr`,
which summarises each field with :func:`brief` and cuts the line at :data:`MAX_REPR` characters.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterable

__all__ = ["MAX_REPR", "brief", "short_repr"]

MAX_REPR = 160  # characters of a generated short form (the tests allow 200 for hand-written ones)
_TEXT = 24  # characters of a string value shown


def brief(value: Any) -> str:
    """A value in a few characters: arrays and tensors by shape, long text cut, containers by length,
    nested objects by their class name."""
    shape = getattr(value, "shape", None)
    if shape is not None and hasattr(value, "dtype"):
        kind = "tensor" if type(value).__module__.startswith("torch") else "array"
        dims = ", ".join(str(int(s)) for s in shape)
        return f"{kind}({dims}{',' if len(shape) == 1 else ''})"
    if value is None or isinstance(value, (bool, int)):
        return repr(value)
    if isinstance(value, float):
        return repr(value) if len(repr(value)) <= 8 else f"{value:.4g}"
    if isinstance(value, str):
        return repr(value if len(value) <= _TEXT else value[:_TEXT - 1] + "…")
    if isinstance(value, (list, tuple, set, frozenset)):
        if len(value) <= 4 and all(isinstance(v, (bool, int, float, str)) or v is None for v in value):
            inner = ", ".join(brief(v) for v in value)
            return f"[{inner}]" if isinstance(value, list) else f"({inner}{',' if len(value) == 1 else ''})"
        return f"<{len(value)} {type(value).__name__} items>"
    if isinstance(value, dict):
        return f"<{len(value)} keys>"
    if callable(value) and hasattr(value, "__name__"):
        return value.__name__
    return f"{type(value).__name__}(…)"


def _field_names(obj: Any) -> list[str]:
    if dataclasses.is_dataclass(obj):
        return [f.name for f in dataclasses.fields(obj) if f.repr]
    fields = getattr(type(obj), "model_fields", None)
    if fields is not None:  # pydantic: declared fields, then the extra keys of an open table
        return [k for k, f in fields.items() if f.repr] + list(getattr(obj, "model_extra", None) or {})
    return [k for k in vars(obj) if not k.startswith("_")]


def short_repr(obj: Any, fields: Iterable[str] | None = None, *, limit: int = MAX_REPR) -> str:
    """``Kind(field=brief, ...)`` on one line of at most ``limit`` characters (``, …)`` where cut).

    ``fields``: the attributes to show, in order (default: the dataclass or pydantic fields, else
    the public instance attributes)."""
    name = type(obj).__name__
    parts = [f"{f}={brief(getattr(obj, f, None))}" for f in (_field_names(obj) if fields is None else fields)]
    text = f"{name}({', '.join(parts)})"
    if len(text) <= limit:
        return text
    kept = f"{name}("
    for p in parts:
        if len(kept) + len(p) + len(", …)") > limit:
            break
        kept += p + ", "
    return kept + "…)"
