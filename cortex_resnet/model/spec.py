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
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from cortex_resnet.errors import SpecError
from cortex_resnet.core.specbase import (MAX_DEPTH, MAX_LIST, MAX_TEXT, NUMBER_ALLOWED, Frozen, check_depth,
                                         strip_tags, unknown_key_message)
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
    """One population: ``[populations.NAME]``.

    ``n``: number of rate units; ``tau_ms``: rate time constant (ms);
    ``type``: ``"excitatory"`` or ``"inhibitory"`` -- Dale's sign of the
    population's outgoing weights. Populations named ``E`` and ``I`` may omit it
    (their names say it); a circuit of only those needs both (the E/I shorthand).
    """

    n: int = Field(ge=1, le=MAX_UNITS)
    tau_ms: float = Field(gt=0, le=1e5)
    transfer: TransferSpec = TransferSpec()
    type: Literal["excitatory", "inhibitory"] | None = None


SHORTHAND_TYPES = {"E": "excitatory", "I": "inhibitory"}
MAX_POPULATIONS = 1000
MAX_NAME = 60  # characters of a population name


def _check_names(names: list[str], where: str, reserved: type[BaseModel] | None = None) -> None:
    """Refuse names that cannot be population names (they label result coordinates)."""
    if len(names) > MAX_POPULATIONS:
        raise SpecError(where, f"{len(names)} tables", f"at most {MAX_POPULATIONS} populations")
    for name in names:
        if not re.match(SAFE_NAME, name) or len(name) > MAX_NAME:
            raise SpecError(f"{where}.{name}", name, f"a population name of at most {MAX_NAME} letters, digits, "
                            "'_', '.', '-', not starting with '.' (names label results and file names)")
        if reserved is not None and hasattr(reserved, name):
            raise SpecError(f"{where}.{name}", name, "a name that is not a reserved word of the spec "
                            f"('{name}' is a method of the populations table); rename the population")


class Populations(_Frozen):
    """``[populations.NAME]`` tables, any number of them, in file order.

    Units are ordered excitatory populations first (in file order), then the
    inhibitory ones (in file order): :attr:`order`. The two-population
    shorthand is ``[populations.E]`` and ``[populations.I]`` without a ``type``.
    """

    model_config = ConfigDict(extra="allow", frozen=True, allow_inf_nan=False, str_max_length=MAX_TEXT)
    __pydantic_extra__: dict[str, PopulationSpec] = Field(init=False)
    EXTRA_MODEL: ClassVar[type[BaseModel]] = PopulationSpec  # for "did you mean" messages (specbase)

    @model_validator(mode="after")
    def _check(self) -> "Populations":
        pops = dict(self.model_extra or {})
        if not pops:
            raise SpecError("populations", {}, "at least one population table, e.g. [populations.E] and "
                            "[populations.I], or [populations.NAME] with a type")
        _check_names(list(pops), "populations", Populations)
        untyped = [k for k, v in pops.items() if v.type is None]
        for name in untyped:
            if name not in SHORTHAND_TYPES:
                raise SpecError(f"populations.{name}.type", None, "'excitatory' or 'inhibitory' (Dale's sign of "
                                "the population's outgoing weights); only populations E and I may omit it")
        for name, pop in pops.items():
            implied = SHORTHAND_TYPES.get(name)
            if pop.type is not None and implied is not None and pop.type != implied:
                raise SpecError(f"populations.{name}.type", pop.type, f"'{implied}' for a population named "
                                f"{name} (name an {pop.type} population otherwise, e.g. PV)")
        if untyped and set(pops) <= set(SHORTHAND_TYPES):
            for name in SHORTHAND_TYPES:
                if name not in pops:
                    raise SpecError(f"populations.{name}", None, "this required field is missing: the E/I "
                                    "shorthand (populations E and I without a type) needs both tables")
        if not any(self.type_of(k) == "excitatory" for k in pops):
            raise SpecError("populations", sorted(pops), "at least one excitatory population "
                            "(type = 'excitatory'): readouts and the ISN test use them")
        return self

    def type_of(self, name: str) -> str:
        """``"excitatory"`` or ``"inhibitory"``."""
        pop = self[name]
        return pop.type or SHORTHAND_TYPES[name]

    def is_excitatory(self, name: str) -> bool:
        return self.type_of(name) == "excitatory"

    def __getitem__(self, name: str) -> PopulationSpec:
        return (self.model_extra or {})[name]

    @property
    def names(self) -> list[str]:
        """Population names in file order."""
        return list(self.model_extra or {})

    @property
    def order(self) -> list[str]:
        """Names in unit order: excitatory first, then inhibitory (each in file order)."""
        names = self.names
        return [k for k in names if self.is_excitatory(k)] + [k for k in names if not self.is_excitatory(k)]

    @property
    def is_shorthand(self) -> bool:
        """Exactly the two populations E (excitatory) and I (inhibitory)."""
        return sorted(self.names) == ["E", "I"]

    def label(self, name: str) -> str:
        """``"E"`` or ``"I"``: the Dale label of a population's units."""
        return "E" if self.is_excitatory(name) else "I"


