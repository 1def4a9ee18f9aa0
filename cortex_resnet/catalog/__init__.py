"""The bundled model and experiment files, shipped as package data.

``models/`` (circuit model files), ``experiments/`` (training experiments,
``experiments/circuits/`` and ``experiments/hypotheses/``) live in this
package so that an installed ``cortex-resnet`` (``pip install .``, not
editable) finds them from any working directory. The repository root has
relative symlinks ``models`` and ``experiments`` to these folders, so paths
such as ``models/isn.toml`` typed in a checkout keep working.

Lookups go through :mod:`importlib.resources`; the package must be installed
as files on disk (a zipped install is not supported: the simulators read the
files by path, and experiment files name circuit files relative to themselves).
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

__all__ = ["catalog_root", "models_dir", "experiments_dir", "bundled_file", "find_model_file",
           "find_experiment_file"]


def catalog_root() -> Path:
    """The folder holding ``models/`` and ``experiments/`` (inside the installed package)."""
    root = Path(str(files(__name__)))
    if not (root / "models").is_dir():  # e.g. a zipped install: importlib gives no real folder
        raise FileNotFoundError(f"the bundled model files are missing under {root}; "
                                "reinstall cortex-resnet (pip install .) as files on disk")
    return root


def models_dir() -> Path:
    """The bundled circuit model files (``canonical_microcircuit.toml``, ``isn.toml``, ...)."""
    return catalog_root() / "models"


def experiments_dir() -> Path:
    """The bundled experiment files (``mnist1d_tied.toml``, ``hypotheses/*.toml``, ...)."""
    return catalog_root() / "experiments"


def bundled_file(relative: str | Path) -> Path | None:
    """``models/x.toml`` or ``experiments/y.toml`` inside the package, or None if absent.

    Parameters
    ----------
    relative : a path relative to the catalog root, as written in the repository
        (``models/isn.toml``, ``experiments/circuits/ei_dense.toml``).
    """
    p = Path(relative)
    if p.is_absolute() or ".." in p.parts:
        return None
    cand = catalog_root() / p
    return cand if cand.is_file() else None


def _find(name: str | Path, folder: str) -> Path:
    p = Path(name).expanduser()
    if p.is_file() or p.is_absolute():
        return p
    candidates = [p, Path(folder) / p]
    if p.suffix == "" and len(p.parts) == 1:  # a bare name: canonical_microcircuit
        candidates.append(Path(folder) / f"{p.name}.toml")
    for cand in candidates:
        found = bundled_file(cand)
        if found is not None:
            return found
    return p


def find_model_file(name: str | Path) -> Path:
    """A circuit model file: a path as given, else a bundled model by name or path.

    ``canonical_microcircuit``, ``canonical_microcircuit.toml`` and
    ``models/canonical_microcircuit.toml`` all find the bundled file when the
    working directory has no such file. A name that matches nothing is returned
    unchanged, so the caller's "no such file" error names what the user typed.
    """
    return _find(name, "models")


def find_experiment_file(name: str | Path) -> Path:
    """An experiment file: a path as given, else a bundled one (``mnist1d_tied``,
    ``experiments/mnist1d_tied.toml``); unchanged when nothing matches."""
    return _find(name, "experiments")
