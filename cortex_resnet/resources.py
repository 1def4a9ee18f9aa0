"""Memory estimates before allocating, and the budget they are checked against.

The budget defaults to half of the memory available now; set
``CORTEX_RESNET_MEMORY_BUDGET_GB`` to change it.
"""

from __future__ import annotations

import os

from .errors import ResourceError

__all__ = ["memory_budget_bytes", "check_memory", "format_bytes"]


def memory_budget_bytes() -> int:
    """Bytes a single run may allocate (env ``CORTEX_RESNET_MEMORY_BUDGET_GB`` or 50 % of available)."""
    env = os.environ.get("CORTEX_RESNET_MEMORY_BUDGET_GB")
    if env:
        try:
            return int(float(env) * 2**30)
        except ValueError:
            raise ResourceError("CORTEX_RESNET_MEMORY_BUDGET_GB", env, "a number of GiB") from None
    try:
        import psutil

        return int(0.5 * psutil.virtual_memory().available)
    except Exception:  # pragma: no cover - psutil is a dask dependency
        return 8 * 2**30


def format_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} PiB"  # pragma: no cover


def check_memory(nbytes: float, what: str, suggestion: str = "") -> None:
    """Refuse (``ResourceError``) when ``nbytes`` exceeds the budget; say what to change."""
    budget = memory_budget_bytes()
    if nbytes > budget:
        hint = f"; {suggestion}" if suggestion else ""
        raise ResourceError(what, f"~{format_bytes(nbytes)} needed",
                            f"at most the memory budget {format_bytes(budget)} "
                            f"(CORTEX_RESNET_MEMORY_BUDGET_GB){hint}")
