"""Result files (:mod:`cortex_resnet.io.results`): netCDF round trip, attributes, atomic writes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr

from cortex_resnet.model.circuit import build_circuit
from cortex_resnet.errors import SpecError
from cortex_resnet.rate.simulator import simulate
from cortex_resnet.io.results import (atomic_path, atomic_write_text, library_versions, load_dataset,
                                   population_mean, require_vars, save_dataset)
from cortex_resnet.model.spec import parse_spec

from tests import problems as P


@pytest.fixture(scope="module")
def result():
    circuit = build_circuit(P.noisy_spec())
    ds = simulate(circuit, "step:amp=[0.5,1.0],onset_ms=2", duration_ms=5.0, dt_ms=0.1, device="cpu",
                  seed=9, record_stride=5)
    return circuit, ds


def test_layout(result):
    circuit, ds = result
    assert ds["r"].dims == ("time", "batch", "unit")
    assert ds["u"].dims == ("time", "batch", "input")
    assert set(ds.data_vars) == {"r", "x", "Fx", "u"}
    assert ds.sizes == {"time": 11, "batch": 2, "unit": circuit.n_units, "input": circuit.n_inputs}
    assert list(ds["population"].values) == list(circuit.population)
    assert ds["time"].attrs["units"] == "ms"
    np.testing.assert_allclose(ds["time"].values, np.arange(11) * 0.5, atol=1e-12)


def test_netcdf_round_trip_is_exact(result, tmp_path):
    _, ds = result
    path = save_dataset(ds, tmp_path / "run.nc")
    back = load_dataset(path)
    xr.testing.assert_identical(back, ds)
    assert [p.name for p in tmp_path.iterdir()] == ["run.nc"]  # no temporary left behind


def test_attributes_carry_spec_seed_versions(result, tmp_path):
    circuit, ds = result
    back = load_dataset(save_dataset(ds, tmp_path / "run.nc"))
    assert parse_spec(json.loads(back.attrs["spec"])) == circuit.spec
    assert int(back.attrs["seed"]) == 9
    assert back.attrs["backend"] == "rate"
    versions = json.loads(back.attrs["versions"])
    assert versions == library_versions()
    assert {"python", "numpy", "torch", "cortex-resnet"} <= set(versions)
    assert back.attrs["method"] == "euler" and float(back.attrs["dt_ms"]) == 0.1


def test_failed_write_leaves_no_file(result, tmp_path):
    """A dataset that cannot be serialised (an object-dtype variable) fails mid-write: neither the
    target nor a temporary may remain."""
    _, ds = result
    bad = ds.assign(junk=(("batch",), np.array([{"a": 1}, None], dtype=object)))
    with pytest.raises(Exception):
        save_dataset(bad, tmp_path / "run.nc")
    assert list(tmp_path.iterdir()) == []


def test_failed_write_keeps_the_previous_file(tmp_path):
    path = tmp_path / "summary.json"
    atomic_write_text(path, "old")
    with pytest.raises(RuntimeError):
        with atomic_path(path) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]


@pytest.mark.parametrize("make", ["directory", "missing_parent"])
def test_bad_output_path(tmp_path, make):
    target = tmp_path if make == "directory" else tmp_path / "nope" / "run.nc"
    with pytest.raises(SpecError) as info:
        atomic_write_text(target, "x")
    assert info.value.field == "out"


def test_load_errors(tmp_path):
    with pytest.raises(SpecError):
        load_dataset(tmp_path / "missing.nc")
    junk = tmp_path / "junk.nc"
    junk.write_bytes(b"not a netcdf file")
    with pytest.raises(SpecError) as info:
        load_dataset(junk)
    assert info.value.field == "result"


def test_population_mean_and_require_vars(result):
    """Mean over the last half of the records, per population, against a direct NumPy mean."""
    circuit, ds = result
    means = population_mean(ds, "r")
    r = ds["r"].values
    last = ds["time"].values >= ds["time"].values[-1] / 2
    assert means["E"] == pytest.approx(r[last][:, :, circuit.is_E].mean(), rel=1e-12)
    assert means["I"] == pytest.approx(r[last][:, :, ~circuit.is_E].mean(), rel=1e-12)
    with pytest.raises(SpecError) as info:
        require_vars(ds.drop_vars(["x", "Fx"]), ["x"], "the decomposition plot")
    assert "decompose" in str(info.value)
