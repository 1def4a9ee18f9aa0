"""``cortex-resnet compare``: a trained circuit as network, rate circuit and spiking circuit, side by side."""

from __future__ import annotations

from pathlib import Path

import typer

from cortex_resnet.cli._common import (
    FORCE_HELP,
    check_out_path,
    emit_json,
    handle_errors,
)
from cortex_resnet.errors import SpecError

__all__ = ["register"]

EXAMPLE = ("Example:\n\n  cortex-resnet train experiments/mnist1d_tied.toml --out runs/mnist1d_tied\n\n"
           "  cortex-resnet compare runs/mnist1d_tied --json\n\n"
           "Writes compare.json and compare.png (accuracy vs readout time of network, rate and spiking "
           "circuit; x and F(x) of a few test examples) into the run folder or --out.")


def compare_cmd(
    run_dir: Path = typer.Argument(..., help="A finished run folder of `cortex-resnet train` "
                                             "(a circuit model)."),
    spiking_examples: int | None = typer.Option(
        None, help="Test examples run as a spiking network (default: all; fewer: a seeded subsample; 0 = none)."),
    spiking: bool = typer.Option(True, help="Run the spiking circuit at all."),
    spiking_duration: float | None = typer.Option(
        None, help="Spiking run length (ms; default max(K dt, 100)); spikes counted in its "
                   "second half."),
    pool_size: int | None = typer.Option(None, help="LIF neurons per rate unit, 1 to 10000 "
                                                       "(default: the circuit's spiking.pool_size)."),
    window_start: float | None = typer.Option(
        None, help="Start of the reported readout window [START, T) (ms; default T/2; a multiple of the "
                   "net's dt_ms below the run length). E.g. --spiking-duration 200 --window-start 50."),
    out: Path | None = typer.Option(None, help="Folder for compare.json and compare.png "
                                                  "(default: the run folder). Existing ones are "
                                                  "replaced only if cortex-resnet wrote them (else --force)."),
    force: bool = typer.Option(False, "--force", help=FORCE_HELP),
    data_dir: Path | None = typer.Option(None, "--data-dir", help="Data folder (mnist, cifar10)."),
    seed: int = typer.Option(0, help="Seed of the spiking subsample and network."),
    threads: int | None = typer.Option(None, help="CPU threads for torch."),
    spiking_engine: str = typer.Option("torch", help="torch (batched) or brian2 (one network per example: slow)."),
    spiking_dtype: str = typer.Option("float32", help="Precision of the torch engine: float32 or float64."),
    progress: bool = typer.Option(True, help="Progress bars on stderr."),
    brian2_reference: int = typer.Option(0, help="With --spiking-engine torch: also run this many "
                                                 "examples with Brian2 and report the agreement."),
    naive: bool = typer.Option(False, help="Also score the naive conversion (weights copied onto the LIF "
                                           "pools without the operating-point gain scaling) on the same examples."),
    mapping: str = typer.Option("gain", help="Rate units -> LIF pools: gain (linearised at the mean test input), "
                                             "fit (gain and offset per unit fitted over 256 training inputs) "
                                             "or fit_population."),
    json_out: bool = typer.Option(False, "--json", help="Print the JSON summary on stdout."),
) -> None:
    """``compare``: check the options, score the run three ways, write and report."""
    from cortex_resnet.workflows.compare import compare_run  # deferred: torch/brian2 stack (keeps --help fast)

    _check_options(spiking_examples, seed, spiking_duration, out, run_dir, force, threads, window_start)
    s = compare_run(run_dir, spiking_examples=spiking_examples, spiking=spiking,
                    spiking_duration_ms=spiking_duration, pool_size=pool_size, out_dir=out,
                    seed=seed, data_dir=data_dir, spiking_engine=spiking_engine,
                    brian2_reference=brian2_reference, spiking_dtype=spiking_dtype, progress=progress,
                    naive=naive, mapping=mapping, window_start_ms=window_start)
    if json_out:
        emit_json(s)
        return
    _echo(s)


def _check_options(spiking_examples: int | None, seed: int, spiking_duration: float | None, out: Path | None,
                   run_dir: Path, force: bool, threads: int | None, window_start: float | None = None) -> None:
    """Bad options exit 2 before any work (the window start's multiple of dt: once the run is loaded)."""
    if spiking_examples is not None and spiking_examples < 0:
        raise SpecError("--spiking-examples", spiking_examples, "an integer >= 0")
    if seed < 0:
        raise SpecError("--seed", seed, "an integer >= 0")
    if spiking_duration is not None and not spiking_duration > 0:
        raise SpecError("--spiking-duration", spiking_duration, "a duration > 0 ms")
    if window_start is not None and not 0 <= window_start < (spiking_duration or float("inf")):
        raise SpecError("--window-start", window_start, "a time >= 0 ms below the spiking run's length "
                        f"({spiking_duration if spiking_duration else 'default max(K dt, 100)'} ms)")
    folder = out if out is not None else run_dir
    if out is not None and not out.is_dir():
        raise SpecError("--out", str(out), "an existing folder for compare.json and compare.png")
    if folder.is_dir():  # (a missing run folder is reported by compare_run, naming it)
        check_out_path(folder / "compare.json", "--out", force=force)
        check_out_path(folder / "compare.png", "--out", force=force)
    if threads is not None:
        if threads < 1:
            raise SpecError("--threads", threads, "an integer >= 1")
        import torch  # deferred: keeps --help fast

        torch.set_num_threads(threads)


def _echo(s: dict) -> None:
    """The one-line text summary."""
    pct = lambda v: "—" if v is None else f"{100 * v:.1f} %"
    a = s["agreement"]
    typer.echo(f"network {pct(s['network_accuracy'])} | rate circuit {pct(s['rate_accuracy'])} "
               f"(agreement {pct(a['rate_vs_network'])}, max |logit diff| "
               f"{s['max_abs_logit_diff']:.2g}) | spiking {pct(s['spiking_accuracy'])} on "
               f"{s['n_spiking']} of {s['n_test']} examples (agreement with network {pct(a['spiking_vs_network'])}, "
               f"with rate {pct(a['spiking_vs_rate'])})"
               + (f" | network - spiking {100 * s['network_spiking_gap']:+.1f} pp [{100 * s['network_spiking_gap_ci95'][0]:+.1f}, "
                  f"{100 * s['network_spiking_gap_ci95'][1]:+.1f}] (paired 95 %)" if s.get("network_spiking_gap_ci95") else "")
               + (f" | naive conversion {pct(s['naive']['accuracy'])} on {s['naive']['n']}" if "naive" in s else "")
               + f"; figure {s['figure']}")


def register(app: typer.Typer) -> None:
    app.command("compare", help="Run a trained unrolled circuit as the network, as a rate circuit (to_circuit + "
                      "the simulator's Euler steps: the same accuracy, exactly) and as a spiking "
                      "circuit (the batched torch engine, on the whole test set; Brian2 as the reference on a subsample); "
                      "report accuracies, agreement and the anytime curves.\n\n"
                      + EXAMPLE)(handle_errors(compare_cmd))
