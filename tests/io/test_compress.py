"""``save_dataset(..., compress=True)`` / ``simulate --compress``: float32 + gzip, values to float32 precision."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cortex_resnet import load_model
from cortex_resnet.io.results import load_dataset, save_dataset
from cortex_resnet.rate.simulator import simulate


def test_compressed_file_is_smaller_and_equal_to_float32_precision(tmp_path):
    c = load_model(Path(__file__).resolve().parents[2] / "models" / "linear.toml")
    ds = simulate(c, "step:amp=1.0,onset_ms=5", duration_ms=200.0, dt_ms=0.1)
    save_dataset(ds, tmp_path / "a.nc")
    save_dataset(ds, tmp_path / "b.nc", compress=True)
    a, b = load_dataset(tmp_path / "a.nc"), load_dataset(tmp_path / "b.nc")
    assert (tmp_path / "b.nc").stat().st_size < 0.6 * (tmp_path / "a.nc").stat().st_size
    for v in a.data_vars:
        if a[v].dtype == np.float64:
            assert b[v].dtype == np.float32
            # float32 rounding: relative error <= 2^-24 of each value
            np.testing.assert_allclose(b[v].values, a[v].values, rtol=2**-24, atol=0)
    np.testing.assert_array_equal(b["time"].values, a["time"].values)  # coordinates untouched
    assert b.attrs["spec"] == a.attrs["spec"]
