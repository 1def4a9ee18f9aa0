"""Circuits: weight matrices, populations and Dale's law, built from a spec.

Units are ordered by population, excitatory populations first (in file order),
then the inhibitory ones: all E units ``0 .. N_E-1``, then all I units
(:func:`population_layout`). ``population`` holds each unit's Dale label
(``"E"``/``"I"``), ``unit_population`` its population's name. ``W[i, j]`` is the weight
from presynaptic unit ``j`` onto postsynaptic unit ``i``; E columns are
``>= 0`` and I columns ``<= 0`` by construction (Dale's law), and
:class:`Circuit` refuses weights that break it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

import numpy as np
import torch

from cortex_resnet.errors import SpecError
from cortex_resnet.core.resources import check_memory
from cortex_resnet.model.spec import CircuitSpec
from cortex_resnet.model.transfer import Transfer
from cortex_resnet.model.tuning import tune_block, tuned_projection

__all__ = ["Circuit", "build_circuit", "check_dale", "population_layout", "spatial_positions"]


def check_dale(W: np.ndarray, population: np.ndarray, *, atol: float = 0.0) -> None:
    """Raise :class:`SpecError` if a column of ``W`` has the wrong sign for its population.

    Parameters
    ----------
    W : (N, N) array, post x pre
    population : (N,) array of ``"E"`` / ``"I"``
    """
    is_e = population == "E"
    bad_e = np.where(is_e & (W.min(axis=0) < -atol))[0]
    bad_i = np.where(~is_e & (W.max(axis=0) > atol))[0]
    if bad_e.size:
        j = int(bad_e[0])
        raise SpecError(f"W[:, {j}]", float(W[:, j].min()),
                        "columns of E units must be >= 0 (Dale's law); "
                        f"{bad_e.size} E column(s) have negative entries")
    if bad_i.size:
        j = int(bad_i[0])
        raise SpecError(f"W[:, {j}]", float(W[:, j].max()),
                        "columns of I units must be <= 0 (Dale's law); "
                        f"{bad_i.size} I column(s) have positive entries")


@dataclass(frozen=True, eq=False, repr=False)
class Circuit:
    """A built circuit (NumPy float64 arrays; the simulators convert them).

    Attributes
    ----------
    spec : the :class:`CircuitSpec` it was built from
    W : (N, N) recurrent weights, post x pre (dimensionless couplings)
    B : (N, n_inputs) feedforward projection
    b : (N,) bias
    tau_ms : (N,) rate time constants (ms)
    mask : (N, N) bool, which connections exist (sparse/spatial stay so in training)
    population : (N,) ``"E"``/``"I"``
    step_weights : optional (K, N, N): step-dependent weights of an "areas in a
        chain" circuit (an untied unrolled net); step ``k`` uses ``step_weights[k]``
        and the last one is held afterwards.
    """

    spec: CircuitSpec
    W: np.ndarray
    B: np.ndarray
    b: np.ndarray
    tau_ms: np.ndarray
    mask: np.ndarray
    population: np.ndarray
    step_weights: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = self.population.shape[0]
        for name, arr, shape in (("W", self.W, (n, n)), ("b", self.b, (n,)),
                                 ("tau_ms", self.tau_ms, (n,)), ("mask", self.mask, (n, n))):
            if arr.shape != shape:
                raise SpecError(name, f"shape {arr.shape}", f"shape {shape} for N = {n} units")
        if self.B.ndim != 2 or self.B.shape[0] != n:
            raise SpecError("B", f"shape {self.B.shape}", f"shape ({n}, n_inputs)")
        if not np.all(np.isfinite(self.W)):
            raise SpecError("W", "non-finite entries", "finite weights")
        if np.any(self.tau_ms <= 0):
            raise SpecError("tau_ms", float(self.tau_ms.min()), "time constants > 0 ms")
        check_dale(self.W, self.population)
        if self.step_weights is not None:
            for k, Wk in enumerate(self.step_weights):
                try:
                    check_dale(Wk, self.population)
                except SpecError as err:
                    raise SpecError(f"step_weights[{k}]", err.value, err.allowed) from None

    def __repr__(self) -> str:
        """One line: name, sizes, time constants, transfers, connectivity (not the arrays)."""
        sp = self.spec
        n_conn = int(np.count_nonzero(self.mask))
        names = "/".join(self.population_names)
        sizes = ", ".join(f"{k} {s.stop - s.start}" for k, s in self.layout.items())
        taus = "/".join(_span(self.tau_ms[s]) for s in self.layout.values())
        phis = "/".join(t.name for t in self.transfers.values())
        steps = "" if self.step_weights is None else f", step_weights {tuple(self.step_weights.shape)}"
        return (f"Circuit({sp.name!r}: N={self.n_units} ({sizes}), n_inputs={self.n_inputs}, "
                f"tau_ms {names}={taus}, phi {names}={phis}, "
                f"{sp.connectivity.kind} W {self.W.shape[0]}x{self.W.shape[1]} ({n_conn:,} connections){steps})")

    __str__ = __repr__

    # ------------------------------------------------------------------ sizes
    @property
    def n_units(self) -> int:
        return int(self.population.shape[0])

    @property
    def n_E(self) -> int:
        return int(np.sum(self.population == "E"))

    @property
    def n_I(self) -> int:
        return self.n_units - self.n_E

    @property
    def n_inputs(self) -> int:
        return int(self.B.shape[1])

    @property
    def is_E(self) -> np.ndarray:
        return self.population == "E"

    # ---------------------------------------------------------- populations
    @cached_property
    def layout(self) -> dict[str, slice]:
        """Unit slice of each named population (unit order: excitatory first).

        A circuit whose arrays do not match its spec's sizes (e.g. built by hand)
        falls back to the two Dale groups ``E`` and ``I``.
        """
        lay = population_layout(self.spec)
        if sum(s.stop - s.start for s in lay.values()) == self.n_units and all(
                np.all(self.population[s] == self.spec.populations.label(k)) for k, s in lay.items()):
            return lay
        return {"E": slice(0, self.n_E), "I": slice(self.n_E, self.n_units)}

    @property
    def population_names(self) -> list[str]:
        """The populations' names in unit order."""
        return list(self.layout)

    @cached_property
    def unit_population(self) -> np.ndarray:
        """(N,) the name of each unit's population."""
        out = np.empty(self.n_units, dtype=object)
        for k, s in self.layout.items():
            out[s] = k
        return out.astype(str)

    # ------------------------------------------------------------- transfer
    @cached_property
    def transfers(self) -> dict[str, Transfer]:
        """Each population's transfer function, by name."""
        pops = self.spec.populations
        if set(self.layout) <= set(pops.names):
            return {k: pops[k].transfer.build() for k in self.layout}
        first = {lab: next(k for k in pops.order if pops.label(k) == lab) for lab in ("E", "I")
                 if any(pops.label(k) == lab for k in pops.order)}
        return {lab: pops[first.get(lab, pops.order[0])].transfer.build() for lab in self.layout}

    @property
    def transfer_E(self) -> Transfer:
        """The transfer of the first excitatory population."""
        return self.transfers[self.population_names[0]]

    @property
    def transfer_I(self) -> Transfer:
        """The transfer of the first inhibitory population (of the last population if none is)."""
        names = [k for k, s in self.layout.items() if s.stop > s.start and self.population[s.start] == "I"]
        return self.transfers[names[0] if names else self.population_names[-1]]

    def _per_population(self, z: torch.Tensor, fn: str) -> torch.Tensor:
        fs = [(self.transfers[k], s) for k, s in self.layout.items() if s.stop > s.start]
        if all(f == fs[0][0] for f, _ in fs):
            return getattr(fs[0][0], fn)(z)
        return torch.cat([getattr(f, fn)(z[..., s]) for f, s in fs], dim=-1)

    def phi(self, z: torch.Tensor) -> torch.Tensor:
        """Apply each population's transfer function along the last axis (unit order)."""
        return self._per_population(z, "__call__")

    def phi_derivative(self, z: torch.Tensor) -> torch.Tensor:
        """``phi'(z)`` per unit along the last axis."""
        return self._per_population(z, "derivative")

    @property
    def rate_units(self) -> str:
        """Units of ``r``: Hz for the LIF transfer, arbitrary otherwise."""
        names = {t.name for t in self.transfers.values()}
        return "Hz" if names == {"lif"} else "a.u."

    @property
    def hz_per_unit(self) -> dict[str, float]:
        """Hz per unit of ``r``, per population: 1 for the ``lif`` transfer (rates in Hz); otherwise
        the convention of the ``[spiking]`` table, which realises a rate of 1 as
        ``spiking.rate_unit_hz`` Hz (1 with ``weight_scaling = "identity"``)."""
        s = self.spec.spiking
        return {p: 1.0 if t.name == "lif" or s.weight_scaling == "identity" else float(s.rate_unit_hz)
                for p, t in self.transfers.items()}

    # --------------------------------------------------------------- copies
    def with_weights(self, W: np.ndarray | None = None, B: np.ndarray | None = None,
                     b: np.ndarray | None = None, tau_ms: np.ndarray | None = None,
                     step_weights: np.ndarray | None = None) -> "Circuit":
        """A copy with some arrays replaced (Dale's law and shapes are re-checked)."""
        return replace(
            self,
            W=self.W if W is None else np.asarray(W, dtype=np.float64),
            B=self.B if B is None else np.asarray(B, dtype=np.float64),
            b=self.b if b is None else np.asarray(b, dtype=np.float64),
            tau_ms=self.tau_ms if tau_ms is None else np.asarray(tau_ms, dtype=np.float64),
            step_weights=self.step_weights if step_weights is None else np.asarray(step_weights, np.float64),
        )

    def without_recurrence(self) -> "Circuit":
        """The same circuit with ``W = 0``: what produces the input-driven part ``x``."""
        sw = None if self.step_weights is None else np.zeros_like(self.step_weights)
        return replace(self, W=np.zeros_like(self.W), step_weights=sw)

    def select(self, name: str) -> np.ndarray:
        """(N,) bool: the units of population ``name``, or of all ``"E"``/``"I"`` units
        when no population has that name."""
        if name in self.layout:
            return self.unit_population == name
        if name in ("E", "I"):
            return self.population == name
        raise SpecError("population", name, "a population name: " + ", ".join(self.population_names))

    def block(self, post: str, pre: str) -> np.ndarray:
        """Sub-matrix ``W_{post,pre}``, e.g. ``block("E", "E")`` or ``block("PV", "SOM")``."""
        return self.W[np.ix_(self.select(post), self.select(pre))]

    def spectral_radius(self) -> float:
        """Largest ``|eig(W)|``."""
        return float(np.max(np.abs(np.linalg.eigvals(self.W)))) if self.n_units else 0.0


