"""Shared CLI plumbing: exit codes, error reporting, JSON output, progress.

Exit codes: 0 success, 1 failure at run time, 2 bad input (a spec field, an
option, a file). Errors print one line ``error: ...`` on stderr naming the
field, the value and what is allowed; no traceback for user errors.
"""

from __future__ import annotations

import functools
import json
import sys
import traceback
from pathlib import Path
from typing import Any, Callable, TypeVar

import numpy as np
import typer

from ..errors import SimulationError, SpecError

__all__ = ["EXIT_OK", "EXIT_FAILURE", "EXIT_BAD_INPUT", "handle_errors", "emit_json", "to_jsonable",
           "check_out_path"]

EXIT_OK, EXIT_FAILURE, EXIT_BAD_INPUT = 0, 1, 2
F = TypeVar("F", bound=Callable[..., Any])


def _fail(code: int, message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def handle_errors(fn: F) -> F:
    """Map exceptions to exit codes and one-line messages (tracebacks only for bugs)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except typer.Exit:
            raise
        except SpecError as err:
            _fail(EXIT_BAD_INPUT, str(err))
        except SimulationError as err:
            _fail(EXIT_FAILURE, str(err))
        except KeyboardInterrupt:
            typer.echo("\ninterrupted: no partial output was written (results are written "
                       "atomically); rerun the same command to start again, or with --resume "
                       "where the command has it.", err=True)
            raise typer.Exit(130)
        except (ValueError, TypeError) as err:
            # our own code raises SpecError for user input; anything else of this kind
            # is still most likely bad input reaching a library.
            _fail(EXIT_BAD_INPUT, f"{type(err).__name__}: {err}")
        except MemoryError:
            _fail(EXIT_FAILURE, "out of memory: reduce the batch, the recorded steps "
                  "(--record-stride) or the circuit size")
        except Exception as err:  # a bug: show it
            traceback.print_exc()
            _fail(EXIT_FAILURE, f"internal error ({type(err).__name__}: {err}); please report it")

    return wrapper  # type: ignore[return-value]


def to_jsonable(obj: Any) -> Any:
    """Convert NumPy/torch scalars and arrays, paths and NaN to JSON-safe values."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, (np.bool_,)):
        return bool(obj)
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        f = float(obj)
        return f if np.isfinite(f) else None
    if hasattr(obj, "item") and callable(obj.item):
        return to_jsonable(obj.item())
    return obj


def emit_json(summary: dict[str, Any]) -> None:
    """Print a machine-readable summary on stdout (the documented contract)."""
    sys.stdout.write(json.dumps(to_jsonable(summary), indent=2, sort_keys=False) + "\n")
    sys.stdout.flush()


def check_out_path(path: Path | None, option: str = "--out") -> Path | None:
    """Validate an output file path before any work is done."""
    if path is None:
        return None
    if path.is_dir():
        raise SpecError(option, str(path), "a file path, not a directory")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise SpecError(option, str(path), f"a path in an existing directory ({parent} does not exist)")
    return path
