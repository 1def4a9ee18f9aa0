"""The ``cortex-resnet`` command line (typer).

Each sub-command lives in its own module of this package and registers itself
on :data:`app`; the modules are listed in :data:`COMMAND_MODULES`.
"""

from __future__ import annotations

import importlib

import typer

__all__ = ["app", "main", "COMMAND_MODULES"]

app = typer.Typer(
    name="cortex-resnet",
    help="Cortical circuits as residual networks: simulate (rate/spiking), unroll, train, "
         "compare, test hypotheses. Every command has --help with an example.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)



@app.callback()
def _root() -> None:
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
]

for _name in COMMAND_MODULES:
    importlib.import_module(f"{__name__}.{_name}").register(app)


def main() -> None:
    """Console-script entry point."""
    import matplotlib  # the command line only writes figure files: no GUI backend (library
    matplotlib.use("Agg")  # users keep theirs; cortex_resnet.plots never chooses one)
    app()