def _span(values: np.ndarray) -> str:
    """``20`` when all equal, ``12-31`` for a spread, ``-`` for none."""
    if values.size == 0:
        return "-"
    lo, hi = float(values.min()), float(values.max())
    return f"{lo:.3g}" if lo == hi else f"{lo:.3g}-{hi:.3g}"


# ------------------------------------------------------------------ building

def _magnitudes(rng: np.random.Generator, shape: tuple[int, ...], cv: float) -> np.ndarray:
    """Non-negative weights with mean 1 and coefficient of variation ``cv`` (gamma)."""
    if cv < 1e-6:  # indistinguishable from equal weights; avoids k = 1/cv^2 overflow
        return np.ones(shape)
    k = 1.0 / cv**2
    return rng.gamma(shape=k, scale=1.0 / k, size=shape)


def spatial_positions(n: int, map_shape: tuple[int, ...]) -> np.ndarray:
    """Map coordinates (n, d) of ``n = channels x sites`` units (site index fastest)."""
    sites = math.prod(map_shape)
    grid = np.stack(np.unravel_index(np.arange(sites), map_shape), axis=-1).astype(float)
    return np.tile(grid, (n // sites, 1))


def _spatial_kernel(pos_post: np.ndarray, pos_pre: np.ndarray, map_shape: tuple[int, ...],
                    sigma: float) -> np.ndarray:
    """Periodic Gaussian kernel, truncated at 3 sigma (local), rows summing to 1."""
    d = np.abs(pos_post[:, None, :] - pos_pre[None, :, :])
    L = np.asarray(map_shape, dtype=float)
    d = np.minimum(d, L - d)
    dist2 = np.sum(d**2, axis=-1)
    k = np.exp(-dist2 / (2 * sigma**2))
    k[dist2 > (3 * sigma) ** 2 + 1e-9] = 0.0
    return k / k.sum(axis=1, keepdims=True)


def population_layout(spec: CircuitSpec) -> dict[str, slice]:
    """Unit slice of each population, in unit order (excitatory populations first)."""
    out, start = {}, 0
    for name in spec.populations.order:
        n = spec.populations[name].n
        out[name] = slice(start, start + n)
        start += n
    return out


def _block_base(spec: CircuitSpec, rng: np.random.Generator, post: str, pre: str,
                pos: dict[str, np.ndarray] | None) -> tuple[np.ndarray, np.ndarray]:
    """(mask, weight per unit coupling) of the (post, pre) block before magnitudes and sign."""
    c, pops = spec.connectivity, spec.populations
    shape = (pops[post].n, pops[pre].n)
    if c.kind == "dense":
        return np.ones(shape, dtype=bool), np.full(shape, 1.0 / shape[1])
    if c.kind == "sparse":
        p = c.probability(post, pre)
        m = rng.random(shape) < p
        return m, (np.full(shape, 1.0 / (p * shape[1])) if p > 0 else np.zeros(shape))
    sigma = c.sigma_E if pops.is_excitatory(pre) else c.sigma_I
    base = _spatial_kernel(pos[post], pos[pre], c.map_shape, sigma)
    m = base > 0
    if c.p < 1.0:
        m &= rng.random(shape) < c.p
        base = base / max(c.p, 1e-12)
    return m, base


def _balance(W: np.ndarray, nE: int) -> None:
    """Rescale each row's inhibition to cancel its excitation (``connectivity.balanced``), in place."""
    exc = W[:, :nE].sum(axis=1)
    inh = -W[:, nE:].sum(axis=1)
    starved = np.where((exc > 0) & ~(inh > 1e-9 * exc))[0]
    if starved.size:
        raise SpecError("connectivity.balanced", True,
                        f"every unit with excitatory input needs inhibitory input to balance; "
                        f"{starved.size} unit(s) (e.g. unit {int(starved[0])}) receive none: "
                        "set the inhibitory couplings (J_EI and J_II) > 0, or raise p")
    scale = np.divide(exc, inh, out=np.zeros_like(exc), where=inh > 0)
    W[:, nE:] *= scale[:, None]


def _input_projection(spec: CircuitSpec, rng: np.random.Generator, sl: dict[str, slice]) -> np.ndarray:
    """``B`` (N, n_inputs) from the ``[input]`` table."""
    inp, pops, N = spec.input, spec.populations, spec.n_units
    gain_of = {k: inp.gain.get(k, inp.gain_E if pops.is_excitatory(k) else inp.gain_I) for k in sl}
    gains = np.concatenate([np.full(pops[k].n, gain_of[k]) for k in sl])
    if inp.projection == "uniform":
        return np.repeat(gains[:, None], inp.n_inputs, axis=1)
    if inp.projection == "by_population":
        B = np.zeros((N, len(sl)))
        for ch, (k, s) in enumerate(sl.items()):
            B[s, ch] = gain_of[k]
        return B
    if inp.projection == "topographic":
        sites = math.prod(spec.connectivity.map_shape)
        site = np.concatenate([np.arange(pops[k].n) % sites for k in sl])
        B = np.zeros((N, inp.n_inputs))
        B[np.arange(N), site] = gains
        return B
    return np.abs(rng.standard_normal((N, inp.n_inputs))) * gains[:, None]


def build_circuit(spec: CircuitSpec, rng: np.random.Generator | None = None) -> Circuit:
    """Build ``W, B, b, tau`` from a spec.

    Parameters
    ----------
    spec : the circuit specification
    rng : the generator for all random draws; ``default_rng(spec.seed)`` if omitted

    Returns
    -------
    Circuit
        Units in :func:`population_layout` order (excitatory populations first);
        Dale's law holds by construction; each row's total input from
        population Y has expected magnitude ``J_XY``.
    """
    if spec.weights is not None:
        raise SpecError("weights", spec.weights, "no weight file for build_circuit (it draws random weights); "
                        "load a model file with trained weights with cortex_resnet.bridge.load_circuit(path)")
    rng = np.random.default_rng(spec.seed) if rng is None else rng
    pops, c = spec.populations, spec.connectivity
    sl = population_layout(spec)
    N = spec.n_units
    biggest = max(pops[k].n for k in sl)
    # W (float64) + mask (bool) + one block of temporaries (magnitudes, draws, kernel distances)
    check_memory(N * N * 9 + biggest ** 2 * 8 * 4, "circuit weights",
                 f"N = {N} units need a dense N x N weight matrix; use fewer units")
    W = np.zeros((N, N))
    mask = np.zeros((N, N), dtype=bool)
    pos = {k: spatial_positions(pops[k].n, c.map_shape) for k in sl} if c.kind == "spatial" else None
    for post in sl:  # the same draw order as the two-population code: EE, EI, IE, II
        for pre in sl:
            j = c.coupling(post, pre)
            sign = 1.0 if pops.is_excitatory(pre) else -1.0
            mag = _magnitudes(rng, (pops[post].n, pops[pre].n), c.weight_cv)
            m, base = tune_block(spec, rng, post, pre, *_block_base(spec, rng, post, pre, pos))
            with np.errstate(over="ignore", invalid="ignore"):
                W[sl[post], sl[pre]] = np.where(m, sign * j * base * mag, 0.0)  # absent connections exactly 0
            mask[sl[post], sl[pre]] = m if j > 0 else False
    nE = sum(pops[k].n for k in sl if pops.is_excitatory(k))
    if c.balanced:
        _balance(W, nE)
    B = tuned_projection(spec) if spec.input.projection == "tuned" else _input_projection(spec, rng, sl)
    b = np.concatenate([np.full(pops[k].n, spec.bias.of(k)) for k in sl])
    tau = np.concatenate([np.full(pops[k].n, pops[k].tau_ms) for k in sl])
    population = np.concatenate([np.full(pops[k].n, pops.label(k)) for k in sl])
    return Circuit(spec=spec, W=W, B=B, b=b, tau_ms=tau, mask=mask, population=population)
