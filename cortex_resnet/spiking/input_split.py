"""A constant part of the drive given as a current while the rest is Poisson-coded.

``[spiking.input] dc_mV = {POP = mV}`` (``mode = "poisson"`` only): that much of each named
population's feedforward drive (mV of mean depolarisation, e.g. the DC compensation of a
downscaled network: NEST's microcircuit example gives it as ``I_e`` while the background stays
Poisson) enters as a constant current; the remainder is Poisson-coded. The mean input is
unchanged; the input variance is that of the Poisson part only.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from cortex_resnet.errors import SpecError
from cortex_resnet.model.circuit import Circuit
from cortex_resnet.model.spiking_spec import SpikingSpec
from cortex_resnet.spiking.mapping import Mapping

__all__ = ["dc_per_unit", "split_dc"]


def dc_per_unit(circuit: Circuit, sspec: SpikingSpec) -> np.ndarray:
    """(N,) the ``dc_mV`` of each rate unit's population (0 where none is given)."""
    dc = np.zeros(circuit.n_units)
    table = sspec.input.dc_mV
    if table and sspec.input.mode != "poisson":
        raise SpecError("spiking.input.dc_mV", dict(table), "only with mode = 'poisson' (a current input "
                        "is a current already)")
    for name, value in table.items():
        if name not in circuit.layout:
            raise SpecError("spiking.input.dc_mV", name, f"a population name: {', '.join(circuit.layout)}")
        dc[circuit.layout[name]] = value
    return dc


def split_dc(circuit: Circuit, sspec: SpikingSpec, mapping: Mapping, drive: np.ndarray) -> tuple[Mapping, np.ndarray]:
    """The mapping with ``dc_mV`` added to its DC and the drive (T, B, N) with it removed."""
    dc = dc_per_unit(circuit, sspec)
    if not np.any(dc):
        return mapping, drive
    return dataclasses.replace(mapping, dc_unit=mapping.dc_unit + dc), drive - dc
