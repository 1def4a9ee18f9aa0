"""Circuit and stimulus specifications (pydantic), read from TOML files.

A model file is data only: it is parsed with :mod:`tomllib` and validated
field by field; nothing in it is evaluated as code. Every validation failure
becomes a :class:`~cortex_resnet.errors.SpecError` naming the field, the value
and what is allowed.

Weight convention: ``J_XY`` is the magnitude of the total coupling *from*
population ``Y`` *onto* one unit of population ``X`` (so ``J_EI`` is
inhibition onto pyramidal cells). Signs come from Dale's law: E columns
``>= 0``, I columns ``<= 0``.
"""

from __future__ import annotations

import json
import math
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from cortex_resnet.errors import SpecError
from cortex_resnet.core.specbase import MAX_DEPTH, MAX_LIST, MAX_TEXT, Frozen, check_depth, strip_tags, unknown_key_message
from cortex_resnet.model.spiking_spec import SpikingSpec
from cortex_resnet.model.transfer import get_transfer

__all__ = [
    "TransferSpec", "PopulationSpec", "ConnectivitySpec", "InputSpec", "BiasSpec", "NoiseSpec",
    "SimulationDefaults", "CircuitSpec", "StimulusSpec", "load_spec", "parse_spec",
    "parse_stimulus", "validation_to_spec_error", "MAX_UNITS",
]

# names become parts of output paths (runs/<name>, reports): no separators, no leading dot
SAFE_NAME = r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$"
MAX_UNITS = 200_000  # per population; memory is checked separately before allocating


_Frozen = Frozen  # immutable, no unknown keys, finite strict numbers, bounded text (specbase)
MAX_STEPS = 10**9  # time steps of one run (duration_ms / dt_ms)


class TransferSpec(BaseModel):
    """``name`` plus the transfer function's own parameters, e.g. ``{name="relu", gain=1}``."""

    model_config = ConfigDict(extra="allow", frozen=True, str_max_length=200)
    name: str = "relu"

    @model_validator(mode="after")
    def _check(self) -> "TransferSpec":
        params = dict(self.model_extra or {})
        for k, v in params.items():
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise SpecError(k, v, f"a finite number (a parameter of transfer '{self.name}')")
        get_transfer(self.name, **params)  # raises SpecError listing names / params
        return self

    @property
    def params(self) -> dict[str, float]:
        return {k: float(v) for k, v in (self.model_extra or {}).items()}

    def build(self):
        """The :class:`~cortex_resnet.model.transfer.Transfer` object."""
        return get_transfer(self.name, **self.params)


class PopulationSpec(_Frozen):
    """One population (E = pyramidal, I = inhibitory).

    ``n``: number of rate units; ``tau_ms``: rate time constant (ms).
    """

    n: int = Field(ge=1, le=MAX_UNITS)
    tau_ms: float = Field(gt=0, le=1e5)
    transfer: TransferSpec = TransferSpec()


class ConnectivitySpec(_Frozen):
    """Recurrent connectivity.

    ``kind``: ``dense`` (all to all), ``sparse`` (each connection present with
    probability ``p``) or ``spatial`` (units on a 1-D/2-D periodic map,
    translation-invariant Gaussian kernels of width ``sigma_E``/``sigma_I``
    map units, i.e. a convolution with E and I as channels).
    ``J_XY >= 0``: total coupling onto one X unit from population Y.
    ``weight_cv``: coefficient of variation of the (gamma-distributed) weight
    magnitudes (0 = all equal). ``balanced``: rescale each row's inhibition so
    that it cancels that row's excitation exactly (``W 1 = 0``: the uniform mode
    gets eigenvalue 0; the E-vs-I mode keeps eigenvalue ``J_EE - J_IE``, so the
    spectrum has no outlier when ``J_EE = J_IE``, Rajan & Abbott 2006).
    """

    kind: Literal["dense", "sparse", "spatial"] = "dense"
    p: float = Field(default=1.0, ge=0.0, le=1.0)
    J_EE: float = Field(default=0.0, ge=0.0, le=1e6)
    J_EI: float = Field(default=0.0, ge=0.0, le=1e6)
    J_IE: float = Field(default=0.0, ge=0.0, le=1e6)
    J_II: float = Field(default=0.0, ge=0.0, le=1e6)
    weight_cv: float = Field(default=0.0, ge=0.0, le=10.0)
    balanced: bool = False
    map_shape: tuple[int, ...] | None = None
    sigma_E: float = Field(default=1.0, gt=0.0)
    sigma_I: float = Field(default=1.0, gt=0.0)

    @field_validator("map_shape")
    @classmethod
    def _map(cls, v: tuple[int, ...] | None) -> tuple[int, ...] | None:
        if v is not None and (len(v) not in (1, 2) or any(s < 1 for s in v)):
            raise ValueError("map_shape must be 1 or 2 positive sizes, e.g. [64] or [16, 16]")
        return v

    @model_validator(mode="after")
    def _kind(self) -> "ConnectivitySpec":
        if self.kind == "spatial" and self.map_shape is None:
            raise SpecError("map_shape", None, "a map size when kind = 'spatial', e.g. map_shape = [64]")
        return self


