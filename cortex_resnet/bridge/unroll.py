"""``unroll``: a circuit's Euler-discretised dynamics as a residual network.

Step ``k`` of the network is one Euler step of the rate dynamics, computed by
the very function the rate simulator uses (:func:`cortex_resnet.rate.step.euler_step`)::

    r_{k+1} = r_k + alpha * (-r_k + phi(W_k r_k + B u_k + b)),   alpha = dt / tau

Variants (one family):

* ``tied``: ``W_k = W`` for every step -- the recurrent circuit, step for step.
* ``untied``: one ``W_k`` per step -- a ResNet (cortical areas in a chain).
* ``plain``: ``alpha = 1``, ``r_{k+1} = phi(W r_k + B u_k + b)`` -- no identity path.
* ``projection``: ``r_{k+1} = P r_k + alpha phi(W r_k + B u_k + b)`` with a learned
  ``P = diag(1 - alpha) + Q`` (``Q = 0`` at initialisation: the tied net).
* ``gated``: ``alpha = sigmoid(a)`` learned per unit (highway), optionally
  state-dependent ``alpha_k = sigmoid(a + W_g r_k)`` (``W_g = 0`` at initialisation).

``tied`` applies to ``plain``, ``projection`` and ``gated`` too (``tied=False``
gives one ``W_k`` per step). ``norm`` adds a per-step normalisation of
``W r + B u + b`` before ``phi`` (weights tied, normalisation not: CORnet-S).
``recurrence="conv"`` shares each E/I kernel across the sites of a spatial
circuit's map (:class:`~cortex_resnet.bridge.dale.DaleConv`): a convolutional ResNet.

Input modes: ``sustained`` (``u`` enters every step; ``r_0 = 0``) or ``pulse``
(``r_0 = x_0 = phi(B u + b)``, the rate the input alone sets up with recurrence
removed; afterwards the circuit evolves freely with ``u = 0``, bias kept).

Weights obey Dale's law through :class:`~cortex_resnet.bridge.dale.DaleMatrix`.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from cortex_resnet.model.circuit import Circuit
from cortex_resnet.core.resources import check_memory
from cortex_resnet.errors import SpecError, UnknownNameError
from cortex_resnet.model.fixedpoint import implicit_fixed_point
from cortex_resnet.rate.step import euler_step, input_drive
from cortex_resnet.rate.system import resolve_device, resolve_dtype
from cortex_resnet.bridge.dale import DaleConv, DaleMatrix, balanced_weights
from cortex_resnet.bridge.options import INITS, INPUT_MODES, NORMS, RECURRENCES, VARIANTS, UnrollOptions, check_alpha

__all__ = ["VARIANTS", "INPUT_MODES", "NORMS", "INITS", "RECURRENCES", "UnrollOptions", "UnrolledCircuit",
           "unroll"]

def _autocast_dtype(u: torch.Tensor) -> torch.dtype | None:
    """The dtype autocast computes products in on ``u``'s device, or ``None`` when it is off."""
    kind = u.device.type
    if not torch.amp.is_autocast_available(kind) or not torch.is_autocast_enabled(kind):
        return None
    return torch.get_autocast_dtype(kind)


def _autocast_hint(u: torch.Tensor) -> str:
    on = _autocast_dtype(u)
    return f" or, under autocast, {on}" if on is not None else ""