class PathwaySpec(_Frozen):
    """One (post, pre) entry of ``[connectivity.pathways.POST]``: ``PRE = { J = 1.5, p = 0.2 }``.

    ``J >= 0``: total coupling magnitude onto one POST unit from population PRE
    (the sign follows PRE's type); ``p``: connection probability of the pair for
    ``kind = "sparse"`` (default: ``connectivity.p``).
    """

    J: float = Field(default=0.0, ge=0.0, le=1e6)
    p: float | None = Field(default=None, ge=0.0, le=1.0)


class ConnectivitySpec(_Frozen):
    """Recurrent connectivity.

    ``kind``: ``dense`` (all to all), ``sparse`` (each connection present with
    probability ``p``) or ``spatial`` (units on a 1-D/2-D periodic map,
    translation-invariant Gaussian kernels of width ``sigma_E``/``sigma_I``
    map units, i.e. a convolution with E and I as channels).
    ``J_XY >= 0``: total coupling onto one X unit from population Y (the E/I
    shorthand); circuits of other populations give ``pathways``, a table over
    (post, pre) pairs: ``[connectivity.pathways.PV]`` ``E = { J = 2.0 }``.
    ``sigma_E``/``sigma_I``: kernel widths of excitatory/inhibitory presynaptic
    populations.
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
    pathways: dict[str, dict[str, PathwaySpec]] = Field(default={}, max_length=MAX_POPULATIONS)

    def coupling(self, post: str, pre: str) -> float:
        """``J`` onto one ``post`` unit from population ``pre`` (shorthand ``J_XY`` or the pathway table)."""
        if self.pathways:
            pw = self.pathways.get(post, {}).get(pre)
            return 0.0 if pw is None else pw.J
        return float(getattr(self, f"J_{post}{pre}"))

    def probability(self, post: str, pre: str) -> float:
        """Connection probability of the pair (the pathway's ``p``, else ``connectivity.p``)."""
        pw = self.pathways.get(post, {}).get(pre)
        return self.p if pw is None or pw.p is None else pw.p

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


def _strict_numbers_by_name(data: Any, where: str) -> Any:
    """Refuse booleans and strings among the values of a table keyed by population name."""
    if isinstance(data, dict):
        for k, v in data.items():
            if isinstance(v, (bool, str)):
                raise SpecError(f"{where}{k}", v, NUMBER_ALLOWED)
    return data


class InputSpec(_Frozen):
    """Feedforward projection ``B`` (N x n_inputs): to E with ``gain_E``, to I with ``gain_I``.

    ``projection = "uniform"``: every unit gets every input channel with the
    population's gain; ``"random"``: magnitudes drawn |N(0, gain^2)|;
    ``"topographic"`` (spatial circuits): input channel ``s`` drives the units at
    map site ``s`` (so ``n_inputs`` must equal the number of sites);
    ``"by_population"``: one channel per population in unit order (channel 0
    drives E with ``gain_E``, channel 1 drives I with ``gain_I``), for separate
    control of each population's drive.
    ``gain``: per-population gains by name (``[input.gain]`` ``L4E = 1.0``); a
    population not listed gets ``gain_E`` (excitatory) or ``gain_I`` (inhibitory).
    """

    n_inputs: int = Field(default=1, ge=1, le=100_000)
    gain_E: float = Field(default=1.0, ge=0.0)
    gain_I: float = Field(default=0.0, ge=0.0)
    projection: Literal["uniform", "random", "topographic", "by_population"] = "uniform"
    gain: dict[str, Annotated[float, Field(ge=0.0, le=1e6)]] = Field(default={}, max_length=MAX_POPULATIONS)

    @field_validator("gain", mode="before")
    @classmethod
    def _strict_gain(cls, v: Any) -> Any:
        return _strict_numbers_by_name(v, "")


class BiasSpec(_Frozen):
    """Constant background input ``b`` per population, by name (same units as ``B u``); 0 if not listed."""

    model_config = ConfigDict(extra="allow", frozen=True, allow_inf_nan=False)
    __pydantic_extra__: dict[str, float] = Field(init=False)
    E: float = 0.0
    I: float = 0.0

    @model_validator(mode="before")
    @classmethod
    def _strict_extras(cls, data: Any) -> Any:
        return _strict_numbers_by_name(data, "")

    def of(self, name: str) -> float:
        """The bias of population ``name``."""
        if name in ("E", "I"):
            return float(getattr(self, name))
        return float((self.model_extra or {}).get(name, 0.0))

    @property
    def named(self) -> list[str]:
        """The population names this table sets."""
        return [k for k in ("E", "I") if k in self.model_fields_set] + list(self.model_extra or {})


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
            for pop in self.populations.names:
                n = self.populations[pop].n
                if n % sites:
                    raise SpecError(f"populations.{pop}.n", n, f"a multiple of the map size {sites} "
                                    f"(map_shape {list(c.map_shape)}): channels x sites")
        n_pops = len(self.populations.names)
        if self.input.projection == "by_population" and self.input.n_inputs != n_pops:
            order = ", ".join(f"{k} -> {self.populations.order[k]}" for k in range(n_pops))
            raise SpecError("input.n_inputs", self.input.n_inputs,
                            f"{n_pops} for projection = 'by_population' (one channel per population: {order})")
        if self.input.projection == "topographic":
            if c.kind != "spatial":
                raise SpecError("input.projection", "topographic",
                                "'topographic' only with connectivity.kind = 'spatial'")
            if self.input.n_inputs != math.prod(c.map_shape):
                raise SpecError("input.n_inputs", self.input.n_inputs,
                                f"the number of map sites {math.prod(c.map_shape)} for a topographic projection")
        return self

    @model_validator(mode="after")
    def _population_names(self) -> "CircuitSpec":
        """Every name in connectivity, input, bias and spiking tables is a population."""
        pops, c = self.populations, self.connectivity
        known = pops.names
        allowed = "a population name: " + ", ".join(known)
        shorthand_J = [k for k in ("J_EE", "J_EI", "J_IE", "J_II") if getattr(c, k) != 0.0]
        if shorthand_J and not pops.is_shorthand:
            raise SpecError(f"connectivity.{shorthand_J[0]}", getattr(c, shorthand_J[0]),
                            "J_EE/J_EI/J_IE/J_II only for a circuit of populations E and I; with other "
                            "populations write [connectivity.pathways.POST] PRE = { J = ... }")
        if shorthand_J and c.pathways:
            raise SpecError(f"connectivity.{shorthand_J[0]}", getattr(c, shorthand_J[0]),
                            "either the J_XY shorthand or connectivity.pathways, not both")
        for post, row in c.pathways.items():
            if post not in known:
                raise SpecError(f"connectivity.pathways.{post}", post, allowed)
            for pre in row:
                if pre not in known:
                    raise SpecError(f"connectivity.pathways.{post}.{pre}", pre, allowed)
        for name in self.input.gain:
            if name not in known:
                raise SpecError(f"input.gain.{name}", name, allowed)
        for name in self.bias.named:
            if name not in known and self.bias.of(name) != 0.0:
                raise SpecError(f"bias.{name}", self.bias.of(name), allowed)
        for name in self.spiking.populations.named:
            if name not in known:
                raise SpecError(f"spiking.populations.{name}", name, allowed)
        for post, row in self.spiking.pathways.items():
            if post not in known:
                raise SpecError(f"spiking.pathways.{post}", post, allowed)
            for pre in row:
                if pre not in known:
                    raise SpecError(f"spiking.pathways.{post}.{pre}", pre, allowed)
        return self

    @property
    def n_units(self) -> int:
        return sum(self.populations[k].n for k in self.populations.names)

    def __repr__(self) -> str:
        """One line: name, populations, couplings, input; ``spec.to_json()`` has every field."""
        p, c = self.populations, self.connectivity
        pops = ", ".join(f"{k} n={p[k].n} tau={p[k].tau_ms:g} ms {p[k].transfer.name}" for k in p.order)
        if c.pathways:
            js = f"{sum(len(r) for r in c.pathways.values())} pathways"
        else:
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
