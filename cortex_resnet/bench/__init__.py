"""Benchmarks run side by side in one process: ``cortex-resnet bench NAME``.

Each benchmark module (listed in :data:`BENCHES`) defines
``run(quick: bool = False) -> list[BenchResult]``. Every result states its goal
and whether this run met it; the JSON shape is a contract:
``{"bench", "machine", "results": [{"name", "value", "unit", "goal", "met"}]}``.
"""

from __future__ import annotations

import importlib
import os
import platform
from dataclasses import asdict, dataclass, field
from typing import Any

from cortex_resnet.errors import UnknownNameError

__all__ = ["BenchResult", "BENCHES", "machine_info", "run_bench", "known_benches"]

# bench name -> module (each defines run(quick=False) -> list[BenchResult])
BENCHES: dict[str, str] = {}
BENCHES["rate"] = "cortex_resnet.bench.rate"
BENCHES["rate"] = "cortex_resnet.bench.rate"
BENCHES["bridge"] = "cortex_resnet.bench.bridge"
BENCHES["train"] = "cortex_resnet.bench.train"
BENCHES["spiking"] = "cortex_resnet.bench.spiking"
BENCHES["spiking-batch"] = "cortex_resnet.bench.spiking_batch"
BENCHES["pd14"] = "cortex_resnet.bench.pd14"
BENCHES["conv"] = "cortex_resnet.bench.conv"


@dataclass
class BenchResult:
    """One measured number.

    ``goal`` is the target in words (``">= 0.8"``); ``met`` is whether this run
    reached it (``None`` where a number is informational). ``details`` holds the
    raw timings behind a ratio.
    """

    name: str
    value: float
    unit: str
    goal: str
    met: bool | None
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def __repr__(self) -> str:
        """One line: kind and key sizes (not the arrays)."""
        return f"BenchResult({self.name!r}: {self.value:.4g} {self.unit}, goal {self.goal[:40]!r}, met={self.met})"


def known_benches() -> list[str]:
    return sorted(BENCHES)


def machine_info() -> dict[str, Any]:
    """CPU, cores, threads, torch build and device: what the numbers were measured on."""
    import torch

    info: dict[str, Any] = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    info["processor"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return info


def run_bench(name: str, quick: bool = False, **options: Any) -> dict[str, Any]:
    """Run one benchmark and return the contract JSON object (``options``: the bench's own, e.g. ``scale``)."""
    if name not in BENCHES:
        raise UnknownNameError("benchmark", name, known_benches(), field="bench")
    module = importlib.import_module(BENCHES[name])
    results = module.run(quick=quick, **options)
    return {"bench": name, "machine": machine_info(), "quick": quick,
            "results": [r.to_json() for r in results]}
