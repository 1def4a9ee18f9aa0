"""Memory estimates before allocating, and the budget they are checked against.

Host allocations: the budget defaults to half of the host memory available now.
Device (CUDA) allocations: 90 % of the device's free memory now
(``torch.cuda.mem_get_info``; the rest is headroom for the caching allocator's
fragmentation and cuDNN/cuBLAS workspaces). ``CORTEX_RESNET_MEMORY_BUDGET_GB``
overrides both.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

from cortex_resnet.errors import ResourceError

__all__ = ["memory_budget_bytes", "check_memory", "format_bytes", "release_freed_memory", "DEVICE_FREE_FRACTION"]

DEVICE_FREE_FRACTION = 0.9


def _is_cuda(device: object) -> bool:
    return device is not None and str(device).startswith("cuda")


def memory_budget_bytes(device: object = None) -> int:
    """Bytes a single run may allocate on ``device`` (``None``/``"cpu"``: host RAM).

    Env ``CORTEX_RESNET_MEMORY_BUDGET_GB``, else 50 % of the available host memory, or for
    a CUDA device :data:`DEVICE_FREE_FRACTION` of its free memory.
    """
    env = os.environ.get("CORTEX_RESNET_MEMORY_BUDGET_GB")
    if env:
        try:
            return int(float(env) * 2**30)
        except ValueError:
            raise ResourceError("CORTEX_RESNET_MEMORY_BUDGET_GB", env, "a number of GiB") from None
    if _is_cuda(device):
        import torch  # deferred: core loads nothing heavy; only a CUDA budget needs torch

        free, _total = torch.cuda.mem_get_info(torch.device(device))
        return int(DEVICE_FREE_FRACTION * free)
    try:
        import psutil  # deferred: optional (installed with dask)

        return int(0.5 * psutil.virtual_memory().available)
    except ImportError:  # pragma: no cover - psutil is a dask dependency
        return 8 * 2**30


def format_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} PiB"  # pragma: no cover


def check_memory(nbytes: float, what: str, suggestion: str = "", device: object = None) -> None:
    """Refuse (``ResourceError``) when ``nbytes`` exceeds the budget of ``device`` (default: host
    memory; a CUDA device: its free memory); say what to change."""
    budget = memory_budget_bytes(device)
    if nbytes > budget:
        hint = f"; {suggestion}" if suggestion else ""
        where = f"the free memory of {device}" if _is_cuda(device) else "the memory budget"
        raise ResourceError(what, f"~{format_bytes(nbytes)} needed",
                            f"at most {where}: {format_bytes(budget)} "
                            f"(CORTEX_RESNET_MEMORY_BUDGET_GB){hint}")


_LIBC: list = []


def release_freed_memory() -> bool:
    """Hand memory that ``free`` kept back to the operating system (glibc's ``malloc_trim``).

    A long step loop that allocates and frees many small arrays leaves glibc's heap fragmented:
    the torch engine at PD14 scale 1 grew by ~5 GB over 0.5 s of simulated time this way (freed,
    not leaked: ``malloc_trim`` returned all of it). Returns False where there is no glibc."""
    if not _LIBC:
        name = ctypes.util.find_library("c")
        try:
            lib = ctypes.CDLL(name) if name else None
        except OSError:
            lib = None
        _LIBC.append(lib if lib is not None and hasattr(lib, "malloc_trim") else None)
    if _LIBC[0] is None:
        return False
    _LIBC[0].malloc_trim(0)
    return True

