"""``cortex-resnet hypothesis list | run | report``: named claims with multi-seed statistics."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from cortex_resnet.fanout.tasks import DEFAULT_CONNECT_TIMEOUT_S
from cortex_resnet.cli._common import FORCE_HELP, emit_json, handle_errors
from cortex_resnet.io.outdir import claim_folder, written_by_us

__all__ = ["register"]


# what a run writes at the top of its folder (a foreign file there is refused before any work)
HYPOTHESIS_FILES = ("results.nc", "report.md", "report.json", "figures", ".cache")

RUN_EXAMPLE = ("Examples:\n\n  cortex-resnet hypothesis run isn-paradox --quick --json\n\n"
               "  cortex-resnet hypothesis run amplification --seeds 10 --out runs/amp\n\n"
               "  cortex-resnet hypothesis run degradation --scheduler tcp://10.0.0.5:8786")


def list_cmd(json_out: bool = typer.Option(False, "--json", help="Print a JSON list on stdout.")) -> None:
    """``hypothesis list``."""
    from cortex_resnet import hypotheses  # deferred: its statistics import scipy.stats (keeps --help fast)

    items = hypotheses.list_hypotheses()
    if json_out:
        emit_json(items)  # type: ignore[arg-type]
        return
    for h in items:
        typer.echo(f"{h['name']}  (quick {h['runtime']['quick']}, full {h['runtime']['full']})")
        typer.echo(f"  claim: {h['claim']}")
        typer.echo(f"  H0: {h['h0']}")
        typer.echo(f"  H1: {h['h1']}")


def run_cmd(
    name: str = typer.Argument(..., help="Hypothesis name (see `hypothesis list`)."),
    # "\\[quick]": rich would read "[quick]" as markup and print nothing
    quick: bool = typer.Option(False, help="Tiny sizes and 2-3 seeds (the spec's \\[quick] table)."),
    seeds: Optional[int] = typer.Option(None, help="Number of seeds (>= 2), overriding the spec."),
    seed: Optional[int] = typer.Option(None, help="First seed; tasks use seed .. seed + seeds - 1."),
    scheduler: Optional[str] = typer.Option(
        None, help="Address of a running Dask scheduler (e.g. tcp://10.0.0.5:8786); default: a "
                   "LocalCluster on this machine."),
    workers: int = typer.Option(2, help="LocalCluster worker processes; 0 runs the tasks serially here."),
    connect_timeout: float = typer.Option(DEFAULT_CONNECT_TIMEOUT_S,
                                          help="Seconds to wait for --scheduler to answer."),
    out: Optional[Path] = typer.Option(None, help="Output folder (default runs/hypotheses/NAME[-quick]): new, "
                                       "empty, or one `hypothesis run` wrote (it resumes); a folder "
                                       "holding other files is refused."),
    force: bool = typer.Option(False, "--force", help=FORCE_HELP),
    spec: Optional[Path] = typer.Option(None, help="Experiment spec (TOML) instead of "
                                                   "experiments/hypotheses/NAME.toml."),
    cache: bool = typer.Option(True, help="Reuse finished tasks from OUT/.cache."),
    json_out: bool = typer.Option(False, "--json", help="Print the JSON summary on stdout."),
    progress: bool = typer.Option(True, help="Show a progress bar over tasks on stderr."),
) -> None:
    """``hypothesis run``."""
    from cortex_resnet import hypotheses  # deferred: its statistics import scipy.stats (keeps --help fast)

    folder = out or hypotheses.config.default_out(name, quick)
    try:
        with claim_folder(folder, "hypothesis run", force=force, owned_dirs=(".cache",),
                          expected=HYPOTHESIS_FILES):
            summary = hypotheses.run_hypothesis(name, quick=quick, seeds=seeds, seed=seed, scheduler=scheduler,
                                                workers=workers, out=folder, spec=spec,
                                                progress=progress and not json_out,
                                                connect_timeout_s=connect_timeout, cache=cache)
    except KeyboardInterrupt:
        typer.echo(f"\ninterrupted: finished tasks are kept in {folder}/.cache; rerun the same "
                   f"command (same --out) to resume without redoing them.", err=True)
        raise typer.Exit(130) from None
    _print(summary, json_out)


def report_cmd(
    directory: Path = typer.Argument(..., help="A run folder written by `hypothesis run`."),
    json_out: bool = typer.Option(False, "--json", help="Print the JSON summary on stdout."),
) -> None:
    """``hypothesis report``."""
    from cortex_resnet import hypotheses  # deferred: its statistics import scipy.stats (keeps --help fast)

    legacy = (directory / "results.nc").is_file() and written_by_us(directory / "results.nc")
    with claim_folder(directory, "hypothesis report", option="DIR", accept=("hypothesis run",),
                      adopt=legacy, owned_dirs=(".cache",), force_ok=False):
        summary = hypotheses.rebuild_report(directory)
    _print(summary, json_out)


def register(app: typer.Typer) -> None:
    hyp = typer.Typer(help="Named hypotheses: claim, H0/H1, conditions x seeds on Dask, statistics, "
                           "verdict, report and figure.", no_args_is_help=True)
    app.add_typer(hyp, name="hypothesis")
    hyp.command("list", help="List the hypotheses with their claim, H0 and H1.\n\n"
                             "Example:\n\n  cortex-resnet hypothesis list --json")(handle_errors(list_cmd))
    hyp.command("run", help="Run a hypothesis: every (condition, seed) is an independent task on a "
                            "Dask cluster (a local one by default); finished tasks are cached under "
                            "OUT/.cache so an interrupted run resumes.\n\n" + RUN_EXAMPLE)(handle_errors(run_cmd))
    hyp.command("report", help="Re-analyse a finished run folder (results.nc) and rewrite report.md, "
                               "report.json and the figure.\n\n"
                               "Example:\n\n  cortex-resnet hypothesis report runs/hypotheses/isn-paradox"
                )(handle_errors(report_cmd))


def _print(summary: dict, json_out: bool) -> None:
    if json_out:
        emit_json(summary)
        return
    from cortex_resnet.hypotheses.report import fmt  # deferred: scipy.stats (keeps --help fast)

    typer.echo(f"{summary['name']}: {summary['verdict']}  ({summary['seeds']} seeds)")
    for c in summary["comparisons"]:
        typer.echo(f"  [{c['verdict']}] {c['label']}: {c['test']}, statistic {fmt(c['statistic'])}, "
                   f"p (Holm) {fmt(c['p_adjusted'])}, {c['effect_name']} {fmt(c['effect_size'], 3)}, "
                   f"estimate {fmt(c['estimate'])} [{fmt(c['ci'][0])}, {fmt(c['ci'][1])}]")
    typer.echo(f"  report: {Path(summary['out']) / 'report.md'}; runtime {summary['runtime_s']:.1f} s")
