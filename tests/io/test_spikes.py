"""Spike files for neo (``cortex_resnet.io.spikes``, ``simulate --spikes-out``): round trip, units, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

neo = pytest.importorskip("neo")
pq = pytest.importorskip("quantities")
pytest.importorskip("nixio")

from cortex_resnet.cli import app
from cortex_resnet.io.results import load_dataset
from cortex_resnet.io.spikes import load_spikes, per_neuron, save_spikes

MODELS = Path(__file__).resolve().parents[2] / "models"
runner = CliRunner()
ARGS = ["simulate", str(MODELS / "lif_ei.toml"), "--backend", "spiking", "--engine", "torch", "--duration", "60",
        "--set", "spiking.pool_size=12", "--stimulus", "constant:amp=[22.0,26.0]", "--no-progress", "--seed", "4"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    d = tmp_path_factory.mktemp("spk")
    res = runner.invoke(app, [*ARGS, "--out", str(d / "r.nc"), "--spikes-out", str(d / "r.nix")])
    assert res.exit_code == 0, res.output
    return d, load_dataset(d / "r.nc")


def _spikes(ds, batch: int, pop: str) -> set[tuple[int, float]]:
    pops = ds["population"].values[ds["spike_unit"].values]
    sel = (ds["spike_batch"].values == batch) & (pops == pop)
    return set(zip(ds["spike_neuron"].values[sel].tolist(), ds["spike_time_ms"].values[sel].tolist()))


def test_nix_file_round_trips_every_spike_with_units_and_annotations(run):
    d, ds = run
    block = neo.io.NixIO(str(d / "r.nix"), mode="ro").read_block()  # plain neo, not our loader
    assert block.annotations["seed"] == 4 and block.annotations["circuit"] == "lif_ei"
    assert json.loads(block.annotations["spec"])["name"] == "lif_ei"
    assert block.annotations["dt_ms"] == pytest.approx(0.1)
    assert [s.annotations["batch"] for s in block.segments] == [0, 1]
    total = 0
    for b, seg in enumerate(block.segments):
        assert {st.annotations["population"] for st in seg.spiketrains} == {"E", "I"}
        for st in seg.spiketrains:
            assert st.units == pq.ms and float(st.t_stop) == pytest.approx(60.0)
            got = set(zip(st.array_annotations["neuron"].tolist(), st.magnitude.tolist()))
            assert got == _spikes(ds, b, st.annotations["population"])
            total += len(st)
    assert total == ds.sizes["spike"] > 0


def test_per_neuron_trains_and_pickle_agree(run, tmp_path):
    d, ds = run
    save_spikes(ds, tmp_path / "r.pkl")
    a, b = load_spikes(d / "r.nix"), load_spikes(tmp_path / "r.pkl")
    for sa, sb in zip(a.segments[1].spiketrains, b.segments[1].spiketrains):
        na, nb = per_neuron(sa), per_neuron(sb)
        assert len(na) == len(sa.annotations["neurons"]) == (48 if sa.annotations["population"] == "E" else 12)
        for x, y in zip(na, nb):
            np.testing.assert_array_equal(x.magnitude, y.magnitude)
        assert sum(len(x) for x in na) == len(sa)


def test_bad_spikes_out_exits_2_and_writes_nothing(tmp_path):
    res = runner.invoke(app, [*ARGS, "--spikes-out", str(tmp_path / "s.nwb")])
    assert res.exit_code == 2 and "--spikes-out" in res.output and ".nix" in res.output
    res = runner.invoke(app, ["simulate", str(MODELS / "linear.toml"), "--spikes-out", str(tmp_path / "s.nix")])
    assert res.exit_code == 2 and "--backend spiking" in res.output
    foreign = tmp_path / "theirs.nix"
    foreign.write_bytes(b"not ours")
    res = runner.invoke(app, [*ARGS, "--spikes-out", str(foreign)])
    assert res.exit_code == 2 and "--force" in res.output
    assert foreign.read_bytes() == b"not ours"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["theirs.nix"]


def test_rerun_replaces_its_own_spike_files_without_force(run, tmp_path):
    """The same command again: our .nc and .nix (and a .pkl) are recognised and replaced, no --force."""
    d, ds = run
    save_spikes(ds, tmp_path / "r.pkl")
    before = (d / "r.nix").stat().st_mtime_ns
    res = runner.invoke(app, [*ARGS, "--out", str(d / "r.nc"), "--spikes-out", str(d / "r.nix")])
    assert res.exit_code == 0, res.output
    assert (d / "r.nix").stat().st_mtime_ns != before and len(load_spikes(d / "r.nix").segments) == 2
    res = runner.invoke(app, [*ARGS, "--spikes-out", str(tmp_path / "r.pkl")])
    assert res.exit_code == 0, res.output
