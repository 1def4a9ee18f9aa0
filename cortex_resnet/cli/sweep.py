"""``cortex-resnet sweep``: a grid of spec fields x seeds on Dask, gathered into one Dataset."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Optional

import typer

from cortex_resnet.catalog import find_model_file
from cortex_resnet.cli._common import FORCE_HELP, emit_json, handle_errors, parse_grid
from cortex_resnet.io.outdir import claim_folder
from cortex_resnet.fanout.sweep import sweep_model
from cortex_resnet.model.spec import load_spec

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    @app.command(help="Sweep spec fields (and stimulus.KEY fields) of a model over a grid (x seeds) on Dask "
                      "and gather the summaries (rates, max Re eig, ISN; spiking: rates in Hz) into "
                      "OUT/sweep.nc. With --backend spiking --engine torch the values of stimulus.amp run as one "
                      "batch per network.\n\nExamples:\n\n"
                      "  cortex-resnet sweep models/isn.toml --param connectivity.J_EE=0.5,1.0,1.5,2.0 "
                      "--seeds 3 --out runs/sweep_isn --json\n\n"
                      "  cortex-resnet sweep models/brunel_2000.toml --backend spiking --engine torch "
                      "--stimulus constant:amp=30 --param stimulus.amp=20,30,40 --duration 500 --json")
    @handle_errors
    def sweep(
        model: Path = typer.Argument(..., help="Circuit model file (TOML)."),
        param: list[str] = typer.Option(..., help="FIELD=v1,v2,... (repeatable: the grid is their product)."),
        seeds: int = typer.Option(1, help="Seeds per grid point (weights and noise)."),
        seed: int = typer.Option(0, help="First seed."),
        stimulus: Optional[str] = typer.Option(None, help="Stimulus (default: the model file's)."),
        duration: Optional[float] = typer.Option(None, help="Duration in ms (default: the model file's)."),
        dt: Optional[float] = typer.Option(None, help="Step in ms (default: the model's Euler step / spiking.dt_ms)."),
        backend: str = typer.Option("rate", help="rate or spiking (pools of LIF neurons; rates in Hz)."),
        engine: Optional[str] = typer.Option(None, help="Spiking backend: brian2 (default) or torch (batched)."),
        batch: Optional[str] = typer.Option(None, help="Spiking backend: auto (default: with --engine torch the "
                                            "values of stimulus.amp run as one batch per network, other fields "
                                            "as separate tasks), all (every swept field must be shareable by one "
                                            "batch: stimulus.amp), none (one task per grid point)."),
        dtype: str = typer.Option("float64", help="Torch engine: float64 or float32."),
        workers: int = typer.Option(2, help="LocalCluster worker processes (0 = serially in this process)."),
        scheduler: Optional[str] = typer.Option(None, help="Address of a running Dask scheduler (tcp://host:8786)."),
        out: Optional[Path] = typer.Option(None, help="Output folder: sweep.nc and the task cache (.cache) that a "
                                           "rerun resumes from (default: runs/sweep_<model name>). New, empty, "
                                           "or one `sweep` wrote; a folder holding other files is refused."),
        force: bool = typer.Option(False, "--force", help=FORCE_HELP),
        json_out: bool = typer.Option(False, "--json", help="Print a JSON summary on stdout."),
        progress: bool = typer.Option(True, help="Progress bar over tasks."),
    ) -> None:
        model = find_model_file(model)  # a bundled model by name, e.g. canonical_microcircuit
        params = dict(parse_grid(p) for p in param)
        if out is None:
            out = Path("runs") / f"sweep_{load_spec(model).name}"
        t0 = time.perf_counter()
        with claim_folder(out, "sweep", force=force, owned_dirs=(".cache",), expected=("sweep.nc", ".cache")):
            ds = sweep_model(model, params, seeds=seeds, seed=seed, stimulus=stimulus, duration_ms=duration,
                             dt_ms=dt, out=out, workers=workers, scheduler=scheduler,
                             progress=progress and not json_out, backend=backend, engine=engine, batch=batch,
                             dtype=dtype)
        rates = [v for v in ds.data_vars if str(v).startswith("rate_")]  # rate_E, rate_I or rate_NAME
        summary = {"out": str(out / "sweep.nc"), "params": params, "seeds": seeds, "backend": backend,
                   **({"engine": ds.attrs["engine"], "batched_fields": json.loads(ds.attrs["batched_fields"]),
                       "rate_units": "Hz"} if backend == "spiking" else {}),
                   "tasks": int(ds["unstable"].size), "unstable": int(ds["unstable"].sum()),
                   "runtime_s": time.perf_counter() - t0,
                   **{v: ds[v].mean("seed").values.tolist() for v in rates}}
        for v in ds.data_vars:
            if v == "inhibition_stabilized" or str(v).startswith("isn_"):
                summary[str(v)] = ds[v].mean("seed").values.tolist()
        if json_out:
            emit_json(summary)
        else:
            typer.echo(ds[rates].mean("seed").to_dataframe().to_string())
            typer.echo(f"wrote {out / 'sweep.nc'} (task cache {out / '.cache'}: rerun the same command "
                       "to resume)")
