"""The spiking twin of an untied net: one pool stage per unrolled layer, as a feedforward circuit.

An untied net (:func:`cortex_resnet.bridge.to_circuit` of variant ``untied``: a circuit
with ``step_weights`` ``W_0 .. W_{K-1}``) computes, per unit ``n`` with ``alpha_n = dt / tau_n``,

    r_{k+1} = (1 - alpha) r_k + alpha s_k,      s_k = phi(W_k r_k + B u + b)

from ``r_0 = 0`` (``sustained`` input) or ``r_0 = phi(B u + b)`` (``pulse``; ``u = 0``
afterwards, ``s_k = phi(W_k r_k + b)``). Unrolling the leak, ``r_k`` is a fixed, non-negative
combination of the earlier ``s_i``:

    r_k = sum_{i < k} alpha (1 - alpha)^(k - 1 - i) s_i   [+ (1 - alpha)^k s_init  (pulse)]

so the net is a feedforward stack of *stages* ``s_0 .. s_{K-1}`` (plus ``s_init`` for pulse
input), each a copy of the ``N`` units whose input is ``W_k`` applied to that combination of
earlier stages. :func:`chain_circuit` builds it as ONE ordinary circuit (``S N`` units, a
block lower-triangular ``W``: stage ``k`` receives ``W_k[m, n] c_{k,i,n}`` from unit ``n`` of
stage ``i``; Dale's law holds because ``c >= 0``). Its rate dynamics
``tau dr/dt = -r + phi(W_chain r + B_chain u + b_chain)`` are feedforward, so under a constant
input its steady state is exactly the net's stages, and ``combine @ r`` is exactly the net's
``r_K`` (tested against the net's forward pass). The ordinary spiking mapping then applies: each
stage's units become LIF pools, and the readout reads ``combine`` applied to the stages' pool rates.

What is approximated (beyond what the tied twin approximates: finite pools, the LIF transfer
linearised at the operating point, a finite counting window):

* the stages run *concurrently* in continuous time and are read out at their steady state
  (a window late in the run), not as K discrete Euler steps; each stage keeps its unit's
  ``tau_ms`` (it only shapes the transient);
* one operating-point gain per population across all stages (the populations' sizes are
  multiplied by ``S``; the stages share each population's mapping, as the units of a tied
  population share it);
* the leak's identity path ``(1 - alpha) r_k`` is not a neuron: it is folded into the
  synapses (the coefficients ``c``), so stage ``k`` listens to every earlier stage
  (``S (S - 1) / 2`` blocks of synapses; ``S = 10``: 45 copies of ``W``). With the default
  all-to-all pools the torch engine delivers them per pool pair
  (:mod:`cortex_resnet.spiking.torch_pooled`): MNIST-1D's 115 M synapses are never drawn, the
  engine holds one 1600 x 1600 table (whole test set: 1000 examples in ~22 min on one busy core).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cortex_resnet.errors import SpecError
from cortex_resnet.model.circuit import Circuit

__all__ = ["ChainTwin", "chain_circuit", "stage_coefficients"]


@dataclass(frozen=True)
class ChainTwin:
    """An untied net as a feedforward circuit of pool stages.

    Attributes
    ----------
    circuit : the chain circuit (``n_stages * N`` units, ordered by population, then stage)
    combine : (N, n_stages * N) non-negative: the net's ``r_K = combine @ r_chain``
    index : (n_stages, N) chain unit of (stage, original unit)
    n_stages : ``K`` (sustained input) or ``K + 1`` (pulse: the initial stage first)
    """

    circuit: Circuit
    combine: np.ndarray
    index: np.ndarray
    n_stages: int

    def __repr__(self) -> str:
        """One line: stages and sizes (not the arrays)."""
        return f"ChainTwin({self.n_stages} stages x {self.index.shape[1]} units = {self.circuit.n_units} pools)"


def stage_coefficients(alpha: np.ndarray, steps: int, pulse: bool) -> np.ndarray:
    """(K + 1, S, N): ``r_k = sum_q C[k, q] * s_q`` (per unit), stages ``q`` as in the module docstring.

    ``alpha`` (N,) = dt / tau; ``pulse`` puts ``s_init`` first (``r_0 = s_init``).
    """
    a = np.asarray(alpha, np.float64)
    S = steps + 1 if pulse else steps
    off = 1 if pulse else 0
    C = np.zeros((steps + 1, S, a.size))
    if pulse:
        C[0, 0] = 1.0
    for k in range(steps):  # r_{k+1} = (1 - a) r_k + a s_k
        C[k + 1] = (1.0 - a) * C[k]
        C[k + 1, off + k] += a
    return C


def _chain_index(circuit: Circuit, S: int) -> np.ndarray:
    """(S, N) chain unit of (stage, unit): population blocks in unit order, stages inside each."""
    index = np.empty((S, circuit.n_units), np.int64)
    for sl in circuit.layout.values():
        n = sl.stop - sl.start
        for q in range(S):
            index[q, sl] = S * sl.start + q * n + np.arange(n)
    return index


def chain_circuit(circuit: Circuit) -> ChainTwin:
    """The feedforward stage circuit of an untied net's circuit (module docstring).

    Raises
    ------
    SpecError
        ``circuit`` has no ``step_weights`` or lacks the bridge's ``meta`` (``dt_ms``, ``input_mode``).
    """
    if circuit.step_weights is None:
        raise SpecError("circuit.step_weights", "absent", "an untied net's circuit (bridge.to_circuit of "
                        "variant 'untied'); a tied circuit is its own spiking twin")
    meta = circuit.meta
    if "dt_ms" not in meta or meta.get("input_mode") not in ("sustained", "pulse"):
        raise SpecError("circuit.meta", {k: meta.get(k) for k in ("dt_ms", "input_mode")},
                        "the meta of bridge.to_circuit (dt_ms and input_mode sustained or pulse)")
    Ws, N = circuit.step_weights, circuit.n_units
    K, pulse = Ws.shape[0], meta["input_mode"] == "pulse"
    S, off = (K + 1 if pulse else K), (1 if pulse else 0)
    C = stage_coefficients(float(meta["dt_ms"]) / circuit.tau_ms, K, pulse)
    idx = _chain_index(circuit, S)
    W = np.zeros((S * N, S * N))
    for k in range(K):  # stage off + k computes s_k from r_k = sum_q C[k, q] s_q (q < off + k)
        for q in range(off + k):
            if np.any(C[k, q] > 0):
                W[np.ix_(idx[off + k], idx[q])] = Ws[k] * C[k, q][None, :]
    B = np.zeros((S * N, circuit.n_inputs))
    b = np.zeros(S * N)
    tau = np.zeros(S * N)
    pop = np.empty(S * N, dtype=circuit.population.dtype)
    for q in range(S):
        B[idx[q]] = circuit.B if (q == 0 or not pulse) else 0.0  # pulse: u enters s_init only
        b[idx[q]], tau[idx[q]], pop[idx[q]] = circuit.b, circuit.tau_ms, circuit.population
    combine = np.zeros((N, S * N))
    for q in range(S):
        combine[np.arange(N), idx[q]] = C[K, q]
    spec = circuit.spec.replace(**{f"populations.{name}.n": S * (sl.stop - sl.start)
                                   for name, sl in circuit.layout.items()})
    chain = Circuit(spec=spec, W=W, B=B, b=b, tau_ms=tau, mask=W != 0, population=pop,
                    meta={**meta, "source": "spiking.chain", "stages": S})
    return ChainTwin(chain, combine, idx, S)
