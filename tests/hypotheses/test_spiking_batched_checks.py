"""The spiking ISN and amplification checks with the torch engine: a circuit's extra-drive / input
levels as one batch give exactly what the levels run one at a time give (same replica seeds, the
same operating input of the gain mapping, the same engine)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from cortex_resnet.fanout.batches import amp_batch, condition_keys, operating_input, run_amp_batch
from cortex_resnet.hypotheses import _spiking
from cortex_resnet.hypotheses._circuits import spiking_circuit_for_seed
from cortex_resnet.hypotheses.amplification import HYPOTHESIS as AMP, AmplificationParams
from cortex_resnet.hypotheses.isn_paradox import HYPOTHESIS as ISN, IsnParadoxParams
from cortex_resnet.hypotheses.runner import run_hypothesis
from cortex_resnet.io.results import load_dataset
from cortex_resnet.model.circuit import build_circuit
from cortex_resnet.model.spec import load_spec
from cortex_resnet.model.stimulus_spec import parse_stimulus

SMALL = {"n_E": 40, "n_I": 10, "spiking_pool_size": 10, "backends": ["rate", "spiking"], "engine": "torch"}
ISN_SMALL = {**SMALL, "spiking_onset_ms": 60.0, "spiking_duration_ms": 120.0, "spiking_extra_drives": [0.0, 0.3, 0.6]}
AMP_SMALL = {**SMALL, "J_EE_values": [2.0], "spiking_duration_ms": 100.0, "spiking_input_amps": [0.5, 1.0, 2.0]}


def _spiking_rows(hyp, params):
    prepared = hyp.prepared(params, None)
    return [hyp.task(prepared, c, 3) for c in hyp.design(params) if c["backend"] == "spiking"]


def _assert_same(batched: list[dict], alone: list[dict]) -> None:
    for x, y in zip(batched, alone, strict=True):
        assert x.keys() == y.keys()
        for key in x:
            np.testing.assert_array_equal(np.asarray(x[key], float), np.asarray(y[key], float), err_msg=key)


def _batched_and_alone(hyp, params):
    _spiking._BATCHES.clear()
    batched = _spiking_rows(hyp, params)
    n_batches = len(_spiking._BATCHES)
    _spiking._BATCHES.clear()
    alone = _spiking_rows(hyp, params.model_copy(update={"batch_conditions": False}))
    assert not _spiking._BATCHES, "one run per level, nothing batched"
    _assert_same(batched, alone)
    return batched, n_batches


def test_amplification_levels_as_one_batch_equal_the_levels_one_at_a_time():
    batched, n_batches = _batched_and_alone(AMP, AmplificationParams(**{**AMP_SMALL, "spiking_input_amps": [1.0, 2.0]}))
    assert n_batches == 1 and len(batched) == 2, "the circuit's two input levels ran as one batch"
    assert all(r["rE"] > 0 and r["xE"] > 0 for r in batched), "the network must fire"
    assert batched[1]["xE"] > batched[0]["xE"], "more input, more feedforward E rate"


@pytest.mark.slow  # two gain mappings of the microcircuit (~10 s each on a busy machine)
def test_amplification_couplings_and_levels_as_one_batch_equal_one_at_a_time():
    """Spiking rows at J_EE 1 and 2 x two input levels: ONE batch (per-replica weights) == four runs."""
    params = AmplificationParams(**{**AMP_SMALL, "J_EE_values": [1.0, 2.0], "spiking_J_EE_values": [1.0, 2.0],
                                    "spiking_input_amps": [1.0, 2.0]})
    batched, n_batches = _batched_and_alone(AMP, params)
    assert n_batches == 1 and len(batched) == 4
    assert batched[0]["rE"] != batched[2]["rE"], "J_EE changes the spiking E rate"


@pytest.mark.slow
def test_isn_levels_as_one_batch_equal_the_levels_one_at_a_time():
    """Both circuits (isn, control; J_EE 2 and 0.5: the same graph, per-replica weights), three levels
    each: ONE batch; 8 network builds (~25 s CPU: the gain mapping of the ISN circuits is the cost, not
    the runs)."""
    params = IsnParadoxParams(**ISN_SMALL)
    batched, n_batches = _batched_and_alone(ISN, params)
    assert n_batches == 1 and len(batched) == 6
    assert all(np.mean(r["rI_trace"]) > 0 for r in batched), "the network must fire"
    # the sham (drive 0) is the drift every level of its circuit subtracts: its own change is 0 exactly
    conds = [c for c in ISN.design(params) if c["backend"] == "spiking"]
    for J in {c["J_EE"] for c in conds}:
        rows = {c["drive"]: r for c, r in zip(conds, batched) if c["J_EE"] == J}
        assert rows[0.0]["delta_rI"] == 0.0 and rows[0.0]["delta_rE"] == 0.0
        assert rows[0.0]["drift_rI"] == rows[0.3]["drift_rI"] == rows[0.6]["drift_rI"]


@pytest.mark.slow  # 13 s idle, ~35 s on a busy 2-core machine; the batched == alone property stays in the default suite (amplification)
def test_isn_levels_share_their_random_numbers_until_the_step():
    """Common random numbers: the levels' replicas spike identically until the random-number chunk
    (16 steps of 0.1 ms) that holds the step at 60 ms; the drive changes the spikes after it; a level
    run alone with its key and the batch's operating input gives the batch's replica exactly."""
    p = IsnParadoxParams(**ISN_SMALL)
    c = spiking_circuit_for_seed(ISN.prepared(p, None), 3, p.isn_J_EE)
    base, amps = "step:amp=1,onset_ms=60,channels=[1]", [0.0, 0.6]
    keys, u_op = condition_keys(3, 2, shared=True), operating_input(c, amp_batch(base, amps), 120.0)
    opts = {"duration_ms": 120.0, "seed": 3, "u_operating": u_op, "decompose": False, "mean_field": False}
    ds = run_amp_batch(c, base, amps, keys, **opts)
    t, i, b = ds["spike_time_ms"].values, ds["spike_neuron"].values, ds["spike_batch"].values
    chunk_start = 16 * 0.1 * int(600 / 16)  # ms: the chunk with step 600 starts at step 592
    before = [(t[(b == k) & (t < chunk_start)], i[(b == k) & (t < chunk_start)]) for k in (0, 1)]
    assert before[0][0].size > 100
    np.testing.assert_array_equal(before[0][0], before[1][0])
    np.testing.assert_array_equal(before[0][1], before[1][1])
    assert not np.array_equal(t[b == 0], t[b == 1]), "the extra drive changes the spikes after the step"
    alone = run_amp_batch(c, base, amps[1:], keys[1:], **opts)
    np.testing.assert_array_equal(alone["spike_time_ms"].values, t[b == 1])
    np.testing.assert_array_equal(alone["spike_neuron"].values, i[b == 1])


def test_default_levels_keep_the_conditions_and_the_operating_input():
    """Without levels the design is the tested level only (labels as before), and the operating input
    of the one-level batch is the old default (the stimulus at the end of the run)."""
    labels = [c["condition"] for c in ISN.design(IsnParadoxParams(backends=["rate", "spiking"]))]
    assert labels == ["isn", "control", "isn spiking", "control spiking"]
    labels = [c["condition"] for c in AMP.design(AmplificationParams(backends=["rate", "spiking"]))]
    assert labels[-1] == "J_EE=2 spiking" and sum("spiking" in x for x in labels) == 1
    p = IsnParadoxParams(**ISN_SMALL)
    c = spiking_circuit_for_seed(ISN.prepared(p, None), 0, p.isn_J_EE)
    one = amp_batch("step:amp=1,onset_ms=60,channels=[1]", [0.3])
    assert one == parse_stimulus("step:amp=[0.3],onset_ms=60,channels=[1]")
    np.testing.assert_array_equal(operating_input(c, one, 120.0), [0.0, 0.3])
    assert condition_keys(5, 3, shared=True) == [condition_keys(5, 1)[0]] * 3


def test_a_sham_condition_does_not_warn_of_its_zero_input():
    """The ISN check's sham replica (extra drive 0) runs on purpose without input: no StimulusWarning
    (a user reading the hypothesis's output was told to "give a stimulus with a non-zero amplitude");
    a batch with a non-zero level is not affected (its input is not zero)."""
    import warnings

    from cortex_resnet.model.stimulus import StimulusWarning

    p = IsnParadoxParams(**ISN_SMALL)
    c = spiking_circuit_for_seed(ISN.prepared(p, None), 0, p.isn_J_EE)
    with warnings.catch_warnings():
        warnings.simplefilter("error", StimulusWarning)
        ds = run_amp_batch(c, "step:amp=1,onset_ms=5,channels=[1]", [0.0], [1], duration_ms=10.0, seed=0,
                           u_operating=np.zeros(c.n_inputs), decompose=False, mean_field=False)
    assert "zero for the whole run" in str(ds.attrs), "the result still records it"


@pytest.mark.parametrize("model, field, value", [
    (IsnParadoxParams, "spiking_extra_drives", [0.0, 0.6]),  # misses extra_drive = 0.3
    (IsnParadoxParams, "spiking_extra_drives", [0.3, 0.3]),
    (IsnParadoxParams, "engine", "nest"),
    (AmplificationParams, "spiking_input_amps", [0.5, 2.0]),  # misses input_amp = 1
    (AmplificationParams, "spiking_input_amps", [-1.0, 1.0]),
    (AmplificationParams, "spiking_J_EE_values", [1.0]),  # misses test_J_EE = 2
    (AmplificationParams, "spiking_J_EE_values", [0.0, 2.0]),  # 0: no E -> E pathway
    (AmplificationParams, "engine", "gpu"),
])
def test_bad_levels_and_engines_are_refused_naming_the_field(model, field, value):
    with pytest.raises(ValidationError, match=field):
        model(**{field: value})


def test_brian2_refuses_a_batch():
    p = IsnParadoxParams(**ISN_SMALL)
    c = spiking_circuit_for_seed(ISN.prepared(p, None), 0, p.isn_J_EE)
    with pytest.raises(Exception, match="engine"):
        run_amp_batch(c, "constant:amp=1", [0.1, 0.2], [1, 2], duration_ms=10.0, seed=0,
                      u_operating=np.zeros(c.n_inputs), decompose=False, engine="brian2")


@pytest.mark.slow
@pytest.mark.parametrize("name, params", [
    ("isn-paradox", 'spiking_onset_ms = 60.0\nspiking_duration_ms = 120.0\nspiking_extra_drives = [0.0, 0.3]\n'),
    ("amplification", 'J_EE_values = [2.0]\nspiking_duration_ms = 100.0\nspiking_input_amps = [0.5, 1.0]\n'),
])
def test_runs_with_levels_report_every_level(name, params, tmp_path):
    """The whole pipeline (tasks, analysis, table, figure, report) with levels on the torch engine: one
    table row per level, the verdicts on the tested level."""
    spec = tmp_path / "spec.toml"
    spec.write_text(f'hypothesis = "{name}"\nseeds = 2\n[params]\nn_E = 40\nn_I = 10\nspiking_pool_size = 10\n'
                    f'backends = ["rate", "spiking"]\nengine = "torch"\n{params}')
    s = run_hypothesis(name, spec=spec, workers=0, out=tmp_path / "run")
    ds = load_dataset(tmp_path / "run" / "results.nc")
    spiking = [str(c) for c in ds["condition"].values if "spiking" in str(c)]
    assert len(spiking) == (4 if name == "isn-paradox" else 2)
    assert (tmp_path / "run" / "report.md").is_file() and (tmp_path / "run" / "figures" / f"{name}.png").is_file()
    assert any("spiking" in c["label"] for c in s["comparisons"])


def test_circuits_that_differ_in_coupling_run_as_one_batch_equal_each_circuit_alone():
    """circuits_run: two lif_ei circuits (J_EE 0.5 and 1.2; identity mapping, no background noise: a build
    in ms) x two levels of a step as ONE batch == condition_run of each circuit alone, level by level."""
    spec = load_spec(Path(__file__).resolve().parents[2] / "models" / "lif_ei.toml").replace(
        **{"spiking.pool_size": 10, "spiking.background_noise": "none"})
    circuits = [build_circuit(spec.replace(**{"connectivity.J_EE": j})) for j in (0.5, 1.2)]
    stim = amp_batch("step:amp=1,onset_ms=2,channels=[0]", [28.0, 34.0])
    opts = {"decompose": False, "shared_streams": True, "mean_field": False}
    _spiking._BATCHES.clear()
    for i, level in ((0, 1), (1, 0), (1, 1)):  # (circuit, level): three of the four, for time
        ds, b = _spiking.circuits_run(circuits, i, stim, level, 25.0, 3, **opts)
        alone, _ = _spiking.circuits_run(circuits, i, stim, level, 25.0, 3, batched=False, **opts)
        sel = ds["spike_batch"].values == b
        assert sel.sum() > 10, "the network must fire"
        np.testing.assert_array_equal(ds["spike_time_ms"].values[sel], alone["spike_time_ms"].values)
        np.testing.assert_array_equal(ds["spike_neuron"].values[sel], alone["spike_neuron"].values)
    assert len(_spiking._BATCHES) == 1, "both circuits' levels ran as one batch"
