"""Spike trains of a spiking run in neo's standard form (NIX or pickle files), for elephant and friends.

    from cortex_resnet.io.spikes import save_spikes, load_spikes
    save_spikes(ds, "run.nix")            # ds from simulate_spiking (or a spiking result file)
    block = load_spikes("run.nix")        # a neo.Block; or neo.io.NixIO("run.nix", "ro").read_block()

Layout of the :class:`neo.Block` (name: the circuit's name):

* one :class:`neo.Segment` per stimulus of the batch (``annotations["batch"]``) holding one
  :class:`neo.SpikeTrain` per population (``"E"``, ``"I"``; annotation ``population``), times in ms,
  ``t_start = 0 ms``, ``t_stop`` = the run's duration, sorted by time, with the array annotations
  ``neuron`` (index within the replica) and ``unit`` (rate unit = pool) per spike and the
  annotations ``neurons`` (the population's neuron indices) and ``pool_size``. One train per
  population, not per neuron: NIX stores each train as its own HDF5 objects (measured: ~0.1 s per
  train, 3 min for a 1600-neuron run); :func:`per_neuron` splits them for elephant;
* block annotations: ``seed``, ``graph_seed``, ``dt_ms``, ``duration_ms``, ``pool_size``,
  ``circuit``, ``backend``, ``spec`` (the full circuit spec, JSON), ``versions`` (JSON) and
  ``written_by``.

**Formats.** ``.nix`` (neo's NixIO: HDF5 through the pure-Python ``nixio`` package on top of
``h5py``, which the project already needs -- no extra binary dependency, readable from MATLAB and
other languages) or ``.pkl`` (neo's PickleIO: no dependency at all, but pickles run code when loaded:
only for files you wrote). NWB is not offered: ``pynwb`` pulls hdmf, jsonschema and ruamel, and
NWB's units table wants electrode metadata a simulation does not have.

Requires the ``interop`` extra (``pip install cortex-resnet[interop]``: neo, quantities, nixio).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from cortex_resnet.errors import SpecError
from cortex_resnet.io.results import atomic_path

__all__ = ["SPIKE_SUFFIXES", "check_spikes_path", "load_spikes", "per_neuron", "save_spikes", "spikes_block"]

SPIKE_SUFFIXES = (".nix", ".pkl")
WRITTEN_BY = "cortex-resnet (cortex_resnet.io.spikes)"


def _neo() -> tuple[Any, Any]:
    try:  # deferred: an optional dependency (the interop extra), imported only when spikes are written
        import neo
        import quantities as pq
    except ImportError:
        raise SpecError("--spikes-out", "given", "the interop extra installed (pip install "
                        "'cortex-resnet[interop]': neo, quantities, nixio)") from None
    return neo, pq


def check_spikes_path(path: Path | None, field: str = "--spikes-out") -> None:
    """SpecError naming ``field`` for a suffix other than ``.nix``/``.pkl`` (checked before a run)."""
    if path is not None and Path(path).suffix.lower() not in SPIKE_SUFFIXES:
        raise SpecError(field, str(path), "a file ending in .nix (neo NixIO, HDF5) or .pkl (neo PickleIO)")


def spikes_block(ds: xr.Dataset) -> Any:
    """The spikes of a spiking result Dataset as a :class:`neo.Block` (module docstring).

    Raises
    ------
    SpecError
        The Dataset has no spikes (not a spiking run, or ``spiking.monitor.spikes = false``).
    """
    neo, pq = _neo()
    need = ("spike_time_ms", "spike_neuron", "spike_unit", "spike_batch")
    if any(v not in ds.variables for v in need) or "pool_size" not in ds.attrs:
        raise SpecError("result", "without spike variables", "a spiking run with spiking.monitor.spikes = true")
    pool = int(ds.attrs["pool_size"])
    pops = ds["population"].values.astype(str)
    t_stop = float(ds.attrs["duration_ms"])
    t = ds["spike_time_ms"].values
    i = ds["spike_neuron"].values.astype(np.int64)
    b = ds["spike_batch"].values.astype(np.int64)
    if i.size and int(i.max()) >= pops.size * pool:
        raise SpecError("result", f"neuron index {int(i.max())}", f"< n_units x pool_size = {pops.size * pool}")
    block = neo.Block(name=str(ds.attrs.get("circuit", "circuit")), file_origin=WRITTEN_BY)
    block.annotate(written_by=WRITTEN_BY, **{k: _plain(ds.attrs[k]) for k in
                                             ("seed", "graph_seed", "dt_ms", "duration_ms", "pool_size",
                                              "circuit", "backend", "spec", "versions") if k in ds.attrs})
    is_E = np.repeat(pops == "E", pool)
    for r in range(ds.sizes["batch"]):
        seg = neo.Segment(name=f"stimulus {r}", index=r)
        seg.annotate(batch=r)
        mine = b == r
        for pop in ("E", "I"):
            members = np.where(is_E == (pop == "E"))[0]
            if members.size == 0:
                continue
            sel = mine & (is_E[i] == (pop == "E"))
            order = np.argsort(t[sel], kind="stable")
            st = neo.SpikeTrain(t[sel][order] * pq.ms, t_start=0.0 * pq.ms, t_stop=t_stop * pq.ms, name=pop,
                                array_annotations={"neuron": i[sel][order], "unit": i[sel][order] // pool})
            st.annotate(population=pop, batch=r, neurons=members.tolist(), pool_size=pool)
            seg.spiketrains.append(st)
        block.segments.append(seg)
    return block


def _plain(v: Any) -> Any:
    """An attribute as a str/int/float NIX can store."""
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating,)):
        return float(v)
    return v if isinstance(v, (str, int, float)) else json.dumps(v)


def save_spikes(ds: xr.Dataset, path: str | Path) -> Path:
    """Write the spikes of ``ds`` to ``path`` (``.nix`` or ``.pkl``), atomically; returns the path.

    Like every result file it never replaces a file a cortex-resnet command did not write
    (:func:`cortex_resnet.io.results.atomic_path`; the command line checks ``--force`` first).
    """
    path = Path(path)
    check_spikes_path(path, "path")
    block = spikes_block(ds)
    neo, _ = _neo()
    with atomic_path(path) as tmp:
        if path.suffix.lower() == ".nix":
            io = neo.io.NixIO(str(tmp), mode="ow")
            try:
                io.write_block(block)
            finally:
                io.close()
        else:
            neo.io.PickleIO(str(tmp)).write_block(block)
    return path


def load_spikes(path: str | Path) -> Any:
    """Read a file written by :func:`save_spikes` back as a :class:`neo.Block` (fully in memory)."""
    path = Path(path)
    check_spikes_path(path, "path")
    if not path.is_file():
        raise SpecError("path", str(path), "an existing .nix or .pkl spike file")
    neo, _ = _neo()
    if path.suffix.lower() == ".pkl":
        return neo.io.PickleIO(str(path)).read_block()
    io = neo.io.NixIO(str(path), mode="ro")
    try:
        return io.read_block()
    finally:
        io.close()


def per_neuron(train: Any) -> list[Any]:
    """Split a population train of :func:`spikes_block` into one :class:`neo.SpikeTrain` per neuron
    (in the order of its ``neurons`` annotation; silent neurons get empty trains), as elephant's
    per-neuron statistics want them."""
    neo, pq = _neo()
    ids = np.asarray(train.array_annotations["neuron"], np.int64)
    t = train.rescale("ms").magnitude
    out = []
    for k in train.annotations["neurons"]:
        st = neo.SpikeTrain(t[ids == k] * pq.ms, t_start=train.t_start, t_stop=train.t_stop, name=f"neuron {k}")
        st.annotate(neuron=int(k), population=train.annotations["population"])
        out.append(st)
    return out
