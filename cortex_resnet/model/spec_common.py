"""What the spec modules share: limits, the frozen base, and pydantic errors as SpecError."""

from __future__ import annotations

from pydantic import BaseModel, ValidationError

from cortex_resnet.core.specbase import Frozen, strip_tags, unknown_key_message
from cortex_resnet.errors import SpecError

# names become parts of output paths (runs/<name>, reports): no separators, no leading dot
SAFE_NAME = r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$"
MAX_UNITS = 200_000  # per population; memory is checked separately before allocating


_Frozen = Frozen  # immutable, no unknown keys, finite strict numbers, bounded text (specbase)
MAX_STEPS = 10**9  # time steps of one run (duration_ms / dt_ms)


_MESSAGES = {
    "finite_number": "a finite number (nan and inf are not allowed)",
    "string_too_long": "text of at most {max_length} characters",
    "too_long": "at most {max_length} entries",
}


def validation_to_spec_error(err: ValidationError, source: str | None = None,
                             model: type[BaseModel] | None = None) -> SpecError:
    """Turn pydantic's error into a :class:`SpecError` naming the first bad field.

    ``model``: the validated class, used to list the valid keys next to an unknown one.
    """
    first = err.errors()[0]
    raw = [str(p) for p in first["loc"]]
    parts = strip_tags(model, raw)
    loc = ".".join(parts) or "<file>"
    msg, kind, ctx = first["msg"], first["type"], first.get("ctx") or {}
    if kind == "missing":
        msg = "this required field is missing"
    elif kind == "string_pattern_mismatch" and ctx.get("pattern") == SAFE_NAME:
        msg = "letters, digits, '_', '.', '-' only, not starting with '.' (names become parts of output paths)"
    elif kind == "extra_forbidden":
        msg = unknown_key_message(model, raw)
    elif kind in _MESSAGES:
        msg = _MESSAGES[kind].format(**ctx)
    ctx_err = ctx.get("error")
    if isinstance(ctx_err, SpecError):
        inner = ctx_err.field.split(".")
        if parts and inner[0] == parts[-1]:
            parts = parts[:-1]
        return SpecError(".".join(parts + inner), ctx_err.value, ctx_err.allowed, source=source)
    if kind == "finite_number" and parts and parts[-1] in ("float", "int"):  # union member tags
        loc = ".".join(parts[:-1])
    value = first.get("input", None) if kind != "missing" else None
    msg = msg.removeprefix("Value error, ")
    return SpecError(loc, value, msg, source=source)
