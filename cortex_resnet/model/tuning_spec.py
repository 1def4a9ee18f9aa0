"""The ``[tuning]`` table of a model file: units with a preferred feature on a ring.

Every population's units get preferred features evenly spaced on a ring of
period ``period_deg`` (180 deg: orientation; 360 deg: direction or position on
a ring): unit ``k`` of a population of ``n`` units prefers ``k * period_deg / n``.
Pathways listed in ``sigma_deg`` are *feature-specific* (like-to-like): their
strength (``modulate = "strength"``) or connection probability
(``modulate = "probability"``, with ``connectivity.kind = "sparse"``) falls with
the difference of preferences as a von Mises kernel

    k(d) = exp((cos(2 pi d / P) - 1) / s^2),  s = 2 pi sigma / P,

which is 1 at ``d = 0`` and a Gaussian of standard deviation ``sigma`` (deg)
for ``sigma << P``. Pathways not listed are untuned (all preferences alike).
``input.projection = "tuned"`` gives the feedforward input the same kind of
kernel (``input.sigma_deg``): input channel ``c`` of ``n_inputs`` prefers
``c * period_deg / n_inputs``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, field_validator

from cortex_resnet.core.specbase import NUMBER_ALLOWED
from cortex_resnet.errors import SpecError
from cortex_resnet.model.spec_common import _Frozen

__all__ = ["TuningSpec", "check_tuning", "MAX_SIGMA_DEG"]

MAX_SIGMA_DEG = 1e4  # far wider than any ring: the kernel is then flat to < 1e-7
_WIDTH = Annotated[float, Field(gt=0.0, le=MAX_SIGMA_DEG)]


class TuningSpec(_Frozen):
    """``[tuning]``: preferred features on a ring and feature-specific pathways.

    ``period_deg``: the ring's period (deg); ``modulate``: what falls with the
    preference difference, the connection ``strength`` or its ``probability``;
    ``sigma_deg``: von Mises width (deg) per tuned pathway,
    ``[tuning.sigma_deg.POST] PRE = 20.0`` (POST, PRE population names).
    """

    period_deg: float = Field(default=180.0, gt=0.0, le=360.0)
    modulate: Literal["strength", "probability"] = "strength"
    sigma_deg: dict[str, dict[str, _WIDTH]] = Field(default={}, max_length=1000)

    @field_validator("sigma_deg", mode="before")
    @classmethod
    def _strict_widths(cls, v: Any) -> Any:
        if isinstance(v, dict):
            for post, row in v.items():
                if not isinstance(row, dict):
                    raise SpecError(f"sigma_deg.{post}", row, "a table of widths by presynaptic population, "
                                    f"[tuning.sigma_deg.{post}] E = 20.0")
                for pre, w in row.items():
                    if isinstance(w, (bool, str)):
                        raise SpecError(f"sigma_deg.{post}.{pre}", w, NUMBER_ALLOWED)
        return v

    def sigma(self, post: str, pre: str) -> float | None:
        """Width (deg) of the (post, pre) pathway's kernel; None when it is untuned."""
        return self.sigma_deg.get(post, {}).get(pre)


def check_tuning(spec: Any) -> None:
    """Cross-table rules of a circuit spec with tuning (called by ``CircuitSpec``'s validator).

    * ``[tuning]`` only with ``connectivity.kind`` dense or sparse (a spatial map has its own kernels);
      ``modulate = "probability"`` only with ``kind = "sparse"``;
    * names in ``tuning.sigma_deg`` are populations;
    * ``input.projection = "tuned"`` needs ``[tuning]`` and ``input.sigma_deg``; ``input.sigma_deg``
      only with the tuned projection.
    """
    tun, c, inp = spec.tuning, spec.connectivity, spec.input
    if inp.projection == "tuned" and tun is None:
        raise SpecError("input.projection", "tuned", "'tuned' only with a [tuning] table (period_deg: the "
                        "ring of preferred features)")
    if inp.projection == "tuned" and inp.sigma_deg is None:
        raise SpecError("input.sigma_deg", None, "a width in deg (> 0) for input.projection = 'tuned'")
    if inp.projection != "tuned" and inp.sigma_deg is not None:
        raise SpecError("input.sigma_deg", inp.sigma_deg, "only with input.projection = 'tuned'")
    if tun is None:
        return
    if c.kind not in ("dense", "sparse"):
        raise SpecError("tuning", c.kind, "a [tuning] table only with connectivity.kind = 'dense' or 'sparse' "
                        "(a spatial map has its own kernels)")
    if tun.modulate == "probability" and c.kind != "sparse":
        raise SpecError("tuning.modulate", "probability", "'probability' only with connectivity.kind = 'sparse' "
                        "(the peak connection probability is the pathway's p); use 'strength' for dense circuits")
    known = spec.populations.names
    for post, row in tun.sigma_deg.items():
        if post not in known:
            raise SpecError(f"tuning.sigma_deg.{post}", post, "a population name: " + ", ".join(known))
        for pre in row:
            if pre not in known:
                raise SpecError(f"tuning.sigma_deg.{post}.{pre}", pre, "a population name: " + ", ".join(known))