class InputSpec(_Frozen):
    """Feedforward projection ``B`` (N x n_inputs): to E with ``gain_E``, to I with ``gain_I``.

    ``projection = "uniform"``: every unit gets every input channel with the
    population's gain; ``"random"``: magnitudes drawn |N(0, gain^2)|;
    ``"topographic"`` (spatial circuits): input channel ``s`` drives the units at
    map site ``s`` (so ``n_inputs`` must equal the number of sites);
    ``"by_population"``: two channels, channel 0 drives E (``gain_E``) and
    channel 1 drives I (``gain_I``), for separate control of E and I drive.
    """

    n_inputs: int = Field(default=1, ge=1, le=100_000)
    gain_E: float = Field(default=1.0, ge=0.0)
    gain_I: float = Field(default=0.0, ge=0.0)
    projection: Literal["uniform", "random", "topographic", "by_population"] = "uniform"


class BiasSpec(_Frozen):
    """Constant background input ``b`` per population (same units as ``B u``)."""

    E: float = 0.0
    I: float = 0.0


class NoiseSpec(_Frozen):
    """Ornstein-Uhlenbeck input noise: stationary std ``sigma``, correlation time ``tau_ms`` (ms)."""

    sigma: float = Field(default=0.0, ge=0.0)
    tau_ms: float = Field(default=5.0, gt=0.0)


class SimulationDefaults(_Frozen):
    """Defaults for ``simulate`` when the CLI gives none."""

    duration_ms: float = Field(default=300.0, gt=0.0)
    dt_ms: float = Field(default=0.1, gt=0.0)
    method: str = Field(default="euler", max_length=100)
    stimulus: str = "step:amp=1.0"

    @model_validator(mode="after")
    def _steps(self) -> "SimulationDefaults":
        steps = self.duration_ms / self.dt_ms
        if steps > MAX_STEPS:
            raise SpecError("dt_ms", self.dt_ms, f"a step giving at most {MAX_STEPS:.0e} steps over "
                            f"duration_ms = {self.duration_ms:g} ms (this one gives {steps:.2g} steps)")
        return self


class Populations(_Frozen):
    E: PopulationSpec
    I: PopulationSpec


class CircuitSpec(_Frozen):
    """A whole circuit: populations, connectivity, input, bias, noise, seed.

    ``weights``: optional path (relative to the model file) of a ``.npz`` weight
    file written by :func:`cortex_resnet.bridge.save_circuit` (a trained network
    mapped back to a circuit); the arrays in it replace the random draws, and
    the connectivity/input fields then describe only the initialisation.
    Load such a file with :func:`cortex_resnet.bridge.load_circuit`.
    """

    name: str = Field(default="circuit", max_length=200, pattern=SAFE_NAME)
    description: str = Field(default="", max_length=MAX_TEXT)
    seed: int = Field(default=0, ge=0, le=2**63 - 1)
    populations: Populations
    connectivity: ConnectivitySpec = ConnectivitySpec()
    input: InputSpec = InputSpec()
    bias: BiasSpec = BiasSpec()
    noise: NoiseSpec = NoiseSpec()
    simulation: SimulationDefaults = SimulationDefaults()
    references: list[str] = Field(default=[], max_length=MAX_LIST)
    spiking: SpikingSpec = SpikingSpec()
    weights: str | None = Field(default=None, max_length=1000)

    @model_validator(mode="after")
    def _spatial_sizes(self) -> "CircuitSpec":
        c = self.connectivity
        if c.kind == "spatial":
            sites = math.prod(c.map_shape)
            for pop in ("E", "I"):
                n = getattr(self.populations, pop).n
                if n % sites:
                    raise SpecError(f"populations.{pop}.n", n, f"a multiple of the map size {sites} "
                                    f"(map_shape {list(c.map_shape)}): channels x sites")
        if self.input.projection == "by_population" and self.input.n_inputs != 2:
            raise SpecError("input.n_inputs", self.input.n_inputs,
                            "2 for projection = 'by_population' (channel 0 -> E, channel 1 -> I)")
        if self.input.projection == "topographic":
            if c.kind != "spatial":
                raise SpecError("input.projection", "topographic",
                                "'topographic' only with connectivity.kind = 'spatial'")
            if self.input.n_inputs != math.prod(c.map_shape):
                raise SpecError("input.n_inputs", self.input.n_inputs,
                                f"the number of map sites {math.prod(c.map_shape)} for a topographic projection")
        return self

    @property
    def n_units(self) -> int:
        return self.populations.E.n + self.populations.I.n

    def __repr__(self) -> str:
        """One line: name, populations, couplings, input; ``spec.to_json()`` has every field."""
        p, c = self.populations, self.connectivity
        pops = ", ".join(f"{k} n={getattr(p, k).n} tau={getattr(p, k).tau_ms:g} ms {getattr(p, k).transfer.name}"
                         for k in ("E", "I"))
        js = " ".join(f"{k}={getattr(c, k):g}" for k in ("J_EE", "J_EI", "J_IE", "J_II"))
        return (f"CircuitSpec({self.name!r}: {pops}; {c.kind} {js}; n_inputs={self.input.n_inputs}, "
                f"seed={self.seed})")

    __str__ = __repr__

    def to_json(self) -> str:
        """The full spec as a JSON string (stored in every result file)."""
        return json.dumps(self.model_dump(mode="json"), sort_keys=True)

    def replace(self, **changes: Any) -> "CircuitSpec":
        """A validated copy with top-level or dotted fields changed.

        ``spec.replace(**{"connectivity.J_EE": 0.0})``
        """
        data = self.model_dump(mode="python")
        for key, value in changes.items():
            node = data
            parts = key.split(".")
            for p in parts[:-1]:
                node = node[p]
            node[parts[-1]] = value
        return parse_spec(data)


