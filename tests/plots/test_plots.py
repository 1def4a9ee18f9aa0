"""Every plot function renders from a small saved result and refuses results that lack its variables."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from cortex_resnet import load_model, simulate
from cortex_resnet.errors import SpecError
from cortex_resnet.plots.base import plot_decomposition, plot_raster
from cortex_resnet.plots.circuit import (plot_amplification, plot_isn_paradox, plot_rate_vs_spiking,
                                         plot_weights_spectrum)
from cortex_resnet.plots.learning import (plot_anytime_accuracy, plot_compare, plot_training_curves,
                                          plot_unroll_check, unroll_check_dataset)
from cortex_resnet.io.results import save_dataset

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def rate_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    circuit = load_model(ROOT / "models" / "isn.toml")
    ds = simulate(circuit, "step:amp=[0.2,0.4],onset_ms=20,channels=[1]", duration_ms=60, dt_ms=0.5, device="cpu")
    return save_dataset(ds, tmp_path_factory.mktemp("plots") / "isn.nc")


@pytest.fixture(scope="module")
def spiking_like(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small Dataset in the spiking backend's layout (spike variables on dim ``spike``)."""
    rng = np.random.default_rng(0)
    n_spk, pool = 400, 5
    times = np.linspace(0, 50, 11)
    r = rng.random((11, 1, 4))
    ds = xr.Dataset(
        {"r": (("time", "batch", "unit"), r), "x": (("time", "batch", "unit"), 0.5 * r),
         "Fx": (("time", "batch", "unit"), 0.5 * r),
         "spike_time_ms": ("spike", np.sort(rng.uniform(0, 50, n_spk))),
         "spike_neuron": ("spike", rng.integers(0, 4 * pool, n_spk)),
         "spike_batch": ("spike", np.zeros(n_spk, dtype=int))},
        coords={"time": times, "population": ("unit", np.array(["E", "E", "E", "I"]))},
        attrs={"pool_size": pool, "backend": "spiking", "rate_units": "Hz"})
    ds["spike_unit"] = ("spike", ds["spike_neuron"].values // pool)
    return save_dataset(ds, tmp_path_factory.mktemp("spk") / "spk.nc")


@pytest.fixture(scope="module")
def run_dirs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two minimal training-run folders (report.json + metrics.csv) of the documented layout."""
    runs = []
    for variant, acc in (("tied", [0.3, 0.5, 0.6]), ("plain", [0.2, 0.3, 0.3])):
        d = tmp_path_factory.mktemp(variant)
        (d / "report.json").write_text(json.dumps({"variant": variant, "accuracy_per_step": acc,
                                                   "chance": 0.1, "dt_ms": 1.0}))
        (d / "metrics.csv").write_text("epoch,train_loss,test_loss,test_accuracy\n1,2.0,2.1,0.4\n2,1.5,1.7,0.6\n")
        runs.append(d)
    return runs


def _nonempty(path: Path) -> bool:
    return path.is_file() and path.stat().st_size > 1000


@pytest.mark.parametrize("suffix", ["png", "svg", "pdf"])
def test_decomposition_in_every_format(rate_file: Path, tmp_path: Path, suffix: str) -> None:
    assert _nonempty(plot_decomposition(rate_file, tmp_path / f"d.{suffix}"))


@pytest.mark.parametrize("plot", [plot_weights_spectrum, plot_isn_paradox, plot_amplification])
def test_circuit_plots_render_from_a_saved_file(rate_file: Path, tmp_path: Path, plot) -> None:
    assert _nonempty(plot(rate_file, tmp_path / "f.png"))


def test_rate_vs_spiking_side_by_side(rate_file: Path, spiking_like: Path, tmp_path: Path) -> None:
    assert _nonempty(plot_rate_vs_spiking(rate_file, spiking_like, tmp_path / "rs.png"))


def test_raster_renders_from_a_spiking_layout(spiking_like: Path, tmp_path: Path) -> None:
    assert _nonempty(plot_raster(spiking_like, tmp_path / "raster.png"))


def test_unroll_check_plot(tmp_path: Path) -> None:
    ds = unroll_check_dataset(load_model(ROOT / "models" / "linear.toml"), 10, 1.0, np.array([[1.0]]))
    assert float(ds["abs_error"].sel(dtype="float64").max()) <= 1e-10
    path = save_dataset(ds, tmp_path / "u.nc")
    assert _nonempty(plot_unroll_check(path, tmp_path / "u.png"))


@pytest.mark.parametrize("plot", [plot_training_curves, plot_anytime_accuracy])
def test_learning_plots_render_from_run_folders(run_dirs: list[Path], tmp_path: Path, plot) -> None:
    assert _nonempty(plot(run_dirs, tmp_path / "l.png"))


def test_compare_plot(tmp_path: Path) -> None:
    data = {"network_accuracy": 0.6, "rate_accuracy": 0.6, "spiking_accuracy": 0.5,
            "accuracy_per_step": {"network": [0.3, 0.6], "rate": [0.3, 0.6], "spiking": [0.2, 0.5]}}
    (tmp_path / "compare.json").write_text(json.dumps(data))
    assert _nonempty(plot_compare(tmp_path / "compare.json", tmp_path / "c.png"))


@pytest.mark.parametrize("plot", [plot_decomposition, plot_amplification])
def test_missing_variables_give_a_clear_error(rate_file: Path, tmp_path: Path, plot) -> None:
    ds = xr.open_dataset(rate_file, engine="h5netcdf").load().drop_vars(["x", "Fx"])
    with pytest.raises(SpecError, match="needs x"):
        plot(ds, tmp_path / "f.png")
    assert not (tmp_path / "f.png").exists()


def test_raster_refuses_a_rate_result(rate_file: Path, tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="spike_time_ms"):
        plot_raster(rate_file, tmp_path / "r.png")


def test_run_folder_without_report_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="training run folder"):
        plot_training_curves([tmp_path], tmp_path / "t.png")


def test_importing_and_plotting_leave_matplotlib_global_state_alone(rate_file: Path, tmp_path: Path) -> None:
    """No backend switch and no rcParams change on import (a notebook keeps its backend and style);
    a plot applies the project style only inside itself, yet the figure has it (8 pt labels)."""
    import subprocess
    import sys

    script = (
        "import matplotlib\n"
        "matplotlib.use('svg')\n"
        "rc = dict(matplotlib.rcParams)\n"
        "import cortex_resnet.plots.base, cortex_resnet.plots.circuit, cortex_resnet.plots.learning\n"
        "assert matplotlib.get_backend() == 'svg', matplotlib.get_backend()\n"
        "assert dict(matplotlib.rcParams) == rc, 'import changed rcParams'\n"
        f"cortex_resnet.plots.base.plot_decomposition({str(rate_file)!r}, {str(tmp_path / 'd.svg')!r})\n"
        "assert dict(matplotlib.rcParams) == rc, 'plotting changed rcParams'\n")
    res = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert 'font-size="8' in (tmp_path / "d.svg").read_text().replace("font-size: 8", 'font-size="8')


def test_rate_axes_state_units_and_the_hz_factor(rate_file: Path) -> None:
    from cortex_resnet.plots.base import rate_label
    from cortex_resnet.io.results import load_dataset

    ds = load_dataset(rate_file)  # isn: relu, a.u., 10 Hz per unit (the [spiking] default)
    assert rate_label(ds) == "a.u.; 1 a.u. = 10 Hz"
    ds.attrs["rate_units"] = "Hz"
    assert rate_label(ds) == "Hz"


def test_named_population_plots_have_one_trace_per_population(tmp_path: Path) -> None:
    import matplotlib
    from matplotlib import pyplot as plt
    from cortex_resnet.plots import circuit as pc

    from cortex_resnet.model.circuit import build_circuit

    spec = load_model("models/e_pv_som.toml").spec
    c = build_circuit(spec.replace(**{"populations.E.n": 6, "populations.PV.n": 2, "populations.SOM.n": 2}))
    ds = simulate(c, "step:amp=0.5,onset_ms=20", duration_ms=40.0, dt_ms=0.5)
    labels = []
    orig = matplotlib.axes.Axes.legend

    def spy(ax, *a, **k):  # the legend entries of the rate panel: one per population, by name
        labels.append([t for t in ax.get_legend_handles_labels()[1]])
        return orig(ax, *a, **k)

    matplotlib.axes.Axes.legend = spy
    try:
        assert pc.plot_isn_paradox(ds, tmp_path / "isn.png").is_file()
    finally:
        matplotlib.axes.Axes.legend = orig
        plt.close("all")
    assert labels[-1] == ["E", "PV", "SOM"]
    assert np.isfinite(pc._pop_mean(ds, "r", "I")).all()  # "I": every inhibitory unit (PV and SOM)
