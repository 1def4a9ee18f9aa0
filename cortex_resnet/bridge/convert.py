"""From a (trained) unrolled net back to a circuit, and circuits to/from files.

* :func:`to_circuit`: ``tied`` -> a :class:`~cortex_resnet.model.circuit.Circuit` with
  the learned ``W, B, b`` and ``tau = dt / alpha``; ``untied`` -> a circuit with
  step-dependent weights (``step_weights``, an "areas in a chain" circuit: area
  ``k`` sends its rates through ``W_k`` to area ``k + 1``); ``plain`` -> ``tau = dt``;
  ``gated`` (per-unit) -> ``tau = dt / alpha``. Dale's law holds by construction.
* :func:`save_circuit` writes ``NAME.toml`` (the spec, data only, with
  ``weights = "NAME.npz"``) and ``NAME.npz`` (the arrays); both atomically.
  :func:`load_circuit` reads them back (``allow_pickle=False``) and checks every
  shape and Dale's law.
* :func:`save_state` / :func:`load_state`: an unrolled net's state dict
  (``torch.save``; loaded with ``weights_only=True``).
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cortex_resnet.model.circuit import Circuit, build_circuit
from cortex_resnet.core.tomlio import toml_key, toml_value
from cortex_resnet.errors import SpecError
from cortex_resnet.io.results import atomic_path, atomic_write_text
from cortex_resnet.model.spec import CircuitSpec, parse_spec, parse_stimulus, read_toml
from cortex_resnet.bridge.unroll import UnrolledCircuit

__all__ = ["to_circuit", "circuit_of", "save_circuit", "load_circuit", "save_state", "load_state", "spec_to_toml"]

WEIGHT_ARRAYS = ("W", "B", "b", "tau_ms", "mask", "population")


def to_circuit(net: UnrolledCircuit) -> Circuit:
    """Map an unrolled net back to a circuit that the simulators run.

    The circuit's spec is the source circuit's, with ``simulation.dt_ms = dt``,
    ``duration_ms = K dt`` and ``method = "euler"``, so that
    ``simulate(to_circuit(net))`` reproduces ``net`` step for step.

    Raises
    ------
    SpecError
        ``projection`` (the learned shortcut ``P r`` has no counterpart in the
        rate dynamics), state-gated nets (a state-dependent time constant) and
        per-step normalisation.
    """
    o = net.options
    if o.variant == "projection":
        raise SpecError("variant", "projection", "tied, untied, plain or gated: the learned linear shortcut "
                        "P r is not part of the rate dynamics T dr/dt = -r + phi(W r + B u + b)")
    if o.state_gate:
        raise SpecError("state_gate", True, "False: a state-dependent time constant is not a rate circuit")
    if o.norm is not None:
        raise SpecError("norm", o.norm, "None: per-step normalisation is not part of the rate dynamics")
    return circuit_of(net)


def circuit_of(net: UnrolledCircuit) -> Circuit:
    """The circuit made of the net's ``W``, ``B``, ``b`` and ``tau = dt / alpha`` (no variant checks)."""
    o = net.options
    as_np = lambda t: t.detach().to(device="cpu", dtype=torch.float64).numpy().copy()  # noqa: E731
    with torch.no_grad():
        mats = as_np(net.W())
        alpha = as_np(net.step_alpha(torch.zeros(1, net.n_units, dtype=net.dtype, device=net.B.device)))
        alpha = alpha.reshape(-1)[-net.n_units:]
        B, b = as_np(net.input_projection()), as_np(net.b)
        mask = net.W.mask.cpu().numpy().copy()
    src = net.circuit
    sim = src.spec.simulation.model_copy(update={"dt_ms": o.dt_ms, "duration_ms": o.steps * o.dt_ms,
                                                 "method": "euler"})
    spec = runnable_simulation(src.spec.model_copy(update={"simulation": sim, "weights": None}))
    step_weights = None if o.tied else mats
    meta = {"source": "bridge.to_circuit", "variant": o.variant, "steps": o.steps, "dt_ms": o.dt_ms,
            "input_mode": o.input_mode}
    return Circuit(spec=spec, W=mats[-1], B=B, b=b, tau_ms=o.dt_ms / alpha, mask=mask,
                   population=src.population.copy(), step_weights=step_weights, meta=meta)


