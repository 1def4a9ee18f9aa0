"""The spiking stage: a circuit as pools of LIF neurons (Brian2 or the torch engine).

``simulate_spiking`` (:mod:`~cortex_resnet.spiking.simulator`) runs a circuit and decomposes
its pool rates into ``x`` and ``F(x)``; ``to_spiking`` (:mod:`~cortex_resnet.spiking.model`)
wraps a (trained) rate circuit for spike-count readouts. Both are imported on first access,
so importing one submodule (the mean field, say) does not load the engines.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__all__ = ["simulate_spiking", "to_spiking", "SpikingModel", "SpikeCounts"]

_WHERE = {"simulate_spiking": "simulator", "to_spiking": "model", "SpikingModel": "model",
          "SpikeCounts": "model"}


def __getattr__(name: str) -> Any:  # deferred: the engines load on first use, not with every submodule
    if name in _WHERE:
        return getattr(import_module(f"{__name__}.{_WHERE[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
