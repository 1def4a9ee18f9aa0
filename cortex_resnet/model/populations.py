"""Populations and their connectivity in a circuit spec: named populations (type, size, time
constant, transfer), the E/I shorthand, and the (post, pre) pathway table."""

from __future__ import annotations

import math
import re
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from cortex_resnet.core.specbase import (
    MAX_TEXT,
    NUMBER_ALLOWED,
)
from cortex_resnet.errors import SpecError
from cortex_resnet.model.spec_common import MAX_UNITS, SAFE_NAME, _Frozen  # noqa: F401
from cortex_resnet.model.transfer import get_transfer


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