# ------------------------------------------------------------------------------ TOML (data only)

def spec_to_toml(spec: CircuitSpec, header: str = "") -> str:
    """A spec as TOML text (``None`` fields are left out, so their defaults apply)."""
    data = spec.model_dump(mode="json")
    lines = [f"# {line}" for line in header.splitlines()]

    def emit(prefix: str, table: dict[str, Any]) -> None:
        for k, v in table.items():
            if v is not None and not isinstance(v, dict):
                lines.append(f"{toml_key(k)} = {toml_value(v)}")
        for k, v in table.items():
            if isinstance(v, dict):
                name = f"{prefix}.{toml_key(k)}" if prefix else toml_key(k)
                if k == "transfer":
                    lines.append(f"{toml_key(k)} = {toml_value(v)}")
                    continue
                if any(x is not None and not isinstance(x, dict) for x in v.values()):
                    lines.extend(["", f"[{name}]"])
                emit(name, v)

    emit("", data)
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------ circuit files

def _stem(path: str | Path) -> Path:
    p = Path(path)
    return p.with_suffix("") if p.suffix in (".toml", ".npz") else p


def runnable_simulation(spec: CircuitSpec) -> CircuitSpec:
    """The spec with its default stimulus moved to start at t = 0 when it would start after the run.

    A circuit from :func:`to_circuit` runs ``K dt`` ms (the net's steps); the source model's
    stimulus (e.g. a step at 50 ms) would start after that, and the file would simulate the
    bias alone. The unrolled net sees its input from step 0, so the stimulus starts at 0 instead
    (``offset_ms`` moves with it).
    """
    sim = spec.simulation
    stim = parse_stimulus(sim.stimulus)
    if stim.kind in ("constant", "npy") or stim.onset_ms < sim.duration_ms:
        return spec
    text = re.sub(r"onset_ms\s*=\s*[^,\]]+", "onset_ms=0", sim.stimulus)
    if stim.offset_ms is not None:
        text = re.sub(r"offset_ms\s*=\s*[^,\]]+", f"offset_ms={stim.offset_ms - stim.onset_ms:g}", text)
    return spec.model_copy(update={"simulation": sim.model_copy(update={"stimulus": text})})


