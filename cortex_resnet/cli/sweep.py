"""``cortex-resnet sweep``: a grid of spec fields x seeds on Dask, gathered into one Dataset."""

from __future__ import annotations

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
    @app.command(help="Sweep spec fields of a rate model over a grid (x seeds) on Dask and gather the "
                      "summaries (rates, max Re eig, ISN) into OUT/sweep.nc.\n\nExample:\n\n"
                      "  cortex-resnet sweep models/isn.toml --param connectivity.J_EE=0.5,1.0,1.5,2.0 "
                      "--seeds 3 --out runs/sweep_isn --json")
    @handle_errors
    def sweep(
        model: Path = typer.Argument(..., help="Circuit model file (TOML)."),
        param: list[str] = typer.Option(..., help="FIELD=v1,v2,... (repeatable: the grid is their product)."),
        seeds: int = typer.Option(1, help="Seeds per grid point (weights and noise)."),
        seed: int = typer.Option(0, help="First seed."),
        stimulus: Optional[str] = typer.Option(None, help="Stimulus (default: the model file's)."),
        duration: Optional[float] = typer.Option(None, help="Duration in ms (default: the model file's)."),
        dt: Optional[float] = typer.Option(None, help="Euler step in ms (default: the model file's)."),
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
                             progress=progress and not json_out)
        rates = [v for v in ds.data_vars if str(v).startswith("rate_")]  # rate_E, rate_I or rate_NAME
        summary = {"out": str(out / "sweep.nc"), "params": params, "seeds": seeds,
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
