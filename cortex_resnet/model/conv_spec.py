"""Convolutional areas in a chain (CORnet-S style): the specification of one area.

A conv circuit is a chain of cortical areas. Area ``a`` is a spatial E/I circuit with
``channels_E`` pyramidal and ``channels_I`` inhibitory channels on a periodic 1-D/2-D
map; its recurrent kernels are real convolutions (Dale's law on the kernel signs), it
runs ``steps`` Euler steps, and it receives a feedforward convolution (``kernel_size``,
``stride``) of the previous area's E channels (of the data for the first area). The
map of area ``a`` is the previous map divided by ``stride`` (same padding).
"""

from __future__ import annotations

from pydantic import Field, model_validator

from cortex_resnet.core.specbase import Frozen
from cortex_resnet.errors import SpecError

__all__ = ["ConvAreaSpec", "area_sizes", "check_areas"]


class ConvAreaSpec(Frozen):
    """One area of a conv circuit chain (module docstring)."""

    channels_E: int = Field(ge=1, le=4096)
    channels_I: int = Field(ge=1, le=4096)
    steps: int = Field(default=2, ge=1, le=1000)
    stride: int = Field(default=1, ge=1, le=16)
    kernel_size: int = Field(default=3, ge=1, le=31)

    @model_validator(mode="after")
    def _odd(self) -> "ConvAreaSpec":
        if self.kernel_size % 2 == 0:
            raise SpecError("kernel_size", self.kernel_size, "an odd size ('same' padding)")
        return self


def area_sizes(in_sizes: tuple[int, ...], areas: list[ConvAreaSpec]) -> list[tuple[int, ...]]:
    """Map size of each area: ``L_a = floor((L_{a-1} - 1) / stride_a) + 1`` per axis (same padding;
    at least one site)."""
    out, sizes = [], tuple(int(s) for s in in_sizes)
    for a in areas:
        sizes = tuple((s - 1) // a.stride + 1 for s in sizes)
        out.append(sizes)
    return out


def check_areas(model: object) -> None:
    """Consistency of a circuit model's chain of areas (``model.areas``) with its other fields.

    Raises
    ------
    SpecError
        Areas without ``recurrence = "conv"`` or ``input_projection = "conv"``, or ``steps``
        different from the sum of the areas' steps.
    """
    areas = getattr(model, "areas")
    if not areas:
        return
    if getattr(model, "recurrence") != "conv":
        raise SpecError("model.recurrence", getattr(model, "recurrence"), "'conv' for a chain of conv areas")
    if getattr(model, "input_projection") != "conv":
        raise SpecError("model.input_projection", getattr(model, "input_projection"),
                        "'conv' for a chain of conv areas")
    total = sum(a.steps for a in areas)
    if getattr(model, "steps") != total:
        raise SpecError("model.steps", getattr(model, "steps"), f"the sum of the areas' steps, {total}")