_MESSAGES = {
    "finite_number": "a finite number (nan and inf are not allowed)",
    "string_too_long": "text of at most {max_length} characters",
    "too_long": "at most {max_length} entries",
}


def validation_to_spec_error(err: ValidationError, source: str | None = None,
                             model: type[BaseModel] | None = None) -> SpecError:
    """Turn pydantic's error into a :class:`SpecError` naming the first bad field.

    ``model``: the validated class, used to list the valid keys next to an unknown one.
    """
    first = err.errors()[0]
    raw = [str(p) for p in first["loc"]]
    parts = strip_tags(model, raw)
    loc = ".".join(parts) or "<file>"
    msg, kind, ctx = first["msg"], first["type"], first.get("ctx") or {}
    if kind == "missing":
        msg = "this required field is missing"
    elif kind == "string_pattern_mismatch" and ctx.get("pattern") == SAFE_NAME:
        msg = "letters, digits, '_', '.', '-' only, not starting with '.' (names become parts of output paths)"
    elif kind == "extra_forbidden":
        msg = unknown_key_message(model, raw)
    elif kind in _MESSAGES:
        msg = _MESSAGES[kind].format(**ctx)
    ctx_err = ctx.get("error")
    if isinstance(ctx_err, SpecError):
        inner = ctx_err.field.split(".")
        if parts and inner[0] == parts[-1]:
            parts = parts[:-1]
        return SpecError(".".join(parts + inner), ctx_err.value, ctx_err.allowed, source=source)
    if kind == "finite_number" and parts and parts[-1] in ("float", "int"):  # union member tags
        loc = ".".join(parts[:-1])
    value = first.get("input", None) if kind != "missing" else None
    msg = msg.removeprefix("Value error, ")
    return SpecError(loc, value, msg, source=source)


EXPERIMENT_KEYS = {"data", "model", "optim", "schedule", "train"}


def parse_spec(data: dict[str, Any], source: str | None = None) -> CircuitSpec:
    """Validate a dict (e.g. parsed TOML) into a :class:`CircuitSpec`."""
    if not isinstance(data, dict):
        raise SpecError("<file>", type(data).__name__, "a table of fields", source=source)
    check_depth(data, source)
    if "populations" not in data and EXPERIMENT_KEYS & data.keys():
        raise SpecError("<file>", "an experiment file (it has " + ", ".join(
            f"[{k}]" for k in sorted(EXPERIMENT_KEYS & data.keys())) + ")",
            "a circuit model file (with a [populations] table, see models/); "
            "experiment files go to `cortex-resnet train`", source=source)
    try:
        return CircuitSpec.model_validate(data)
    except ValidationError as err:
        raise validation_to_spec_error(err, source, CircuitSpec) from None


def _deepest_key(text: str) -> str:
    """The key of the line with the most opening brackets (to name it after a RecursionError)."""
    line = max(text.splitlines() or [""], key=lambda ln: ln.count("{") + ln.count("["))
    key = line.partition("=")[0].strip().strip("[]").strip()
    return key[:60] if key and len(key) < len(line) else "<toml>"


