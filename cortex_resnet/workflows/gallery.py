"""The figure gallery that ``cortex-resnet figures all`` regenerates in ``figures/``.

Each entry makes its result (quick settings by default, ``full=True`` for
publication settings), saves it, and draws it with a function of
:mod:`cortex_resnet.plots.base` / ``plots_*`` that takes the saved result, so a
figure can be remade from the file alone. ``figures/README.md`` gets one line
per figure: what it shows and the command that made it.
"""

from __future__ import annotations

import json

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from cortex_resnet.catalog import experiments_dir, models_dir
from cortex_resnet.errors import UnknownNameError
from cortex_resnet.io.results import atomic_write_text, save_dataset, load_dataset
from cortex_resnet import load_model, simulate
from cortex_resnet.plots.base import plot_decomposition, plot_raster
from cortex_resnet.plots.circuit import plot_weights_spectrum, plot_isn_paradox, plot_amplification, plot_rate_vs_spiking
from cortex_resnet.spiking.simulator import simulate_spiking
from cortex_resnet.model.pd14 import NEST_FULL_SCALE_RATES_HZ, POPULATIONS as PD14_POPULATIONS
from cortex_resnet.plots.populations import plot_population_rates
from cortex_resnet.plots.learning import plot_unroll_check, unroll_check_dataset, plot_training_curves, plot_anytime_accuracy, plot_compare
from cortex_resnet.training.experiment import load_experiment
from cortex_resnet.training.loop import train
from cortex_resnet.io.outdir import remove_written, claim_folder
from cortex_resnet.workflows.compare import compare_run
from cortex_resnet.hypotheses.runner import run_hypothesis

__all__ = ["FigureEntry", "GALLERY", "register_figure", "make_gallery", "DEFAULT_OUT"]

DEFAULT_OUT = Path("figures")  # in the working directory: the repository's figures/ under `make figures`
MODELS = models_dir()


@dataclass(frozen=True)
class FigureEntry:
    """A gallery figure: ``make(out_dir, full) -> list of written files``."""

    name: str
    description: str
    make: Callable[[Path, bool], list[Path]]
    order: int = 100

    def __repr__(self) -> str:
        """One line: kind and key sizes (not the arrays)."""
        return f"FigureEntry({self.name!r} #{self.order}: {self.description[:80]!r})"


GALLERY: dict[str, FigureEntry] = {}


def register_figure(name: str, description: str, order: int = 100):
    """Decorator adding a figure maker to the gallery."""

    def deco(fn: Callable[[Path, bool], list[Path]]) -> Callable[[Path, bool], list[Path]]:
        GALLERY[name] = FigureEntry(name, description, fn, order)
        return fn

    return deco


def _both(plot: Callable, result, out_dir: Path, stem: str, **kw) -> list[Path]:
    return [plot(result, out_dir / f"{stem}.png", **kw), plot(result, out_dir / f"{stem}.svg", **kw)]


# ------------------------------------------------------------------ rate-model figures
@register_figure("decomposition_rate",
                 "Canonical microcircuit (rate model): r(t) = x(t) + F(x)(t) for E and I after a step input; "
                 "removing recurrence leaves 40 % of the E response.", order=10)
def _decomposition_rate(out_dir: Path, full: bool) -> list[Path]:
    ds = simulate(load_model(MODELS / "canonical_microcircuit.toml"), "step:amp=1.0,onset_ms=50",
                  duration_ms=500 if full else 300, dt_ms=0.05 if full else 0.1, device="cpu",
                  record_stride=10)
    save_dataset(ds, out_dir / "data" / "decomposition_rate.nc")
    return _both(plot_decomposition, ds, out_dir, "decomposition_rate")


@register_figure("weights_spectrum",
                 "Canonical microcircuit: weight matrix with E/I blocks (Dale's law) and the Jacobian spectrum "
                 "at the operating point with the stability line.", order=20)
def _weights_spectrum(out_dir: Path, full: bool) -> list[Path]:


    src = out_dir / "data" / "decomposition_rate.nc"
    if not src.exists():
        _decomposition_rate(out_dir, full)
    return _both(plot_weights_spectrum, load_dataset(src), out_dir, "weights_spectrum")


@register_figure("isn_paradox",
                 "Inhibition-stabilised network (models/isn.toml): extra drive to I at 100 ms lowers the I rate "
                 "(1.0 -> 0.9, as the linear analysis predicts).", order=30)
def _isn(out_dir: Path, full: bool) -> list[Path]:
    ds = simulate(load_model(MODELS / "isn.toml"), device="cpu")
    save_dataset(ds, out_dir / "data" / "isn_paradox.nc")
    return _both(plot_isn_paradox, ds, out_dir, "isn_paradox")


