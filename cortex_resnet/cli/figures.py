"""``cortex-resnet figures``: regenerate the gallery in ``figures/``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from cortex_resnet.cli._common import FORCE_HELP, emit_json, handle_errors

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    @app.command(help="Regenerate the figure gallery (figures/ and figures/README.md).\n\n"
                      "Example:\n\n  cortex-resnet figures all\n\n  cortex-resnet figures isn_paradox --out /tmp/figs")
    @handle_errors
    def figures(
        name: str = typer.Argument("all", help="A figure name, or 'all'."),
        full: bool = typer.Option(False, help="Publication settings (slower) instead of quick ones."),
        out: Optional[Path] = typer.Option(None, help="Output folder (default: figures/ in the working directory): new, "
                                           "empty, or a gallery folder (only files the gallery wrote are "
                                           "replaced; a folder holding other files is refused)."),
        force: bool = typer.Option(False, "--force", help=FORCE_HELP),
        seed: int = typer.Option(0, help="Seed (the figures' models carry their own seeds; kept for the CLI contract)."),
        json_out: bool = typer.Option(False, "--json", help="Print the written files as JSON."),
        progress: bool = typer.Option(True, help="Show a progress bar."),
    ) -> None:
        from cortex_resnet.workflows.gallery import DEFAULT_OUT, make_gallery  # deferred: matplotlib (keeps --help fast)

        made = make_gallery(out or DEFAULT_OUT, full=full, only=None if name == "all" else [name],
                            progress=progress and not json_out, force=force)
        if json_out:
            emit_json({"out": str(out or DEFAULT_OUT), "figures": made, "full": full, "seed": seed})
        else:
            for n, paths in made.items():
                typer.echo(f"{n}: " + ", ".join(str(p) for p in paths))
