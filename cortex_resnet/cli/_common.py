"""Shared CLI plumbing: exit codes, error reporting, JSON output, progress.

Exit codes: 0 success, 1 failure at run time (or a bug: "internal error", with
its traceback in a log file, or on stderr with ``CORTEX_RESNET_DEBUG=1``),
2 bad input (a spec field, an option, a file); exit 2 means nothing was
written. Errors print one line ``error: ...`` on stderr naming the field, the
value and what is allowed; no traceback for user errors.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import tempfile
import tomllib
import traceback
from pathlib import Path
from typing import Any, Callable, TypeVar

import typer

from cortex_resnet.core.jsonable import to_jsonable
from cortex_resnet.errors import CortexError, SimulationError, SpecError
from cortex_resnet.io.outdir import check_out_file

__all__ = ["EXIT_OK", "EXIT_FAILURE", "EXIT_BAD_INPUT", "handle_errors", "emit_json", "to_jsonable",
           "check_out_path", "FORCE_HELP", "DEBUG_ENV", "parse_set", "parse_grid"]

EXIT_OK, EXIT_FAILURE, EXIT_BAD_INPUT = 0, 1, 2
F = TypeVar("F", bound=Callable[..., Any])


def _fail(code: int, message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


DEBUG_ENV = "CORTEX_RESNET_DEBUG"


def _internal_error(err: BaseException) -> None:
    """An unexpected exception (a bug): say so, and keep its traceback for the report."""
    text = "".join(traceback.format_exception(err))
    if os.environ.get(DEBUG_ENV, "") not in ("", "0"):
        sys.stderr.write(text)
        where = "traceback above"
    else:
        log = Path(tempfile.gettempdir()) / f"cortex-resnet-error-{os.getpid()}.log"
        try:
            log.write_text(" ".join(sys.argv) + "\n" + text, encoding="utf-8")
            where = f"traceback in {log}"
        except OSError:
            sys.stderr.write(text)
            where = "traceback above"
    _fail(EXIT_FAILURE, f"internal error: {type(err).__name__}: {err} ({where}; rerun with "
          f"{DEBUG_ENV}=1 to print it); please report it")


def _os_error(err: OSError) -> None:
    """A file or folder the user named could not be read or written."""
    if err.filename is None:
        _internal_error(err)
    what = err.strerror or type(err).__name__
    _fail(EXIT_BAD_INPUT, f"{err.filename}: {what}")


def handle_errors(fn: F) -> F:
    """Map exceptions to exit codes and one-line messages.

    Bad input (our :class:`SpecError` family, pydantic's ``ValidationError``, a path that
    cannot be read or written) exits 2 with one line; a run-time failure
    (:class:`SimulationError`) exits 1 with one line; anything else is a bug: exit 1 with
    "internal error" and the traceback written to a log file (or shown on stderr with
    ``CORTEX_RESNET_DEBUG=1``).
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from pydantic import ValidationError

        try:
            return fn(*args, **kwargs)
        except typer.Exit:
            raise
        except SpecError as err:
            _fail(EXIT_BAD_INPUT, str(err))
        except SimulationError as err:
            _fail(EXIT_FAILURE, str(err))
        except CortexError as err:
            _fail(EXIT_BAD_INPUT, str(err))
        except ValidationError as err:
            _fail(EXIT_BAD_INPUT, str(err).replace("\n", "; "))
        except KeyboardInterrupt:
            typer.echo("\ninterrupted: no partial output was written (results are written "
                       "atomically); rerun the same command to start again, or with --resume "
                       "where the command has it.", err=True)
            raise typer.Exit(130)
        except MemoryError:
            _fail(EXIT_FAILURE, "out of memory: reduce the batch, the recorded steps "
                  "(--record-stride) or the circuit size")
        except (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError,
                FileExistsError) as err:
            _os_error(err)
        except Exception as err:  # a bug
            _internal_error(err)

    return wrapper  # type: ignore[return-value]


def emit_json(summary: dict[str, Any]) -> None:
    """Print a machine-readable summary on stdout (the documented contract)."""
    sys.stdout.write(json.dumps(to_jsonable(summary), indent=2, sort_keys=False) + "\n")
    sys.stdout.flush()


def check_out_path(path: Path | None, option: str = "--out", *, suffixes: tuple[str, ...] = (),
                   force: bool = False) -> Path | None:
    """Validate an output file path before any work is done (see :func:`outdir.check_out_file`)."""
    return check_out_file(path, option, suffixes=suffixes, force=force)


FORCE_HELP = ("Replace an existing output file that cortex-resnet did not write / write into a "
              "folder beside files it did not write (never replacing or deleting them).")


def _split_assignment(text: str, option: str, example: str) -> tuple[str, str]:
    """``FIELD=VALUE`` -> (field, value text); a missing ``=``, field or value is bad input."""
    key, eq, val = text.partition("=")
    key = key.strip()
    if not eq or not key or not val.strip():
        raise SpecError(option, text, f"FIELD=VALUE, e.g. {example}")
    return key, val


def parse_set(items: list[str], option: str = "--set",
              example: str = "connectivity.J_EE=1.5") -> dict[str, Any]:
    """The one ``FIELD=VALUE`` parser of the CLI: repeated items -> ``{dotted field: value}``.

    Values are TOML scalars or arrays (``1.5``, ``true``, ``"relu"``, ``[1, 2]``); anything else
    is kept as text (``relu``). Used by ``simulate --set`` and ``train --set``.
    """
    changes: dict[str, Any] = {}
    for item in items:
        key, val = _split_assignment(item, option, example)
        try:
            changes[key] = tomllib.loads(f"v = {val}")["v"]
        except tomllib.TOMLDecodeError:
            changes[key] = val.strip()
    return changes


def parse_grid(text: str, option: str = "--param") -> tuple[str, list[Any]]:
    """``FIELD=v1,v2,...`` -> (field, values): TOML scalars (numbers, true/false, "strings"),
    at least one, no repeats (``sweep --param``)."""
    key, vals = _split_assignment(text, option, "connectivity.J_EE=0.5,1.0,2.0")
    try:
        values = tomllib.loads(f"v = [{vals}]")["v"]
    except tomllib.TOMLDecodeError:
        raise SpecError(option, text, "comma-separated numbers, true/false or quoted strings") from None
    if not values or len(set(map(json.dumps, values))) != len(values):
        raise SpecError(option, text, "at least one value, no repeats")
    return key, values
