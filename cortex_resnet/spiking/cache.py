"""C++ standalone builds cached per network *structure*; parameters are run-time arguments.

The first run of a structure (:meth:`SpikingPlan.structure_hash`: sizes,
equations, synapse graph, delays, duration, step) generates and compiles a
Brian2 C++ standalone project with placeholder values, into
``<cache>/<hash>/`` (built in a temporary folder, then renamed: concurrent
builds never see half a project). Every run -- the first included -- then calls
the compiled binary directly with all values as command-line run arguments
(Brian2's ``run_args`` protocol: ``group.variable=FILE``), and the random seed
through the environment (code inserted at the start of ``main``), so weights,
neuron parameters, input rates, noise and seeds change without recompiling.
``manifest.json`` in the folder records the argument sizes, the result files
and ``builds`` (how often this structure was compiled: once).

The cache lives in ``$CORTEX_RESNET_CACHE_DIR`` or ``~/.cache/cortex_resnet``.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from cortex_resnet.errors import SimulationError
from cortex_resnet.spiking.brian import RawRun, construct, run_values, trace_every
from cortex_resnet.spiking.build import SpikingPlan
from cortex_resnet.spiking.standalone_patch import THREADS_ENV, keep_only_results, threads_from_environment

__all__ = ["cache_root", "StandaloneEngine", "MANIFEST", "SEED_ENV"]

MANIFEST = "manifest.json"
SEED_ENV = "CORTEX_RESNET_SEED"
_SEED_CODE = (
    "{ const char* _cr_seed = std::getenv(\"%s\"); "
    "unsigned long _cr_s = _cr_seed ? std::strtoul(_cr_seed, NULL, 10) : 0UL; "
    "for (size_t _i = 0; _i < brian::_random_generators.size(); _i++) "
    "brian::_random_generators[_i].seed(_cr_s + _i); }" % SEED_ENV)


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """The folder holding one build per structure (created if missing)."""
    if cache_dir is None:
        cache_dir = os.environ.get("CORTEX_RESNET_CACHE_DIR") or Path.home() / ".cache" / "cortex_resnet"
    root = Path(cache_dir) / "brian2_standalone"
    root.mkdir(parents=True, exist_ok=True)
    return root


def _build(plan: SpikingPlan, target: Path, threads: int = 1) -> dict[str, Any]:
    """Generate and compile the project for ``plan``'s structure into ``target``; return the manifest.

    The generated code is edited before compiling (:mod:`cortex_resnet.spiking.standalone_patch`):
    the run writes only the monitors' files; ``threads > 1`` compiles with OpenMP."""
    import brian2 as b2  # deferred: slow, sets global hooks
    from brian2.codegen.cpp_prefs import get_compiler_and_args  # deferred: Brian2
    from brian2.devices.device import all_devices, set_device

    dev = all_devices["cpp_standalone"]
    dev.reinit()
    set_device("cpp_standalone", directory=str(target), build_on_run=False)
    old_threads = b2.prefs.devices.cpp_standalone.openmp_threads
    b2.prefs.devices.cpp_standalone.openmp_threads = threads if threads > 1 else 0
    try:
        dev.insert_code("main", _SEED_CODE)
        objs = construct(plan, b2, placeholder=True)
        objs["network"].run(plan.duration_ms * b2.ms, namespace={})
        t0 = time.perf_counter()
        dev.build(directory=str(target), compile=False, run=False, with_output=False)
        res = _result_files(plan, objs, dev)
        dropped = keep_only_results(target, {r["file"] for r in res.values()})
        openmp = threads_from_environment(target)
        dev.compile_source(str(target), get_compiler_and_args()[0], False, False)
        build_s = time.perf_counter() - t0
        args = {}
        for key in run_values(plan):
            obj, var = key.split(".")
            if var == "values":
                ta = objs["neurons"].namespace["I_in"]
                args[key] = {"size": int(ta.values.size), "dtype": str(ta.values.dtype)}
            else:
                v = objs[obj].variables[var]
                args[key] = {"size": int(v.size), "dtype": str(np.dtype(v.dtype))}
        for pop in ("E", "I"):
            if f"syn_{pop}" in objs and not plan.shared_weight(pop):
                # dynamic arrays have no size before the run: the graph gives it
                args[f"syn_{pop}.w"]["size"] = int(plan.batch * plan.synapses[pop][0].size)
        return {"structure": plan.structure(), "hash": plan.structure_hash(), "builds": 1,
                "build_s": build_s, "brian2": b2.__version__, "args": args, "results": res,
                "arrays_not_written": dropped, "openmp_threads": threads if openmp else 0,
                "built": time.strftime("%Y-%m-%dT%H:%M:%S")}
    finally:
        b2.prefs.devices.cpp_standalone.openmp_threads = old_threads
        set_device("runtime")
        dev.reinit()


def _result_files(plan: SpikingPlan, objs: dict[str, Any], dev: Any) -> dict[str, dict[str, Any]]:
    """The files a run's results are read from (the monitors' arrays)."""
    res = {}
    sp = objs["spikes"]
    for name, var in (("spike_i", sp.variables["i"]), ("spike_t", sp.variables["t"])):
        res[name] = {"file": dev.get_array_filename(var), "dtype": str(np.dtype(var.dtype))}
    if "traces" in objs:
        tr = objs["traces"]
        res["trace_t"] = {"file": dev.get_array_filename(tr.variables["t"]), "dtype": "float64"}
        res["trace_v"] = {"file": dev.get_array_filename(tr.variables["v"]), "dtype": "float64",
                          "columns": int(plan.trace_neurons.size)}
    return res