def read_toml(path: str | Path) -> dict[str, Any]:
    """Read a TOML file as data; any problem is a :class:`SpecError` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise SpecError("model", str(path), "an existing TOML file (see models/ for examples)")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise SpecError("<file>", f"byte {err.start}", "UTF-8 text", source=str(path)) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise SpecError("<toml>", str(err), "valid TOML", source=str(path)) from None
    except RecursionError:  # inline tables/arrays nested hundreds of levels deep
        raise SpecError(_deepest_key(text), "inline tables or arrays nested hundreds of levels deep",
                        f"tables and arrays nested at most {MAX_DEPTH} levels", source=str(path)) from None
    check_depth(data, str(path))
    return data


def load_spec(path: str | Path) -> CircuitSpec:
    """Load and validate a circuit model file (``models/*.toml``)."""
    return parse_spec(read_toml(path), source=str(path))


# --------------------------------------------------------------------------- stimuli

class StimulusSpec(_Frozen):
    """A stimulus ``u(t)``; a list ``amp`` makes a batch (one stimulus per value).

    Kinds (times in ms, frequencies in Hz):

    * ``constant``: ``u = amp`` for all t
    * ``step``: ``amp`` from ``onset_ms`` to ``offset_ms`` (or the end)
    * ``pulse``: ``amp`` from ``onset_ms`` for ``width_ms``
    * ``ramp``: linear from 0 at ``onset_ms`` to ``amp`` at ``offset_ms``, then held
    * ``sinusoid``: ``baseline + amp sin(2 pi freq_hz t/1000 + phase_rad)`` from ``onset_ms``
    * ``npy``: an array from ``path`` sampled every ``dt_ms``: shape ``(T, n_inputs)``
      or ``(T, batch, n_inputs)``; zero-order hold, last value held after the end.
    """

    kind: Literal["constant", "step", "pulse", "ramp", "sinusoid", "npy"] = "step"
    amp: float | list[float] = 1.0
    onset_ms: float = Field(default=0.0, ge=0.0)
    offset_ms: float | None = Field(default=None, ge=0.0)
    width_ms: float = Field(default=10.0, gt=0.0)
    freq_hz: float = Field(default=10.0, ge=0.0)
    phase_rad: float = 0.0
    baseline: float = 0.0
    path: str | None = None
    dt_ms: float = Field(default=1.0, gt=0.0)
    channels: list[int] | None = None

    @field_validator("amp")
    @classmethod
    def _amp(cls, v: float | list[float]) -> float | list[float]:
        vals = v if isinstance(v, list) else [v]
        if not vals:
            raise ValueError("amp list is empty")
        if any(not math.isfinite(a) for a in vals):
            raise ValueError("amp must be finite")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> "StimulusSpec":
        if self.kind == "npy" and not self.path:
            raise SpecError("path", None, "a .npy file when kind = 'npy': npy:path=FILE.npy")
        if self.offset_ms is not None and self.offset_ms <= self.onset_ms and self.kind in ("step", "ramp"):
            raise SpecError("offset_ms", self.offset_ms, f"a time after onset_ms = {self.onset_ms}")
        return self

    @property
    def amps(self) -> list[float]:
        return list(self.amp) if isinstance(self.amp, list) else [float(self.amp)]


def parse_stimulus(text: str) -> StimulusSpec:
    """Parse the CLI form ``KIND:key=value,key=value``.

    A list is written in brackets, ``step:amp=[0.5,1,2],onset_ms=50`` (a batch
    of three stimuli). Values are numbers except ``path``.
    """
    kind, _, rest = text.partition(":")
    data: dict[str, Any] = {"kind": kind.strip()}
    items: list[str] = []
    depth, cur = 0, ""
    for ch in rest:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        if ch == "," and depth == 0:
            items.append(cur)
            cur = ""
        else:
            cur += ch
    if cur.strip():
        items.append(cur)
    for item in items:
        key, eq, val = item.partition("=")
        key, val = key.strip(), val.strip()
        if not eq or not key:
            raise SpecError("stimulus", text, "KIND:key=value,... e.g. step:amp=1.0,onset_ms=50")
        if key == "path":
            data[key] = val
            continue
        try:
            if val.startswith("["):
                data[key] = [float(x) for x in val.strip("[]").split(",") if x.strip()]
                if key == "channels":
                    data[key] = [int(x) for x in data[key]]
            else:
                data[key] = float(val)
        except ValueError:
            raise SpecError(f"stimulus.{key}", val, "a number or [list, of, numbers]") from None
    try:
        return StimulusSpec.model_validate(data)
    except ValidationError as err:
        e = validation_to_spec_error(err, model=StimulusSpec)
        raise SpecError(f"stimulus.{e.field}", e.value, e.allowed) from None