class UnrolledCircuit(nn.Module):
    """A circuit unrolled into ``K`` residual blocks (build it with :func:`unroll`).

    Parameters (learnable unless ``learnable=False``): the Dale weight matrix or
    matrices ``W`` (:class:`DaleMatrix`), the input projection ``B`` (its zero
    pattern is kept: topographic/by-population inputs stay so), the bias ``b``,
    and per variant ``Q`` (projection), ``gate_logit`` and ``W_gate`` (gated),
    ``norms`` (per-step normalisation).

    ``forward(u, r0=None)`` returns the trajectory ``(K + 1, batch, N)`` including ``r_0``.
    """

    def __init__(self, circuit: Circuit, opts: UnrollOptions, dtype: torch.dtype, device: torch.device,
                 learnable: bool = True, seed: int | None = None):
        super().__init__()
        check_alpha(circuit, opts)
        self.circuit, self.options = circuit, opts
        self.n_units, self.n_E, self.n_inputs = circuit.n_units, circuit.n_E, circuit.n_inputs
        self.population = circuit.population.copy()
        # torch.tensor copies: training the net never writes into the circuit's arrays
        as_t = lambda a: torch.tensor(np.asarray(a, dtype=np.float64), dtype=dtype, device=device)  # noqa: E731
        rng = np.random.default_rng(circuit.spec.seed if seed is None else seed)
        n_mats = 1 if opts.tied else opts.steps

        if opts.init == "circuit":
            W0 = np.broadcast_to(circuit.W, (n_mats,) + circuit.W.shape)
        else:
            W0 = np.stack([balanced_weights(circuit.population, circuit.mask | (circuit.W != 0), rng,
                                            radius=opts.init_radius) for _ in range(n_mats)])
        if opts.recurrence == "conv":
            conn = circuit.spec.connectivity
            if conn.kind != "spatial":
                raise SpecError("recurrence", "conv", "a spatial circuit (connectivity.kind = 'spatial')")
            self.W: DaleMatrix | DaleConv = DaleConv(W0, circuit.population, circuit.mask, tuple(conn.map_shape),
                                                     parametrisation=opts.dale, dtype=dtype, device=device,
                                                     learnable=learnable)
        else:
            self.W = DaleMatrix(W0, circuit.population, circuit.mask, parametrisation=opts.dale,
                                dtype=dtype, device=device, learnable=learnable)
        self.B = nn.Parameter(as_t(circuit.B), requires_grad=learnable)
        self.register_buffer("B_mask", as_t(circuit.B != 0))
        self.b = nn.Parameter(as_t(circuit.b), requires_grad=learnable)
        alpha = np.ones(self.n_units) if opts.variant == "plain" else opts.dt_ms / circuit.tau_ms
        self.register_buffer("alpha", as_t(alpha))
        if opts.variant == "gated":
            a = np.clip(alpha, 1e-12, 1 - 1e-12)
            self.gate_logit = nn.Parameter(as_t(np.log(a) - np.log1p(-a)), requires_grad=learnable)
            if opts.state_gate:
                self.W_gate = nn.Parameter(as_t(np.zeros((self.n_units, self.n_units))), requires_grad=learnable)
        if opts.variant == "projection":
            self.Q = nn.ParameterList([nn.Parameter(as_t(np.zeros((self.n_units, self.n_units))),
                                                    requires_grad=learnable) for _ in range(n_mats)])
        if opts.norm is not None:
            make = (lambda: nn.LayerNorm(self.n_units, dtype=dtype, device=device)) if opts.norm == "layer" \
                else (lambda: nn.BatchNorm1d(self.n_units, dtype=dtype, device=device))
            self.norms = nn.ModuleList([make() for _ in range(opts.steps)])
            if not learnable:
                for p in self.norms.parameters():
                    p.requires_grad_(False)
        self.phi: Callable[[torch.Tensor], torch.Tensor] = circuit.phi

    # ---------------------------------------------------------------- sizes
    @property
    def steps(self) -> int:
        return self.options.steps

    @property
    def dt_ms(self) -> float:
        return self.options.dt_ms

    @property
    def variant(self) -> str:
        return self.options.variant

    @property
    def input_mode(self) -> str:
        return self.options.input_mode

    @property
    def dtype(self) -> torch.dtype:
        return self.B.dtype

    def param_count(self, effective: bool = True) -> int:
        """Number of learnable numbers; ``effective`` counts only connections inside the masks."""
        total = 0
        for name, p in self.named_parameters():
            if not p.requires_grad:
                continue
            if effective and name in ("W.theta_T", "W.theta_kernel"):
                total += self.W.n_effective()
            elif effective and name == "B":
                total += int(self.B_mask.sum().item())
            else:
                total += p.numel()
        return total

    # ---------------------------------------------------------------- pieces
    def weight(self, k: int = 0) -> torch.Tensor:
        """``W_k`` (N, N), post x pre (the last one is held for ``k >= K``)."""
        return self.W()[min(k, len(self.W) - 1)]

    def input_projection(self) -> torch.Tensor:
        """``B`` (N, n_inputs) with its zero pattern enforced."""
        return self.B * self.B_mask

    def drive(self, u: torch.Tensor) -> torch.Tensor:
        """``B u + b``: (batch, n_inputs) -> (batch, N), or (batch, K, n_inputs) -> (batch, K, N).

        The simulator's function (:func:`~cortex_resnet.rate.step.input_drive`), so both compute the
        same bits from the same ``B``, ``b`` and ``u``.
        """
        return input_drive(u, self.input_projection().T, self.b)

    def step_alpha(self, r: torch.Tensor) -> torch.Tensor:
        """``alpha`` for the state ``r``: (N,) or, state-gated, (batch, N)."""
        if self.variant != "gated":
            return self.alpha
        a = self.gate_logit
        if self.options.state_gate:
            a = a + r @ self.W_gate.T
        return torch.sigmoid(a)

    def recurrences(self) -> list[Any]:
        """What each step multiplies ``r`` with: ``W_k^T`` (dense), or ``r -> W_k r`` as a real
        convolution (``recurrence = "conv"``: no ``N x N`` matrix is formed)."""
        if self.options.recurrence == "conv":
            return [self.W.recurrent(w) for w in self.W.conv_weights().unbind(0)]
        return list(self.W.transposed().unbind(0))  # unbind: one stacked gradient, not K full-size ones

    def step(self, r: torch.Tensor, drive: torch.Tensor, k: int, WT: Any = None) -> torch.Tensor:
        """Block ``k``: ``r_{k+1}`` from ``r_k`` (batch, N) and the drive ``B u_k + b`` (batch, N).

        ``WT`` is ``W_k`` transposed (pre x post, contiguous: the simulator's layout,
        so that both compute ``r @ W^T`` with the same kernel) or an operator ``r -> W_k r``;
        default: :meth:`recurrences`.
        """
        WT = self.recurrences()[min(k, len(self.W) - 1)] if WT is None else WT
        phi = self.phi
        if self.options.norm is not None:
            norm, base = self.norms[min(k, self.steps - 1)], self.phi
            phi = lambda z: base(norm(z))  # noqa: E731
        r_next = euler_step(r, drive, WT, self.step_alpha(r), phi)  # dense WT: fused addmm, as the simulator
        if self.variant == "projection":
            r_next = r_next + r @ self.Q[min(k, len(self.Q) - 1)].T
        return r_next

    def initial_state(self, u: torch.Tensor) -> torch.Tensor:
        """``r_0``: zeros (sustained) or ``x_0 = phi(B u + b)`` (pulse)."""
        if self.input_mode == "pulse":
            return self.phi(self.drive(u))
        return torch.zeros(u.shape[0], self.n_units, dtype=self.dtype, device=u.device)

    def _check_input(self, u: torch.Tensor) -> torch.Tensor:
        if not isinstance(u, torch.Tensor):
            u = torch.as_tensor(np.asarray(u), dtype=self.dtype, device=self.B.device)
        if u.ndim not in (2, 3) or u.shape[-1] != self.n_inputs:
            raise SpecError("u", f"shape {tuple(u.shape)}",
                            f"(batch, {self.n_inputs}) constant or (batch, K={self.steps}, {self.n_inputs}) per step")
        if u.ndim == 3:
            if self.input_mode == "pulse":
                raise SpecError("u", f"shape {tuple(u.shape)}", "(batch, n_inputs): a pulse is one input vector")
            if u.shape[1] != self.steps:
                raise SpecError("u", f"shape {tuple(u.shape)}", f"K = {self.steps} input vectors per stimulus")
        if u.dtype != self.dtype:
            if not _autocast_dtype(u) == u.dtype:
                raise SpecError("u.dtype", str(u.dtype), f"{self.dtype} (the network's dtype)"
                                + _autocast_hint(u))
            u = u.to(self.dtype)  # autocast: products run in its dtype, the state stays in ours
        return u

    def forward(self, u: torch.Tensor, r0: torch.Tensor | None = None) -> torch.Tensor:
        """Run the ``K`` blocks.

        Parameters
        ----------
        u : (batch, n_inputs) constant input or (batch, K, n_inputs), ``u[:, k]`` entering block ``k``
        r0 : optional (batch, N) initial state (overrides the input mode's ``r_0``)

        Returns
        -------
        torch.Tensor
            (K + 1, batch, N): ``r_0, r_1, ..., r_K``.
        """
        u = self._check_input(u)
        r = self.initial_state(u if u.ndim == 2 else u[:, 0]) if r0 is None else r0
        if self.input_mode == "pulse":
            drives = [self.b.expand(u.shape[0], -1)] * self.steps
        elif u.ndim == 2:
            drives = [self.drive(u)] * self.steps
        else:  # per step, as the simulator computes it (one addmm per input vector: the same bits)
            drives = [self.drive(u[:, k]) for k in range(self.steps)]
        WTs = self.recurrences()
        states = [r]
        for k in range(self.steps):
            r = self.step(r, drives[k], k, WTs[min(k, len(WTs) - 1)])
            states.append(r)
        return torch.stack(states)

    # ---------------------------------------------------------------- equilibrium
    def steady_state(self, u: torch.Tensor, r0: torch.Tensor | None = None, *, tol: float | None = None,
                     backward: str = "iterative", **solver: Any) -> torch.Tensor:
        """The equilibrium ``r* = step(r*)`` (i.e. ``r* = phi(W r* + B u + b)``) with implicit gradients.

        Only for tied nets without normalisation. Memory does not grow with
        the number of solver iterations (:func:`~cortex_resnet.model.fixedpoint.implicit_fixed_point`).

        Parameters
        ----------
        u : (batch, n_inputs) constant input (sustained; the bias only for pulse mode)
        tol : relative residual tolerance (default 1e-10 in float64, 1e-5 in float32)
        solver : more options of :func:`~cortex_resnet.model.fixedpoint.implicit_fixed_point`
            (``max_iter``, ``m``, ``backward_tol``, ``backward_max_iter``, ``fallback``, ``raise_on_fail``)
        backward : ``"iterative"`` (Jacobian-free) or ``"direct"`` (explicit Jacobian, batch N^2 memory)
        """
        if not self.options.tied or self.options.norm is not None:
            raise SpecError("variant", self.variant, "a tied net without normalisation for the steady state")
        if backward not in ("iterative", "direct"):
            raise UnknownNameError("implicit backward", backward, ["iterative", "direct"], field="backward")
        u = self._check_input(u)
        if u.ndim != 2:
            raise SpecError("u", f"shape {tuple(u.shape)}", f"(batch, {self.n_inputs}): a constant input")
        if _autocast_dtype(u) is not None:  # bf16 rounding (~4e-3) is far above the solver's tolerance
            with torch.autocast(u.device.type, enabled=False):
                return self.steady_state(u, r0, tol=tol, backward=backward, **solver)
        drive = self.b.expand(u.shape[0], -1) if self.input_mode == "pulse" else self.drive(u)
        WT = self.W.transposed()[0]
        W = WT.T
        tol = (1e-10 if self.dtype == torch.float64 else 1e-5) if tol is None else tol
        start = self.phi(drive).detach() if r0 is None else r0
        # the Euler step rescaled to alpha_max = 1 (dt = the smallest tau): same fixed points, faster contraction
        scale = 1.0 / float(self.step_alpha(start).detach().max())

        def g(r: torch.Tensor) -> torch.Tensor:
            return r + scale * (self.step(r, drive, 0, WT) - r)

        jac = None
        if backward == "direct":
            if self.variant == "projection" or self.options.state_gate:
                raise SpecError("backward", "direct", "'iterative' for projection and state-gated nets")

            def jac(r: torch.Tensor) -> torch.Tensor:
                d = self.circuit.phi_derivative(r @ WT + drive)
                a = scale * self.step_alpha(r)
                eye = torch.eye(self.n_units, dtype=r.dtype, device=r.device)
                return eye + a[..., :, None] * (-eye + d[:, :, None] * W)
        return implicit_fixed_point(g, start, tol=tol, jacobian=jac, **solver)

    def extra_repr(self) -> str:
        o = self.options
        n_params = sum(p.numel() for p in self.parameters())
        return (f"{self.circuit.spec.name!r}: N={self.n_units} (E {self.n_E}), n_inputs={self.n_inputs}, "
                f"steps={o.steps}, dt_ms={o.dt_ms}, variant={o.variant}, tied={o.tied}, "
                f"input_mode={o.input_mode}, norm={o.norm}, dale={o.dale}, parameters={n_params:,}")

    def __repr__(self) -> str:
        """One line: :meth:`extra_repr` (torch's form lists the DaleMatrix child on lines of its own)."""
        return f"UnrolledCircuit({self.extra_repr()})"


