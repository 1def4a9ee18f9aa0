"""The ``cortex-resnet`` command line (typer).

Each sub-command lives in its own module of this package and registers itself
on :data:`app`; the modules are listed in :data:`COMMAND_MODULES`.
"""

from __future__ import annotations

import importlib
import platform
import sys
from importlib import metadata

from cortex_resnet import __version__, _startup

try:
    import typer
except KeyboardInterrupt:  # only if a library replaced our SIGINT handler (cortex_resnet._startup)
    _startup.exit_if_cli()
    raise

__all__ = ["app", "main", "COMMAND_MODULES", "version_text"]

app = typer.Typer(
    name="cortex-resnet",
    help="Cortical circuits as residual networks: simulate (rate/spiking), unroll, train, "
         "compare, test hypotheses. Every command has --help with an example.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# the libraries whose versions determine the numbers (shown by --version)
VERSION_LIBRARIES = ("torch", "brian2", "numpy")


def version_text() -> str:
    """``cortex-resnet X.Y.Z`` and the versions of Python, torch, brian2 and numpy."""
    parts = [f"python {platform.python_version()}"]
    for lib in VERSION_LIBRARIES:
        try:
            parts.append(f"{lib} {metadata.version(lib)}")
        except metadata.PackageNotFoundError:
            parts.append(f"{lib} not installed")
    return f"cortex-resnet {__version__}\n" + ", ".join(parts)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(version_text())
        raise typer.Exit(0)


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", is_eager=True, callback=_print_version,
                                 help="Print the versions of cortex-resnet, Python, torch, brian2, numpy; exit."),
) -> None:
    """cortex-resnet: cortical circuits as residual networks."""


# One module per command group; each defines register(app).
COMMAND_MODULES = [
    "simulate",
    "bench",
    "info",
    "figures",
    "train",
    "compare",
    "unroll",
    "hypothesis",
    "demo",
    "sweep",
    "schema",
    "export",
]

try:
    for _name in COMMAND_MODULES:
        importlib.import_module(f"{__name__}.{_name}").register(app)
except KeyboardInterrupt:  # as above: a library's handler raised it during the imports
    _startup.exit_if_cli()
    raise


def main() -> None:
    """Console-script entry point: Ctrl-C at any moment exits 130 without a traceback."""
    _startup.install()  # already done at package import when run as the command; idempotent
    import matplotlib  # the command line only writes figure files: no GUI backend (library

    matplotlib.use("Agg")  # users keep theirs; cortex_resnet.plots.base never chooses one)
    try:
        app()
    except KeyboardInterrupt:  # raised outside a command (a handler installed by a library)
        sys.stderr.write(_startup.MESSAGE)
        raise SystemExit(_startup.EXIT_INTERRUPTED) from None
