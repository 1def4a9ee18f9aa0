"""``cortex-resnet bench``: side-by-side performance measurements with ratios and goals."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from cortex_resnet.cli._common import FORCE_HELP, check_out_path, emit_json, handle_errors
from cortex_resnet.bench import known_benches, run_bench
from cortex_resnet.io.results import atomic_write_text
from cortex_resnet.io.outdir import SIGNATURE

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    @app.command(help="Run a benchmark side by side with its reference and print ratios.\n\n"
                      "Example:\n\n  cortex-resnet bench rate --json")
    @handle_errors
    def bench(
        name: str = typer.Argument(..., help="Benchmark name, or 'all'."),
        quick: bool = typer.Option(False, help="Smaller sizes (a smoke test, not the published numbers)."),
        out: Optional[Path] = typer.Option(None, help="Also write the JSON here (.json, atomically; an existing "
                                                      "file is replaced only if cortex-resnet wrote it, else --force)."),
        force: bool = typer.Option(False, "--force", help=FORCE_HELP),
        json_out: bool = typer.Option(False, "--json", help="Print the JSON result on stdout."),
        seed: int = typer.Option(0, help="Seed for the random inputs and weights."),
        scale: Optional[float] = typer.Option(None, help="bench pd14 only: network scale in (0, 1] "
                                                         "(default 0.05; 1 = the full 77,169 neurons)."),
    ) -> None:
        import torch


        check_out_path(out, suffixes=(".json",), force=force)
        torch.manual_seed(seed)  # benches draw their inputs from explicit generators; this is a backstop
        names = known_benches() if name == "all" else [name]
        reports = [run_bench(n, quick=quick, **({"scale": scale} if scale is not None and n == "pd14" else {}))
                   for n in names]
        payload = reports[0] if len(reports) == 1 else {"benches": reports}
        if out is not None:
            atomic_write_text(out, json.dumps({"written_by": f"{SIGNATURE} bench", **payload}, indent=2))
        if json_out:
            emit_json(payload)
            return
        for rep in reports:
            typer.echo(f"bench {rep['bench']}  ({rep['machine']['processor']}, "
                       f"{rep['machine']['torch_threads']} threads)")
            for r in rep["results"]:
                mark = {True: "met", False: "NOT met", None: "info"}[r["met"]]
                typer.echo(f"  {r['name']:<48} {r['value']:>12.4g} {r['unit']:<10} goal {r['goal']:<10} {mark}")