def unroll(circuit: Circuit, steps: int, dt_ms: float | None = None, *, variant: str = "tied",
           input_mode: str = "sustained", dtype: torch.dtype | str | None = None,
           device: str | torch.device = "cpu", learnable: bool = True, norm: str | None = None,
           state_gate: bool = False, tied: bool | None = None, dale: str = "softplus",
           init: str = "circuit", init_radius: float = 0.9, recurrence: str = "dense",
           seed: int | None = None) -> UnrolledCircuit:
    """Unroll a circuit into ``steps`` residual blocks (one Euler step each).

    Parameters
    ----------
    circuit : the circuit (:func:`~cortex_resnet.model.circuit.build_circuit`)
    steps : number of blocks ``K``
    dt_ms : Euler step (ms); default: the model file's ``simulation.dt_ms``
    variant : ``tied``, ``untied``, ``plain``, ``projection`` or ``gated`` (module docstring)
    input_mode : ``sustained`` or ``pulse``
    dtype : of the parameters and the state; default ``torch.get_default_dtype()`` (float32
        unless changed), like any torch module; pass ``torch.float64`` for exactness checks
        against the simulator (:mod:`~cortex_resnet.bridge.check` does)
    device : of the parameters (``"auto"`` picks CUDA when present)
    learnable : ``False`` freezes every parameter
    norm : ``None``, ``"layer"`` or ``"batch"``: per-step normalisation before ``phi``
    state_gate : ``gated`` only: ``alpha = sigmoid(a + W_g r)``
    tied : one ``W`` for all steps; default ``False`` for ``untied``, else ``True``
    dale : ``"softplus"`` (default) or ``"relu"`` magnitudes (:mod:`~cortex_resnet.bridge.dale`)
    init : ``"circuit"`` (exact) or ``"balanced"`` (fresh balanced weights on the circuit's mask)
    init_radius : bulk spectral radius for ``init="balanced"``
    recurrence : ``"dense"`` or ``"conv"`` (weight-shared kernels on a spatial circuit's map)
    seed : for ``init="balanced"`` (default: the spec's seed)

    Returns
    -------
    UnrolledCircuit
        For ``tied`` and sustained input, ``unroll(c, K, dt)(u)`` equals
        ``simulate(c, constant u, method="euler", dt_ms=dt, duration_ms=K dt)``
        step for step (to rounding).

    Raises
    ------
    SpecError
        ``steps < 1``, ``dt_ms`` above a unit's ``tau_ms`` (alpha > 1), unknown names.
    """
    if circuit.step_weights is not None:
        raise SpecError("circuit", "a circuit with step_weights",
                        "a circuit with one W (unroll it; an untied net maps to step_weights with to_circuit)")
    dt_ms = circuit.spec.simulation.dt_ms if dt_ms is None else dt_ms
    opts = UnrollOptions(steps=steps, dt_ms=dt_ms, variant=variant, input_mode=input_mode, tied=tied,
                         norm=norm, state_gate=state_gate, dale=dale, init=init, init_radius=init_radius,
                         recurrence=recurrence)
    dt = torch.get_default_dtype() if dtype is None else resolve_dtype(dtype)
    dev = resolve_device(device)
    _check_parameter_memory(circuit, opts, dt, dev)
    return UnrolledCircuit(circuit, opts, dt, dev, learnable, seed)


def _check_parameter_memory(circuit: Circuit, opts: UnrollOptions, dtype: torch.dtype,
                            device: torch.device) -> None:
    """Refuse before allocating: weight matrices (one, or one per step when untied) with their
    gradients and two optimiser moments, plus the gate/projection matrices of those variants."""
    n = circuit.n_units
    tied = opts.tied if opts.tied is not None else opts.variant != "untied"
    mats = (1 if tied else opts.steps) * (2 if opts.variant in ("projection", "gated") else 1)
    check_memory(mats * n * n * dtype.itemsize * 4 + 3 * n * n * 8, "unrolled network parameters",
                 f"{mats} matrices of {n} x {n} units with gradients and optimiser state; "
                 "use tied weights, fewer steps or fewer units", device=device)

