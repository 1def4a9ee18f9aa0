"""The registry of hypotheses: a name -> the module defining its ``HYPOTHESIS`` (one line each).

A leaf of the package: the runner, the config and the CLI look hypotheses up here; the
hypothesis modules themselves are imported only when asked for (by name).
"""

from __future__ import annotations

import importlib
from typing import Any

from cortex_resnet.errors import UnknownNameError
from cortex_resnet.hypotheses.base import Hypothesis

__all__ = ["HYPOTHESES", "known_hypotheses", "get_hypothesis", "list_hypotheses"]

# name -> module defining HYPOTHESIS (one line each)
HYPOTHESES: dict[str, str] = {
    "isn-paradox": "cortex_resnet.hypotheses.isn_paradox",
    "amplification": "cortex_resnet.hypotheses.amplification",
    "depth-latency": "cortex_resnet.hypotheses.depth_latency",
    "inhibition-silencing": "cortex_resnet.hypotheses.inhibition_silencing",
    "degradation": "cortex_resnet.hypotheses.degradation",
    "shortcut": "cortex_resnet.hypotheses.shortcut",
    "weight-sharing": "cortex_resnet.hypotheses.weight_sharing",
    "iterative-refinement": "cortex_resnet.hypotheses.iterative_refinement",
    "rate-spike-agreement": "cortex_resnet.hypotheses.rate_spike_agreement",
    "spiking-conversion": "cortex_resnet.hypotheses.spiking_conversion",
    "tuned-amplification": "cortex_resnet.hypotheses.tuned_amplification",
}


def known_hypotheses() -> list[str]:
    """Registered names, sorted."""
    return sorted(HYPOTHESES)


def get_hypothesis(name: str) -> Hypothesis:
    """The :class:`Hypothesis` registered under ``name`` (an unknown name lists the known ones)."""
    if name not in HYPOTHESES:
        raise UnknownNameError("hypothesis", name, known_hypotheses(), field="hypothesis")
    hyp = importlib.import_module(HYPOTHESES[name]).HYPOTHESIS
    if hyp.name != name:  # pragma: no cover - a registry typo
        raise RuntimeError(f"module {HYPOTHESES[name]} defines {hyp.name!r}, registered as {name!r}")
    return hyp


def list_hypotheses() -> list[dict[str, Any]]:
    """``[{"name", "claim", "h0", "h1", "runtime", "references", "requires"}, ...]``, sorted by name."""
    return [get_hypothesis(n).to_json() for n in known_hypotheses()]
