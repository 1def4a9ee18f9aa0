"""The torch engine on circuits with named populations (more than E and I) against the Brian2
engine on the same plan: per-population rates within the seed spread of the Brian2 replicas
(replicas of one plan are independent networks: own initial potentials and input spikes), and
the bad-input paths of the CLI (a batch over the memory budget, a spec feature the torch engine
does not have: exit 2 naming the field, nothing written)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from cortex_resnet.cli import app
from cortex_resnet.errors import SpecError
from cortex_resnet.model import pd14 as P
from cortex_resnet.model.circuit import build_circuit
from cortex_resnet.model.spec import load_spec, parse_spec
from cortex_resnet.spiking.build import build_plan
from cortex_resnet.spiking.pd14 import circuit_data
from cortex_resnet.spiking.simulator import make_engine
from cortex_resnet.spiking.torch_engine import TorchEngine

pytestmark = pytest.mark.brian2
MODELS = Path(__file__).resolve().parents[2] / "models"


def _population_rates(plan, raw, t0: float, t1: float) -> dict[str, np.ndarray]:
    """Per named population: the mean rate (Hz) of each replica in ``[t0, t1)``."""
    name_of = plan.circuit.unit_population[plan.unit_of]
    sel = (raw.spike_t_ms >= t0) & (raw.spike_t_ms < t1)
    b, i = raw.spike_i[sel] // plan.n, raw.spike_i[sel] % plan.n
    out = {}
    for pop in plan.circuit.population_names:
        mask = name_of == pop
        counts = np.bincount(b[mask[i]], minlength=plan.batch)
        out[pop] = counts / (mask.sum() * (t1 - t0) * 1e-3)
    return out


def _compare(plan, seed: int, t0: float, factor: float = 3.0) -> dict:
    """Torch vs Brian2 replicas of one plan: every population's mean rate within ``factor``
    standard errors of the difference (Welch; 3 s.e.: ~0.3 % false alarms per population)."""
    ref = _population_rates(plan, make_engine(plan).run(True, seed), t0, plan.duration_ms)
    ours = _population_rates(plan, TorchEngine(plan).run(True, seed), t0, plan.duration_ms)
    for pop in ref:
        se = np.sqrt(ours[pop].var(ddof=1) / ours[pop].size + ref[pop].var(ddof=1) / ref[pop].size)
        gap = abs(ours[pop].mean() - ref[pop].mean())
        print(f"{pop}: torch {ours[pop].mean():.4g} Hz vs brian2 {ref[pop].mean():.4g} Hz (s.e. {se:.3g})")
        assert gap <= factor * se + 1e-9, (pop, ours[pop], ref[pop])
    return {"ours": ours, "ref": ref}


def test_e_pv_som_rates_per_population_lie_within_the_brian2_seed_spread():
    """E, PV and SOM pools (gain-mapped relu circuit, pool 3: 600 neurons), 6 replicas, 150 ms."""
    c = build_circuit(load_spec(MODELS / "e_pv_som.toml").replace(**{"spiking.pool_size": 3}))
    plan = build_plan(c, np.full((6, 1), 0.5), 150.0, seed=3)
    res = _compare(plan, 3, 30.0)
    assert set(res["ref"]) == {"E", "PV", "SOM"}
    assert all(res["ref"][p].mean() > 1.0 for p in res["ref"]), "every population must fire"


@pytest.mark.slow
def test_pd14_at_scale_005_rates_per_population_lie_within_the_brian2_seed_spread():
    """Potjans-Diesmann at scale 0.05 (3,880 neurons, 0.75 M synapses, Poisson background), 4
    replicas, 400 ms (rates from 100 ms on)."""
    c = build_circuit(parse_spec(dict(circuit_data(0.05, "poisson", pool_size=20), name="pd14")))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plan = build_plan(c, np.zeros((4, c.n_inputs)), 400.0, seed=5)
    res = _compare(plan, 5, 100.0)
    assert set(res["ref"]) == set(P.POPULATIONS)


def test_cli_refuses_a_torch_batch_over_the_memory_budget_naming_it(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    monkeypatch.setenv("CORTEX_RESNET_MEMORY_BUDGET_GB", "0.000001")  # 1 kB
    out = tmp_path / "never.nc"
    res = CliRunner().invoke(app, ["simulate", str(MODELS / "lif_ei.toml"), "--backend", "spiking", "--engine",
                                   "torch", "--duration", "40", "--set", "spiking.pool_size=10", "--out", str(out)])
    assert res.exit_code == 2, res.output
    assert "batch = 1" in res.output and not out.exists()


def test_a_spec_feature_the_torch_engine_lacks_is_refused_naming_the_field():
    """White background noise with the exponential-Euler scheme: no such integrator (in Brian2
    either); refused before anything runs (the CLI turns the SpecError into exit 2)."""
    c = build_circuit(load_spec(MODELS / "lif_ei.toml").replace(**{"spiking.pool_size": 10,
                                                                   "spiking.method": "exponential_euler"}))
    plan = build_plan(c, np.full((2, 1), 25.0), 20.0)
    plan.neuron["sigma_mV"][:] = 2.0  # white noise on every neuron
    with pytest.raises(SpecError, match="spiking.method") as err:
        TorchEngine(plan)
    assert err.value.field == "spiking.method"