class StandaloneEngine:
    """A compiled standalone binary for the plan's structure (built on first use).

    Attributes
    ----------
    compiled : whether this engine had to build (False: the cache had the structure)
    compile_s : seconds spent building (0 on a cache hit, apart from the lookup)
    folder : the build folder (``<hash>`` or, ``threads > 1``: ``<hash>-openmp``, run on ``threads`` threads)
    """

    def __init__(self, plan: SpikingPlan, cache_dir: str | Path | None = None, threads: int = 1):
        self.plan = plan
        self.threads = int(threads)
        root = cache_root(cache_dir)
        # OpenMP code is another build (its random streams are per thread); any thread count runs it
        self.folder = root / (plan.structure_hash() + ("-openmp" if self.threads > 1 else ""))
        t0 = time.perf_counter()
        self.compiled = False
        if not (self.folder / MANIFEST).is_file():
            tmp = Path(tempfile.mkdtemp(prefix=f"{self.folder.name}.build-", dir=root))
            try:
                manifest = _build(plan, tmp, self.threads)
                (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1))
                try:
                    os.rename(tmp, self.folder)
                    self.compiled = True
                except OSError:  # another process finished the same structure first
                    pass
            except Exception as err:
                raise SimulationError(f"C++ standalone build failed ({type(err).__name__}: {err}); "
                                      "run without --standalone (runtime mode) or check the compiler") from err
            finally:
                if tmp.exists():
                    shutil.rmtree(tmp, ignore_errors=True)
        self.compile_s = time.perf_counter() - t0
        self.manifest = json.loads((self.folder / MANIFEST).read_text())
        self.last_run_s = 0.0
        self.last_sim_s = float("nan")
        self.last_run_cpu_s = float("nan")

    def run(self, recurrent: bool = True, seed: int = 0, progress=None) -> RawRun:
        """Run the binary with this plan's values (``recurrent=False``: synaptic weights 0).
        ``progress`` (a callback with the completed fraction) is told 1.0 at the end."""
        man = self.manifest
        (self.folder / "runs").mkdir(exist_ok=True)
        rundir = Path(tempfile.mkdtemp(prefix="run-", dir=self.folder / "runs"))
        try:
            args = []
            for key, value in run_values(self.plan, recurrent).items():
                spec = man["args"].get(key)
                if spec is None:
                    raise SimulationError(f"standalone build {self.folder.name} has no argument {key}; "
                                          "delete the folder to rebuild")
                arr = np.asarray(value, dtype=spec["dtype"])
                if arr.ndim == 0:
                    args.append(f"{key}={arr.item()!r}")
                    continue
                if arr.size != spec["size"]:
                    raise SimulationError(f"{key}: {arr.size} values for {spec['size']} in the build")
                fname = rundir / f"{key}.dat"
                np.ascontiguousarray(arr).tofile(fname)
                args.append(f"{key}={fname}")
            results = rundir / "results"
            results.mkdir()
            env = dict(os.environ, **{SEED_ENV: str(int(seed) % (2**32)), THREADS_ENV: str(self.threads)})
            env.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # spinning threads starve each other on a busy machine
            t0, cpu0 = time.perf_counter(), _children_cpu_s()
            proc = subprocess.run([str(self.folder / "main"), "--results_dir", str(results) + os.sep] + args,
                                  cwd=self.folder, env=env, capture_output=True, text=True)
            self.last_run_s = time.perf_counter() - t0
            self.last_run_cpu_s = _children_cpu_s() - cpu0  # CPU seconds: meaningful on a busy machine
            info = results / "last_run_info.txt"  # Brian2: simulated loop's time, completed fraction
            self.last_sim_s = float(info.read_text().split()[0]) if info.is_file() else float("nan")
            if progress is not None:
                progress(1.0)
            if proc.returncode or "Error" in proc.stderr or "Cannot set" in proc.stderr:
                raise SimulationError(f"standalone run failed (exit {proc.returncode}): "
                                      f"{(proc.stderr or proc.stdout)[-800:]}")
            read = lambda name: np.fromfile(results / man["results"][name]["file"],  # noqa: E731
                                            dtype=man["results"][name]["dtype"])
            spike_i = read("spike_i").astype(np.int64)
            spike_t = read("spike_t") * 1e3
            if "trace_v" in man["results"]:
                step = trace_every(self.plan)
                tt = read("trace_t")[::step] * 1e3
                tv = read("trace_v").reshape(-1, man["results"]["trace_v"]["columns"])[::step] * 1e3
            else:
                tt, tv = np.zeros(0), np.zeros((0, 0))
            return RawRun(spike_i, spike_t, tt, tv)
        finally:
            shutil.rmtree(rundir, ignore_errors=True)

    def __repr__(self) -> str:
        """One line: kind and key sizes (not the arrays)."""
        return f"StandaloneEngine({self.plan.n} neurons x batch {self.plan.batch}, folder {str(self.folder)[-60:]!r})"


def _children_cpu_s() -> float:
    """User + system CPU seconds of this process's finished children."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime
