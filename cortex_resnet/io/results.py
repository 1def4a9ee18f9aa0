"""Result files: xarray Datasets written as netCDF, atomically.

Layout of a trajectory result (both backends):

* dims ``time`` (ms), ``batch`` (stimulus index), ``unit``, ``input``;
  coordinate ``population`` on ``unit``: each unit's population name (``"E"``/``"I"``
  for a two-population circuit); circuits of other named populations add
  ``cell_type`` (``"E"``/``"I"``, Dale's sign);
* variables ``r`` (rates), ``x`` (input-driven part: the same run with
  recurrence removed), ``Fx = r - x`` (what recurrence adds), ``u`` (stimulus);
* attributes: ``spec`` (full circuit spec, JSON), ``seed``, ``backend``,
  ``versions`` (JSON: python, numpy, torch, brian2, xarray, cortex_resnet),
  and whatever the backend adds (``method``, ``dt_ms``, ...). No timestamps or
  wall times are stored: the same command with the same seed writes a
  byte-identical file.

Files are written to a temporary file beside the target and renamed, so a
killed run never leaves a half-written result; they get the permissions of the
user's umask and never replace a file a command did not write
(:mod:`cortex_resnet.io.outdir`).
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import platform
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
import xarray as xr

from cortex_resnet.model.circuit import Circuit
from cortex_resnet.errors import SpecError
from cortex_resnet.io.outdir import file_mode, guard_write, record_write

__all__ = ["library_versions", "trajectory_dataset", "save_dataset", "load_dataset",
           "atomic_path", "atomic_write_text", "require_vars"]


def library_versions() -> dict[str, str]:
    """Versions of Python and the libraries that determine the numbers."""
    out = {"python": platform.python_version()}
    for pkg in ("cortex-resnet", "numpy", "torch", "brian2", "scipy", "xarray", "torchdiffeq"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def _np(a: torch.Tensor | np.ndarray) -> np.ndarray:
    return a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)


def trajectory_dataset(circuit: Circuit, times_ms: np.ndarray, r: torch.Tensor | np.ndarray,
                       x: torch.Tensor | np.ndarray | None, u: torch.Tensor | np.ndarray,
                       *, backend: str, attrs: dict[str, Any] | None = None) -> xr.Dataset:
    """Assemble the standard result Dataset (see module docstring).

    ``Fx`` is computed here as ``r - x``, so ``r == x + Fx`` up to one rounding.
    """
    r_np = _np(r)
    units = circuit.rate_units
    coords = {
        "time": ("time", np.asarray(times_ms, dtype=np.float64), {"units": "ms"}),
        "batch": np.arange(r_np.shape[1]),
        "unit": np.arange(r_np.shape[2]),
        "population": ("unit", circuit.unit_population.astype(str)),
    }
    if not np.array_equal(circuit.unit_population, circuit.population):  # named populations: Dale labels too
        coords["cell_type"] = ("unit", circuit.population.astype(str))
    data = {"r": (("time", "batch", "unit"), r_np, {"units": units, "long_name": "rate r(t)"}),
            "u": (("time", "batch", "input"), _np(u), {"long_name": "stimulus u(t)"})}
    if x is not None:
        x_np = _np(x)
        data["x"] = (("time", "batch", "unit"), x_np,
                     {"units": units, "long_name": "input-driven part x(t) (recurrence removed)"})
        data["Fx"] = (("time", "batch", "unit"), r_np - x_np,
                      {"units": units, "long_name": "recurrent part F(x)(t) = r(t) - x(t)"})
    base = {
        "title": f"cortex_resnet {backend} simulation of {circuit.spec.name}",
        "backend": backend,
        "circuit": circuit.spec.name,
        "spec": circuit.spec.to_json(),
        "seed": int(circuit.spec.seed),
        "versions": json.dumps(library_versions(), sort_keys=True),
        "rate_units": units,
        "hz_per_unit": json.dumps(circuit.hz_per_unit),  # r * hz_per_unit[population] is in Hz
    }
    for k, v in (attrs or {}).items():
        base[k] = v if isinstance(v, (str, int, float, np.integer, np.floating)) else json.dumps(v)
    return xr.Dataset(data, coords=coords, attrs=base)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_stale_temporaries(path: Path) -> None:
    """Delete temporaries of ``path`` left by killed writers (their PID is gone)."""
    parent = path.parent if str(path.parent) else Path(".")
    for tmp in parent.glob(f".{glob_escape(path.name)}.*.tmp"):
        parts = tmp.name[len(path.name) + 2:].split(".")
        if parts and parts[0].isdigit() and not _pid_alive(int(parts[0])):
            with contextlib.suppress(OSError):
                tmp.unlink()


def glob_escape(name: str) -> str:
    return glob.escape(name)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only on success.

    The temporary is named ``.NAME.PID.<random>.tmp``; one left by a killed writer
    (``kill -9``) is removed by the next write to the same path. The file gets the
    permissions of the user's umask (0644 under umask 022). Inside a folder claimed
    with :func:`cortex_resnet.io.outdir.claim_folder`, a file that was there before and
    not written by the command is never replaced, and each written file is added to
    the folder's manifest.
    """
    path = Path(path)
    if path.exists() and path.is_dir():
        raise SpecError("out", str(path), "a file path, not a directory")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise SpecError("out", str(path), f"a path in an existing directory ({parent} does not exist)")
    guard_write(path)
    _remove_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, file_mode())  # mkstemp makes 0600; a result follows the umask
        os.replace(tmp_path, path)
        record_write(path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write a text file atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def save_dataset(ds: xr.Dataset, path: str | Path, *, compress: bool = False) -> Path:
    """Write a result Dataset as netCDF (h5netcdf), atomically. Returns the path.

    ``compress``: float64 data variables stored as float32 (7 significant digits; rates, potentials
    and stimuli need no more) with gzip level 4 and byte shuffling; coordinates stay as they are.
    Readers see float32 arrays; netCDF/HDF5 tools read them without anything special.
    """
    path = Path(path)
    encoding = {name: {"dtype": "float32", "zlib": True, "complevel": 4, "shuffle": True}
                for name, var in ds.data_vars.items() if compress and var.dtype == np.float64} or None
    with atomic_path(path) as tmp:
        ds.to_netcdf(tmp, engine="h5netcdf", encoding=encoding)
    return path


def load_dataset(path: str | Path) -> xr.Dataset:
    """Load a result file fully into memory (the file is closed afterwards)."""
    path = Path(path)
    if not path.is_file():
        raise SpecError("result", str(path), "an existing netCDF result file")
    try:
        with xr.open_dataset(path, engine="h5netcdf") as ds:
            return ds.load()
    except (OSError, ValueError) as err:
        raise SpecError("result", str(path), f"a readable netCDF result file ({err})") from None


def require_vars(ds: xr.Dataset, names: list[str], what: str) -> None:
    """Raise a clear error when a result lacks variables a plot or analysis needs."""
    missing = [n for n in names if n not in ds.variables]
    if missing:
        raise SpecError("result", f"variables {sorted(ds.data_vars)}",
                        f"{what} needs {', '.join(missing)} (was the run made with decompose off?)")


def population_names(ds: xr.Dataset) -> list[str]:
    """The populations of a result in unit order (``["E", "I"]`` for a two-population circuit)."""
    names = [str(p) for p in ds["population"].values]
    return list(dict.fromkeys(names)) or ["E", "I"]


def population_mean(ds: xr.Dataset, var: str = "r", *, last_fraction: float = 0.5) -> dict[str, float]:
    """Mean of ``var`` per population over the last ``last_fraction`` of the run (all stimuli)."""
    require_vars(ds, [var], f"the mean of {var}")
    t = ds["time"].values
    t_start = t[0] + (1 - last_fraction) * (t[-1] - t[0])
    window = ds[var].sel(time=slice(t_start, None))
    out = {}
    for pop in population_names(ds):
        sel = window.where(ds["population"] == pop, drop=True)
        out[pop] = float(sel.mean()) if sel.size else float("nan")
    return out