@register_figure("amplification",
                 "Cortical amplification: steady E and I rates with (r) and without (x) recurrence across "
                 "input strengths; x/r for E against the cat V1 (0.46) and mouse L4 (~1/3) measurements.", order=40)
def _amplification(out_dir: Path, full: bool) -> list[Path]:
    amps = "[0.25,0.5,1,1.5,2,3]" if full else "[0.5,1,2]"
    ds = simulate(load_model(MODELS / "canonical_microcircuit.toml"), f"step:amp={amps},onset_ms=0",
                  duration_ms=600, dt_ms=0.1, device="cpu", record_stride=10)
    save_dataset(ds, out_dir / "data" / "amplification.nc")
    return _both(plot_amplification, ds, out_dir, "amplification")


# ------------------------------------------------------------------ spiking figures
@register_figure("rate_vs_spiking",
                 "The canonical microcircuit as a rate model and as a spiking network (LIF pools, Brian2): "
                 "the same decomposition r = x + F(x) side by side.", order=12)
def _rate_vs_spiking(out_dir: Path, full: bool) -> list[Path]:
    circuit = load_model(MODELS / "canonical_microcircuit.toml")
    duration = 500 if full else 300
    rate = simulate(circuit, "step:amp=1.0,onset_ms=50", duration_ms=duration, dt_ms=0.1, record_stride=10,
                    device="cpu")
    spk = simulate_spiking(circuit, "step:amp=1.0,onset_ms=50", duration_ms=duration, seed=0)
    save_dataset(spk, out_dir / "data" / "canonical_spiking.nc")
    return [plot_rate_vs_spiking(rate, spk, out_dir / f"rate_vs_spiking.{ext}") for ext in ("png", "svg")]


@register_figure("raster_coba",
                 "Vogels & Abbott (2005) COBA network, 4000 conductance-based LIF neurons: raster of a sample "
                 "of neurons with E and I population rates beneath (self-sustained asynchronous irregular activity).",
                 order=14)
def _raster_coba(out_dir: Path, full: bool) -> list[Path]:
    ds = simulate_spiking(load_model(MODELS / "vogels_abbott_coba.toml"), duration_ms=1000 if full else 500,
                          seed=0, decompose=False)
    save_dataset(ds, out_dir / "data" / "raster_coba.nc")
    return _both(plot_raster, ds, out_dir, "raster_coba")


# ------------------------------------------------------------------ bridge and learning
@register_figure("pd14_microcircuit",
                 "Potjans & Diesmann (2014) cortical microcircuit at scale 0.1 (7,696 LIF neurons, 3.0 M synapses; "
                 "models/potjans_diesmann_2014.toml), spiking (Brian2): raster by layer, and per-population rates "
                 "beside the Siegert mean field of the same network and NEST's full-scale rates (the 0.1 network "
                 "sits below them in L2/3E, in NEST as in ours; docs/populations.md).", order=14)
def _pd14(out_dir: Path, full: bool) -> list[Path]:
    ds = simulate_spiking(load_model(MODELS / "potjans_diesmann_2014.toml"), duration_ms=1000 if full else 500,
                          seed=1)
    save_dataset(ds, out_dir / "data" / "pd14_microcircuit.nc")
    refs = {"mean field, same network": json.loads(ds.attrs["mean_field_rate_hz"])["by_population"],
            "NEST, full scale": dict(zip(PD14_POPULATIONS, NEST_FULL_SCALE_RATES_HZ.tolist()))}
    return [plot_population_rates(ds, out_dir / f"pd14_microcircuit.{ext}", references=refs) for ext in ("png", "svg")]


@register_figure("unroll_check",
                 "The unrolled residual network equals the simulator: canonical microcircuit, 50 blocks of 1 ms, "
                 "trajectories overlaid and the per-step deviation (float64 ~1e-16, float32 ~1e-7).", order=50)
def _unroll_check(out_dir: Path, full: bool) -> list[Path]:
    import numpy as np


    ds = unroll_check_dataset(load_model(MODELS / "canonical_microcircuit.toml"), 100 if full else 50, 1.0,
                              np.array([[1.0], [0.5]]))
    save_dataset(ds, out_dir / "data" / "unroll_check.nc")
    return _both(plot_unroll_check, ds, out_dir, "unroll_check")


TRAIN_VARIANTS = ("tied", "untied", "plain")


def _train_runs(out_dir: Path, full: bool) -> list[Path]:
    """MNIST-1D runs of the tied, untied and plain circuit (reused by several figures)."""
    runs = []
    for variant in TRAIN_VARIANTS:
        run = out_dir / "data" / f"train_{variant}"
        if not (run / "report.json").exists():
            spec = load_experiment(experiments_dir() / "mnist1d_tied.toml")
            spec = spec.replace(**{"model.variant": variant, "device": "cpu",
                                   "train.epochs": 30 if full else 8})
            if run.exists():  # an unfinished run of an earlier gallery: only its own files go

                remove_written(run)
            train(spec, run, progress=False)
        runs.append(run)
    return runs


