"""C++ standalone builds cached per structure (:mod:`cortex_resnet.spiking.cache`)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from cortex_resnet.model.circuit import build_circuit
from cortex_resnet.model.spec import load_spec
from cortex_resnet.spiking.simulator import simulate_spiking
from cortex_resnet.spiking.cache import MANIFEST, cache_root

pytestmark = pytest.mark.brian2
MODELS = Path(__file__).resolve().parents[2] / "models"


def _circuit(**changes):
    base = {"spiking.pool_size": 10, "spiking.synapse.p_connect": 1.0}
    return build_circuit(load_spec(MODELS / "lif_ei.toml").replace(**{**base, **changes}))


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    """A private cache, built with -O0 (the test is about caching, not about speed)."""
    from brian2 import prefs

    key = "codegen.cpp.extra_compile_args_gcc"
    old = list(prefs[key])
    prefs[key] = ["-w", "-O0"]
    yield tmp_path_factory.mktemp("standalone")
    prefs[key] = old


@pytest.fixture(scope="module")
def first_run(cache_dir):
    return simulate_spiking(_circuit(), "constant:amp=25", duration_ms=100.0, seed=2, standalone=True,
                            cache_dir=cache_dir)


def _build_files(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*")
            if p.suffix in (".o", ".cpp", ".h") or p.name == "main"}


def test_first_run_compiles_once_into_the_structure_folder(first_run, cache_dir):
    assert first_run.encoding["compiled"] is True
    assert first_run.attrs["device"] == "cpp_standalone"
    folder = cache_root(cache_dir) / first_run.attrs["structure_hash"]
    assert (folder / "main").is_file()
    assert json.loads((folder / MANIFEST).read_text())["builds"] == 1


def test_other_weights_and_stimulus_rerun_the_binary_without_compiling(first_run, cache_dir):
    folder = cache_root(cache_dir) / first_run.attrs["structure_hash"]
    before = _build_files(folder)
    ds = simulate_spiking(_circuit(**{"connectivity.J_EE": 0.8, "connectivity.J_EI": 1.4, "connectivity.J_II": 1.4}),
                          "step:amp=30,onset_ms=20", duration_ms=100.0, seed=2, standalone=True,
                          cache_dir=cache_dir)
    assert ds.attrs["structure_hash"] == first_run.attrs["structure_hash"]
    assert ds.encoding["compiled"] is False
    assert _build_files(folder) == before  # no source written, nothing recompiled or relinked
    assert json.loads((folder / MANIFEST).read_text())["builds"] == 1
    assert [p.name for p in cache_root(cache_dir).iterdir()] == [folder.name]  # no half builds left
    assert not np.array_equal(ds["r"].values, first_run["r"].values)  # the new values took effect


def test_standalone_and_runtime_give_the_same_spikes(first_run):
    rt = simulate_spiking(_circuit(), "constant:amp=25", duration_ms=100.0, seed=2)
    assert rt.attrs["device"].startswith("runtime")
    np.testing.assert_array_equal(rt["spike_neuron"].values, first_run["spike_neuron"].values)
    np.testing.assert_allclose(rt["spike_time_ms"].values, first_run["spike_time_ms"].values, atol=1e-9)
    np.testing.assert_array_equal(rt["x"].values, first_run["x"].values)


def test_runs_write_only_the_monitors(first_run, cache_dir):
    """The binary's end-of-run dump keeps only the files the results are read from (not the
    synapse tables: ~20 bytes per synapse, the standalone slowdown on large networks)."""
    folder = cache_root(cache_dir) / first_run.attrs["structure_hash"]
    man = json.loads((folder / MANIFEST).read_text())
    assert man["arrays_not_written"] > 10
    src = (folder / "objects.cpp").read_text()
    body = src[src.index("void _write_arrays()"):src.index("// Write last run info to disk")]
    written = set(re.findall(r'results_dir \+ "([^"]+)"', body))
    assert written == {r["file"] for r in man["results"].values()}
    assert "_synaptic_pre" not in body


@pytest.mark.slow  # an OpenMP compile plus two threads: 29 s idle, minutes on a busy 2-core machine
def test_openmp_build_runs_on_two_threads_with_the_same_statistics(cache_dir):
    """threads = 2: a separate OpenMP build (``-openmp``), run on 2 threads; same circuit, same
    spike count as the single-thread build within 4 Poisson standard deviations (other random
    streams: not the same spikes; a count of n has sd ~sqrt(n) or more, the network's
    fluctuations add to it)."""
    from cortex_resnet.spiking.build import build_plan
    from cortex_resnet.spiking.cache import StandaloneEngine

    plan = build_plan(_circuit(), "constant:amp=25", 1000.0, seed=2)
    one, two = StandaloneEngine(plan, cache_dir), StandaloneEngine(plan, cache_dir, threads=2)
    assert two.folder.name == one.folder.name + "-openmp" and two.manifest["openmp_threads"] == 2
    assert "CORTEX_RESNET_THREADS" in (two.folder / "main.cpp").read_text()
    n1, n2 = one.run(seed=3).spike_i.size, two.run(seed=3).spike_i.size
    assert abs(n2 - n1) < 4 * np.sqrt(2 * n1), (n1, n2)
