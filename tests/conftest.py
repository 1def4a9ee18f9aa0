"""Shared test configuration: seeds, the gpu marker, and the fuzz-case counter."""

from __future__ import annotations

import collections

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


@pytest.fixture
def rng() -> np.random.Generator:
    """A fixed-seed NumPy generator for tests."""
    return np.random.default_rng(12345)


@pytest.fixture(autouse=True)
def _torch_determinism():
    """Tests never depend on the global torch RNG; seed it anyway so a slip is reproducible."""
    torch.manual_seed(0)
    yield


def pytest_collection_modifyitems(config, items):
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
    if workeroutput is not None:
        workeroutput["fuzz_counts"] = dict(FUZZ_COUNTS)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    """The controller adds up the workers' fuzz counts (printed by pytest_terminal_summary)."""
    FUZZ_COUNTS.update(getattr(node, "workeroutput", {}).get("fuzz_counts", {}))
