"""``cortex-resnet train``: train an experiment (unrolled circuit or baseline) into a run folder."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

import torch
import typer

from cortex_resnet.errors import SpecError
from cortex_resnet.cli._common import FORCE_HELP, emit_json, handle_errors, parse_set, check_out_path
from cortex_resnet.training.experiment import load_experiment
from cortex_resnet.training.experiment import ExperimentSpec
from cortex_resnet.training.loop import train as run_train
from cortex_resnet.io.outdir import claim_folder, SIGNATURE
from cortex_resnet.io.results import atomic_write_text
from cortex_resnet.training.report import runs_table

__all__ = ["register"]

EXAMPLE = ("Examples:\n\n  cortex-resnet train experiments/mnist1d_tied.toml --device auto "
           "--out runs/mnist1d_tied --json\n\n"
           "  cortex-resnet train experiments/mnist1d_tied.toml --out runs/mnist1d_tied --resume\n\n"
           "  torchrun --nproc_per_node 4 $(which cortex-resnet) train "
           "experiments/cifar10_resnet20.toml --data-dir ~/data/cifar10 --out runs/r20\n\n"
           "Run folder: config.toml, metrics.csv (per epoch), checkpoint.pt (every epoch), "
           "model.pt, report.json and report.md (beside the published baselines).")


# what a run writes into its folder (a foreign file there is refused before any work)
TRAIN_FILES = ("config.toml", "metrics.csv", "checkpoint.pt", "model.pt", "report.json", "report.md")


def train_cmd(
    experiment: Path = typer.Argument(..., help="Experiment file, e.g. experiments/mnist1d_tied.toml."),
    out: Optional[Path] = typer.Option(None, help="Run folder (default: runs/<experiment name>): new, empty, "
                                       "or a train run folder (with --resume); a folder holding other "
                                       "files is refused."),
    force: bool = typer.Option(False, "--force", help=FORCE_HELP),
    device: Optional[str] = typer.Option(None, help="auto (CUDA when present), cpu, cuda, cuda:N "
                                                    "(default: the experiment's)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its last "
                                                        "checkpoint (exactly, on CPU)."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="Folder with the files of "
                                            "mnist (IDX) or cifar10 (binary version)."),
    seed: Optional[int] = typer.Option(None, help="Override the experiment's seed (weights, order)."),
    epochs: Optional[int] = typer.Option(None, help="Override train.epochs."),
    extra: Optional[list[str]] = typer.Option(
        None, "--set", help="Override a field: --set optim.lr=0.001 (repeatable)."),
    json_out: bool = typer.Option(False, "--json", help="Print the JSON summary on stdout."),
    progress: bool = typer.Option(True, help="Progress bar and per-epoch lines on stderr."),
    threads: Optional[int] = typer.Option(None, help="CPU threads for torch (default: torch's; "
                                          "1 is fastest for small nets on a busy machine)."),
) -> None:
    """``train``: the experiment with the command line's changes, into its run folder."""
    if threads is not None:
        if threads < 1:
            raise SpecError("--threads", threads, "an integer >= 1")
        torch.set_num_threads(threads)
    spec = _experiment(experiment, extra or [], seed, epochs)
    out = out if out is not None else Path("runs") / spec.name
    try:
        with claim_folder(out, "train", force=force, adopt=resume and (out / "checkpoint.pt").is_file(),
                          expected=TRAIN_FILES):
            summary = run_train(spec, out, resume=resume, device=device, data_dir=data_dir, progress=progress)
    except KeyboardInterrupt:
        ckpt = out / "checkpoint.pt"
        where = (f"the last finished epoch is in {ckpt}" if ckpt.exists()
                 else f"no epoch finished yet; {out} holds no checkpoint")
        typer.echo(f"\ninterrupted: {where} (metrics in {out / 'metrics.csv'}).\nresume with: "
                   f"cortex-resnet train {experiment} --out {out} --resume", err=True)
        raise typer.Exit(130) from None
    if os.environ.get("RANK", "0") != "0":
        return  # under torchrun only rank 0 reports
    if json_out:
        emit_json(summary)
    else:
        typer.echo(_summary_line(spec.name, summary, out))


def _experiment(path: Path, items: list[str], seed: int | None, epochs: int | None) -> ExperimentSpec:
    """The experiment file with ``--set``, ``--seed`` and ``--epochs`` applied."""
    spec = load_experiment(path)
    changes = parse_set(items, example="train.epochs=5 or optim.lr=0.001")
    if seed is not None:
        if seed < 0:
            raise SpecError("--seed", seed, "an integer >= 0")
        changes["seed"] = seed
    if epochs is not None:
        changes["train.epochs"] = epochs
    return spec.replace(**changes) if changes else spec


def _summary_line(name: str, summary: dict, out: Path) -> str:
    steps = summary["accuracy_per_step"]
    return (f"{name}: test accuracy {100 * summary['test_accuracy']:.1f} % "
            f"({summary['params']:,} parameters, {summary['epochs']} epochs, "
            f"{summary['device']}, {summary['examples_per_s']:.0f} examples/s"
            + (f"; per step {', '.join(f'{100 * a:.0f}' for a in steps)}" if len(steps) > 1 else "")
            + f"); report {out / 'report.md'}")


def train_report_cmd(
    runs: list[Path] = typer.Argument(..., help="Run folders of `cortex-resnet train`."),
    out: Optional[Path] = typer.Option(None, help="Also write the Markdown table here (.md, atomically; an "
                                       "existing file is replaced only if cortex-resnet wrote it, else --force)."),
    force: bool = typer.Option(False, "--force", help=FORCE_HELP),
    json_out: bool = typer.Option(False, "--json", help="Print the runs' summaries as JSON."),
) -> None:
    """``train-report``: one table of several runs."""
    check_out_path(out, suffixes=(".md",), force=force)
    missing = [str(r) for r in runs if not (r / "report.json").is_file()]
    if missing:
        raise SpecError("runs", missing[0], "run folders with report.json (finished or "
                        "diverged `cortex-resnet train` runs)")
    table = runs_table(runs)
    if out is not None:
        atomic_write_text(out, f"<!-- {SIGNATURE} train-report -->\n" + table)
    if json_out:
        reps = [json.loads((r / "report.json").read_text()) for r in runs]
        emit_json({"runs": [{k: rep.get(k) for k in ("out", "experiment", "dataset", "model",
                                                      "variant", "params", "test_accuracy",
                                                      "epochs", "status")} for rep in reps],
                   "table": table})
    else:
        typer.echo(table, nl=False)


def register(app: typer.Typer) -> None:
    app.command("train", help="Train an experiment: an unrolled E/I circuit (tied/untied/plain/...) or a "
                              "baseline, with checkpoints every epoch and a report.\n\n" + EXAMPLE
                )(handle_errors(train_cmd))
    app.command("train-report", help="One table of several training runs, beside the published "
                                     "baselines of their datasets, with parameter counts.\n\n"
                                     "Example:\n\n  cortex-resnet train-report runs/mnist1d_* "
                                     "--out results_mnist1d.md")(handle_errors(train_report_cmd))