@register_figure("training_curves",
                 "MNIST-1D: loss and test accuracy per epoch of the tied (recurrent circuit), untied (ResNet) "
                 "and plain (alpha = 1) E/I nets.", order=60)
def _training_curves(out_dir: Path, full: bool) -> list[Path]:
    runs = _train_runs(out_dir, full)
    return _both(plot_training_curves, runs, out_dir, "training_curves")


@register_figure("anytime_accuracy",
                 "MNIST-1D: test accuracy of the pyramidal readout at every time step (anytime readout) for "
                 "tied, untied and plain nets.", order=61)
def _anytime(out_dir: Path, full: bool) -> list[Path]:
    runs = _train_runs(out_dir, full)
    return _both(plot_anytime_accuracy, runs, out_dir, "anytime_accuracy")


@register_figure("compare",
                 "The trained tied MNIST-1D net scored as a network, as a rate circuit (identical) and as a "
                 "spiking LIF circuit (torch engine, the whole test set), with the anytime curve of each.", order=62)
def _compare(out_dir: Path, full: bool) -> list[Path]:
    run = _train_runs(out_dir, full)[0]
    summary = compare_run(run, spiking_examples=None, spiking_engine="torch", seed=0)
    return _both(plot_compare, summary, out_dir, "compare")


HYPOTHESES = ("isn-paradox", "amplification", "inhibition-silencing", "depth-latency", "degradation",
              "shortcut", "weight-sharing", "iterative-refinement", "rate-spike-agreement", "tuned-amplification",
              "spiking-conversion")


def _hypothesis_maker(name: str):
    def make(out_dir: Path, full: bool) -> list[Path]:
        import shutil


        run_dir = out_dir / "data" / "hypotheses" / name
        run_hypothesis(name, quick=not full, workers=2 if full else 0, out=run_dir)
        made = []
        for fig in sorted((run_dir / "figures").glob("*")):
            target = out_dir / f"hypothesis_{fig.name}"
            shutil.copyfile(fig, target)
            made.append(target)
        return made

    return make


for _i, _name in enumerate(HYPOTHESES):
    register_figure(f"hypothesis_{_name}",
                    f"Hypothesis `{_name}` (`cortex-resnet hypothesis run {_name} --quick`): per-seed results, "
                    "statistic and verdict; `cortex-resnet hypothesis list` states the claim.",
                    order=70 + _i)(_hypothesis_maker(_name))


# ------------------------------------------------------------------ driver
def known_figures() -> list[str]:
    return [e.name for e in sorted(GALLERY.values(), key=lambda e: (e.order, e.name))]


def make_gallery(out_dir: str | Path = DEFAULT_OUT, *, full: bool = False,
                 only: list[str] | None = None, progress: bool = False,
                 force: bool = False) -> dict[str, list[Path]]:
    """Regenerate figures (all, or ``only``) and rewrite ``out_dir/README.md``.

    ``out_dir`` must be new, empty or a gallery folder (its manifest lists what the
    gallery wrote, and only that is replaced); ``force`` writes beside other files.
    """
    names = known_figures() if not only else only
    for n in names:
        if n not in GALLERY:
            raise UnknownNameError("figure", n, known_figures(), field="figure")
    with claim_folder(out_dir, "figures", force=force, expected=("README.md",), owned_dirs=("data",)):
        return _make(Path(out_dir), names, full, progress)


def _make(out_dir: Path, names: list[str], full: bool, progress: bool) -> dict[str, list[Path]]:
    (out_dir / "data").mkdir(parents=True, exist_ok=True)
    made: dict[str, list[Path]] = {}
    it = names
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(names, desc="figures", unit="fig")
    for n in it:
        made[n] = GALLERY[n].make(out_dir, full)
    _write_readme(out_dir, full)
    return made


def _write_readme(out_dir: Path, full: bool) -> None:
    lines = ["# Figure gallery", "",
             "Regenerate everything with `cortex-resnet figures all` (quick settings) or "
             "`cortex-resnet figures all --full` (publication settings); one figure with "
             "`cortex-resnet figures NAME`. The results behind each figure are in `data/`.", "",
             "| figure | what it shows | command |", "|---|---|---|"]
    for n in known_figures():
        e = GALLERY[n]
        pngs = [p.name for p in sorted(out_dir.glob(f"{n}*.png"))]
        if pngs:
            lines.append(f"| ![{n}]({pngs[0]}) | {e.description} | `cortex-resnet figures {n}` |")
    atomic_write_text(out_dir / "README.md", "\n".join(lines) + "\n")
