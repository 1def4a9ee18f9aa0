"""What training changed in an unrolled circuit: per-pathway weight change and the ISN test per
excitatory population (e.g. per cortical layer) before and after.

"Before" is the network the run started from: :func:`~cortex_resnet.training.build.build_model`
rebuilds it from the run's spec (initial weights depend only on the seeds). The ISN test is
taken at the mean encoded test input (the operating point of the task), for a tied net on its
circuit, for an untied net on the circuits of its first and last step.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import torch

from cortex_resnet.bridge.convert import to_circuit
from cortex_resnet.errors import ConvergenceError
from cortex_resnet.model.analysis import analyze, pathway_change
from cortex_resnet.model.circuit import Circuit
from cortex_resnet.training.build import build_model

__all__ = ["training_change", "isn_by_layer"]


def isn_by_layer(circuit: Circuit, u: np.ndarray) -> dict[str, Any]:
    """ISN test at the steady state for input ``u``: stable, E-E loop gain and ISN per excitatory population."""
    try:
        lin = analyze(circuit, u)
    except ConvergenceError as err:
        return {"error": str(err)}
    return {"condition": lin.condition, "max_eig_real_per_ms": lin.max_eig_real,
            "ee_loop_gain": dict(lin.ee_loop_gain_by_population), "isn": lin.isn_by_population,
            "rates": {k: float(np.mean(lin.r_star[s])) for k, s in circuit.layout.items()}}


def _step_circuits(circuit: Circuit) -> dict[str, Circuit]:
    if circuit.step_weights is None:
        return {"tied": circuit}
    sw = circuit.step_weights
    return {f"step {k}": replace(circuit, W=np.array(sw[k]), step_weights=None) for k in (0, len(sw) - 1)}


def training_change(run: Any) -> dict[str, Any]:
    """Per-pathway change (:func:`~cortex_resnet.model.analysis.pathway_change`; untied: of the mean over
    steps) and ISN per layer before/after training, for a loaded run (:func:`~cortex_resnet.workflows.compare.load_run`)."""
    before, _ = build_model(run.spec, run.dataset)
    net0, net1 = before.double().net, run.model.net
    with torch.no_grad():
        x = torch.as_tensor(run.dataset.x_test, dtype=torch.float64)
        u0 = before.encode(x).mean(0).numpy()
        u1 = run.model.encode(x).mean(0).numpy()
        W0, W1 = net0.W().mean(0).numpy(), net1.W().mean(0).numpy()
    c0, c1 = to_circuit(net0), to_circuit(net1)
    return {"pathways": pathway_change(W0, W1, c1.layout),
            "isn_before": {k: isn_by_layer(c, u0) for k, c in _step_circuits(c0).items()},
            "isn_after": {k: isn_by_layer(c, u1) for k, c in _step_circuits(c1).items()},
            "operating_point": "the mean encoded test input"}
