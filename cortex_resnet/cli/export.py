"""``cortex-resnet export``: a circuit (model file or trained run folder) as a NIR graph."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from cortex_resnet.cli._common import (
    FORCE_HELP,
    check_out_path,
    emit_json,
    handle_errors,
)
from cortex_resnet.errors import SpecError

__all__ = ["FORMATS", "register"]

FORMATS = ("nir",)
EXAMPLE = ("Example:\n\n  cortex-resnet export runs/mnist1d_tied --format nir --out tied.nir\n\n"
           "  cortex-resnet export models/lif_ei.toml --format nir --out lif_ei.nir --drop-delays")


def register(app: typer.Typer) -> None:
    @app.command(help="Export a circuit's spiking network (a model file or a `cortex-resnet train` run "
                      "folder) as a NIR graph for snnTorch, Norse, Lava, SpiNNaker, ...: LIF neurons for delta "
                      "synapses, CubaLIF for exponential current synapses (tau_e_ms = tau_i_ms -> tau_syn). What "
                      "is approximated is listed in the graph's metadata.\n\n" + EXAMPLE)
    @handle_errors
    def export(
        source: Path = typer.Argument(..., help="Model file (TOML) or a finished `cortex-resnet train` run folder."),
        format: str = typer.Option("nir", "--format", help="Output format: " + ", ".join(FORMATS) + "."),
        out: Path = typer.Option(..., help="Output file (.nir), written atomically; an existing file is "
                                 "replaced only with --force."),
        drop_delays: bool = typer.Option(False, "--drop-delays", help="Leave the synaptic delay out (for "
                                         "consumers without NIR's Delay node, e.g. snnTorch): an approximation."),
        data_dir: Path | None = typer.Option(None, help="Run folders: where the dataset is (for the "
                                                "operating input of the gain scaling)."),
        force: bool = typer.Option(False, "--force", help=FORCE_HELP),
        json_out: bool = typer.Option(False, "--json", help="Print a JSON summary on stdout."),
    ) -> None:
        from cortex_resnet.workflows.export import to_nir, write_nir  # deferred: nir and the torch stack (--help fast)

        if format not in FORMATS:
            raise SpecError("--format", format, f"one of {', '.join(FORMATS)}")
        if not source.exists():
            raise SpecError("RUN_OR_MODEL", str(source), "an existing model file (.toml) or run folder")
        check_out_path(out, suffixes=(".nir",), force=force)
        graph = to_nir(source, drop_delays=drop_delays, data_dir=data_dir)
        write_nir(graph, out)
        lif = graph.nodes["lif"]
        summary = {"out": str(out), "format": format, "neurons": int(lif.v_threshold.size),
                   "neuron_type": type(lif).__name__, "tau_syn_ms": float(graph.metadata["tau_syn_ms"]),
                   "nodes": sorted(graph.nodes), "approximated": json.loads(graph.metadata["approximated"])}
        if json_out:
            emit_json(summary)
        else:
            typer.echo(f"wrote {out}: NIR graph of {summary['neurons']} {summary['neuron_type']} neurons, "
                       f"nodes {', '.join(summary['nodes'])}")
