"""``cortex-resnet demo``: the whole story end to end in a few minutes."""

from __future__ import annotations

from pathlib import Path

import typer

from cortex_resnet.cli._common import FORCE_HELP, emit_json, handle_errors

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    @app.command(help="Run the end-to-end demo: simulate (rate, spiking), unroll and check, train tied "
                      "and untied nets, compare network/rate/spiking, test two hypotheses. Writes "
                      "figures and summary.md into --out.\n\nExample:\n\n  cortex-resnet demo --out demo_out")
    @handle_errors
    def demo(
        out: Path = typer.Option(Path("demo_out"), help="Output folder: new, empty, or one an earlier demo "
                                 "wrote (only the files it wrote are replaced; a folder holding other "
                                 "files is refused)."),
        force: bool = typer.Option(False, "--force", help=FORCE_HELP),
        quick: bool = typer.Option(False, help="Tiny settings: seconds instead of minutes."),
        seed: int = typer.Option(0, help="Seed for every random step."),
        json_out: bool = typer.Option(False, "--json", help="Print the summary as JSON on stdout."),
        progress: bool = typer.Option(True, help="Show progress bars."),
    ) -> None:
        from cortex_resnet.workflows.demo import run_demo  # deferred: matplotlib and every stage (keeps --help fast)

        echo = (lambda s: typer.echo(s, err=True)) if json_out else typer.echo
        summary = run_demo(out, quick=quick, seed=seed, echo=echo, progress=progress and not json_out,
                           force=force)
        if json_out:
            emit_json(summary)
        else:
            typer.echo(f"\nsummary: {out / 'summary.md'}")
            typer.echo((out / "summary.md").read_text())