def save_circuit(circuit: Circuit, path: str | Path) -> Path:
    """Write ``PATH.toml`` (spec, data only) and ``PATH.npz`` (weights); returns the TOML path.

    The ``.npz`` holds ``W, B, b, tau_ms, mask, population`` (and ``step_weights``
    for a chain circuit) as plain arrays, readable with ``allow_pickle=False``.
    Both files are written atomically (the weights first). A default stimulus that would
    start after the run ends is moved to t = 0 (:func:`runnable_simulation`).
    """
    stem = _stem(path)
    toml_path, npz_path = stem.with_suffix(".toml"), stem.with_suffix(".npz")
    arrays = {"W": circuit.W, "B": circuit.B, "b": circuit.b, "tau_ms": circuit.tau_ms,
              "mask": circuit.mask.astype(bool), "population": circuit.population.astype("<U1")}
    if circuit.step_weights is not None:
        arrays["step_weights"] = circuit.step_weights
    with atomic_path(npz_path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
    spec = runnable_simulation(circuit.spec).model_copy(update={"weights": npz_path.name})
    meta = ", ".join(f"{k} = {v}" for k, v in circuit.meta.items())
    header = (f"Circuit '{spec.name}' with weights from {npz_path.name}" + (f" ({meta})" if meta else "")
              + ".\nLoad with cortex_resnet.bridge.load_circuit; connectivity/input describe the initialisation.")
    atomic_write_text(toml_path, spec_to_toml(spec, header))
    return toml_path


def _read_npz(path: Path, spec: CircuitSpec, source: str) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise SpecError("weights", str(path), "an existing .npz weight file beside the model file", source=source)
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (ValueError, OSError, zipfile.BadZipFile) as err:
        raise SpecError("weights", str(path), f"a NumPy .npz of plain arrays ({err})", source=source) from None
    missing = [k for k in WEIGHT_ARRAYS if k not in arrays]
    if missing:
        raise SpecError("weights", str(path), f"arrays {', '.join(WEIGHT_ARRAYS)}; missing {', '.join(missing)}",
                        source=source)
    n, n_in = spec.n_units, spec.input.n_inputs
    shapes = {"W": (n, n), "B": (n, n_in), "b": (n,), "tau_ms": (n,), "mask": (n, n), "population": (n,)}
    if "step_weights" in arrays:
        shapes["step_weights"] = (arrays["step_weights"].shape[0], n, n)
    for k, shape in shapes.items():
        a = arrays[k]
        if a.shape != shape:
            raise SpecError(f"weights.{k}", f"shape {a.shape}",
                            f"shape {shape} for the spec's N = {n} units and {n_in} inputs", source=source)
        if k == "population":
            continue
        if k != "mask" and (a.dtype.kind not in "fi" or not np.all(np.isfinite(a))):
            raise SpecError(f"weights.{k}", str(a.dtype), "finite real numbers", source=source)
    pops = spec.populations
    expected = np.concatenate([np.full(pops[k].n, pops.label(k)) for k in pops.order])
    if not np.array_equal(arrays["population"].astype(str), expected):
        layout = ", ".join(f"{pops[k].n} '{pops.label(k)}' ({k})" for k in pops.order)
        raise SpecError("weights.population", "a different E/I layout", f"{layout} units", source=source)
    return arrays


def load_circuit(path: str | Path) -> Circuit:
    """Load a model file; with ``weights = "X.npz"`` the arrays come from that file.

    A model file without ``weights`` is built from its spec (random draws,
    seeded), like :func:`~cortex_resnet.model.circuit.build_circuit`.

    Raises
    ------
    SpecError
        Missing or malformed files, arrays whose shapes do not match the spec,
        columns that break Dale's law (mixed signs).
    """
    path = Path(path)
    source = str(path)
    spec = parse_spec(read_toml(path), source=source)
    if spec.weights is None:
        return build_circuit(spec)
    arrays = _read_npz(path.parent / spec.weights, spec, source)
    try:
        return Circuit(spec=spec, W=arrays["W"].astype(np.float64), B=arrays["B"].astype(np.float64),
                       b=arrays["b"].astype(np.float64), tau_ms=arrays["tau_ms"].astype(np.float64),
                       mask=arrays["mask"].astype(bool), population=arrays["population"].astype("<U1"),
                       step_weights=arrays["step_weights"].astype(np.float64) if "step_weights" in arrays else None,
                       meta={"source": source})
    except SpecError as err:
        raise SpecError(f"weights.{err.field}", err.value, err.allowed, source=source) from None


# ------------------------------------------------------------------------------ state dicts

def save_state(net: torch.nn.Module, path: str | Path) -> Path:
    """``torch.save`` of the state dict (tensors only), atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(net.state_dict(), tmp)
    return path


def load_state(net: torch.nn.Module, path: str | Path) -> torch.nn.Module:
    """Load a state dict saved by :func:`save_state` (``weights_only=True``: no code is unpickled).

    Raises
    ------
    SpecError
        A missing/unreadable file, or tensors whose names or shapes do not match ``net``.
    """
    path = Path(path)
    if not path.is_file():
        raise SpecError("state", str(path), "an existing file written by save_state / unroll --out")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises UnpicklingError/RuntimeError for foreign files
        raise SpecError("state", str(path), f"a state dict saved with torch.save ({type(err).__name__})") from None
    own = net.state_dict()
    if not isinstance(state, dict) or set(state) != set(own):
        got = sorted(state) if isinstance(state, dict) else type(state).__name__
        raise SpecError("state", str(got)[:200], f"the tensors {sorted(own)} of this network")
    for k, v in state.items():
        if tuple(v.shape) != tuple(own[k].shape):
            raise SpecError(f"state.{k}", f"shape {tuple(v.shape)}", f"shape {tuple(own[k].shape)}")
    net.load_state_dict(state)
    return net
