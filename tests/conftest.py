"""Shared test configuration: seeds, the gpu marker, and the fuzz-case counter."""

from __future__ import annotations

import collections
import json
import os
import resource
import time

import numpy as np
import pytest
import torch

# One BLAS thread in tests: small eigen-decompositions and mat-vecs are dominated by
# thread start-up and contention on a 2-core machine (measured: 500 x 500 eigvals
# 0.18 s with one thread vs 6-12 s with two under load). Benchmarks set their own.
try:
    from threadpoolctl import threadpool_limits

    _BLAS_LIMIT = threadpool_limits(1, "blas")
except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
    _BLAS_LIMIT = None

# case counts per fuzz test, printed at the end of the run (issue: report the cases tried)
FUZZ_COUNTS: collections.Counter[str] = collections.Counter()


# CORTEX_RESNET_TEST_CPU=folder: each worker writes the CPU seconds (its own plus its finished
# children's) and wall seconds of every test phase to folder/cpu-<worker>.json. CPU time, unlike
# --durations' wall time, does not grow with the machine's load: the measure for trimming the suite.
_CPU_DIR = os.environ.get("CORTEX_RESNET_TEST_CPU")
_CPU_TIMES: dict[str, list[float]] = {}


def _cpu_s() -> float:
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    if not _CPU_DIR:
        yield
        return
    cpu0, wall0 = _cpu_s(), time.perf_counter()
    yield
    _CPU_TIMES[item.nodeid] = [_cpu_s() - cpu0, time.perf_counter() - wall0]


@pytest.fixture
def rng() -> np.random.Generator:
    """A fixed-seed NumPy generator for tests."""
    return np.random.default_rng(12345)


@pytest.fixture(autouse=True)
def _torch_determinism():
    """Tests never depend on the global torch RNG; seed it anyway so a slip is reproducible."""
    torch.manual_seed(0)
    yield


# Modules that take longest, most first (wall seconds of each module's tests, summed, in a run of the
# default suite with 2 workers on a busy 2-core machine, 2026-11-30). `make test` runs
# `--dist loadscope --no-loadscope-reorder`: a module is one worker's unit and units are handed out
# in collection order, so starting the longest first keeps one heavy module from being a lone tail
# (xdist's own reorder sorts by number of tests: the 5-test demo module came last).
HEAVY_FIRST = (
    "tests/hypotheses/test_hypotheses.py", "tests/workflows/test_demo.py", "tests/spiking/test_spiking.py",
    "tests/spiking/test_spiking_torch.py", "tests/fanout/test_sweep.py", "tests/workflows/test_compare.py",
    "tests/cli/test_cli_simulate.py", "tests/rate/test_reliability_signals.py", "tests/plots/test_plots.py",
    "tests/cli/test_spiking_cli.py", "tests/spiking/test_spiking_honesty.py", "tests/io/test_spikes.py",
    "tests/spiking/test_spiking_cache.py", "tests/training/test_train_gpu_path.py",
    "tests/spiking/test_spiking_build.py", "tests/spiking/test_pd14.py", "tests/model/test_fixedpoint_implicit.py",
    "tests/model/test_fuzz_spec.py", "tests/hypotheses/test_stats.py", "tests/training/test_train.py",
    "tests/training/test_train_resume.py", "tests/workflows/test_export_cubalif.py",
)


def _heavy_rank(item) -> int:
    path = item.nodeid.split("::")[0]
    return HEAVY_FIRST.index(path) if path in HEAVY_FIRST else len(HEAVY_FIRST)


def pytest_collection_modifyitems(config, items):
    items.sort(key=_heavy_rank)  # stable: the rest keep their order, a module's tests theirs
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if FUZZ_COUNTS:
        total = sum(FUZZ_COUNTS.values())
        parts = ", ".join(f"{k}: {v}" for k, v in sorted(FUZZ_COUNTS.items()))
        terminalreporter.write_line(f"fuzz cases tried: {total} ({parts})")


def pytest_sessionfinish(session, exitstatus):
    """Under pytest-xdist each worker hands its fuzz counts to the controller."""
    workeroutput = getattr(session.config, "workeroutput", None)
    if _CPU_DIR and _CPU_TIMES:
        name = session.config.workerinput["workerid"] if workeroutput is not None else "main"
        with open(os.path.join(_CPU_DIR, f"cpu-{name}.json"), "w") as f:
            json.dump(_CPU_TIMES, f)
    if workeroutput is not None:
        workeroutput["fuzz_counts"] = dict(FUZZ_COUNTS)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    """The controller adds up the workers' fuzz counts (printed by pytest_terminal_summary)."""
    FUZZ_COUNTS.update(getattr(node, "workeroutput", {}).get("fuzz_counts", {}))
