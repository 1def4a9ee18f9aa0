"""Dask fan-out: cache and resume, gathering into xarray, a killed worker, bad schedulers."""

from __future__ import annotations

import os
import signal
import socket
import sys
import time
from pathlib import Path

import cloudpickle
import numpy as np
import pytest

from cortex_resnet.errors import SimulationError, SpecError
from cortex_resnet.fanout.tasks import Task, TaskCache, check_scheduler_address, run_tasks, task_key, to_dataset

# task functions defined here travel to Dask workers by value
cloudpickle.register_pickle_by_value(sys.modules[__name__])


def _work(seed: int, scale: float, log_dir: str | None = None) -> dict:
    """A small deterministic computation; logs each execution when ``log_dir`` is given."""
    if log_dir is not None:
        Path(log_dir, f"ran-{seed}-{scale}-{time.perf_counter_ns()}").touch()
    rng = np.random.default_rng(seed)
    v = rng.normal(size=3) * scale
    return {"mean": float(v.mean()), "vec": v.tolist(), "seq": list(range(seed % 3 + 1))}


def _fail_on(seed: int, bad_seed: int, flag: str) -> dict:
    if seed == bad_seed and Path(flag).exists():
        raise RuntimeError(f"simulated failure of seed {seed}")
    return _work(seed, 1.0)


def _killed_once(seed: int, marker_dir: str, victim: int, brian: bool = False) -> dict:
    """The task of seed ``victim`` kills its own worker process (SIGKILL) the first time it runs.

    With ``brian``, the task imports Brian2, which installs a signal handler at import: allowed
    only in a worker's main thread, so it works only if the worker preloaded it (also after a
    restart)."""
    if brian:
        import brian2  # noqa: F401

    marker = Path(marker_dir, "killed")
    if seed == victim and not marker.exists():
        marker.touch()
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(0.3)  # simulated work inside the task (the test waits for results, not for time)
    return _work(seed, 2.0)


def _tasks(fn, seeds, *extra, conds=("a", "b")) -> list[Task]:
    return [Task(fn=fn, args=(s, *extra), inputs={"fn": fn.__name__, "seed": s, "cond": c, "extra": list(extra)},
                 label=f"{c}/{s}", coords={"condition": c, "seed": s})
            for c in conds for s in seeds]


def test_task_key_is_stable_and_sensitive():
    a = task_key({"x": 1, "y": [1, 2]})
    assert a == task_key({"y": [1, 2], "x": 1}) and len(a) == 64
    assert a != task_key({"x": 1, "y": [1, 3]})


def test_serial_results_in_task_order():
    tasks = _tasks(_work, [0, 1, 2], 1.0, conds=("a",))
    res = run_tasks(tasks, workers=0, progress=False)
    assert [r["mean"] for r in res] == [_work(s, 1.0)["mean"] for s in (0, 1, 2)]


def test_cache_means_finished_tasks_are_not_rerun(tmp_path):
    log = tmp_path / "log"
    log.mkdir()
    tasks = _tasks(_work, [0, 1], 1.0, str(log))
    first = run_tasks(tasks, workers=0, cache_dir=tmp_path / "cache", progress=False)
    assert len(list(log.iterdir())) == 4
    second = run_tasks(tasks, workers=0, cache_dir=tmp_path / "cache", progress=False)
    assert second == first and len(list(log.iterdir())) == 4


def test_interrupted_run_resumes_without_redoing_finished_tasks(tmp_path):
    flag = tmp_path / "fail"
    flag.touch()
    tasks = _tasks(_fail_on, [0, 1, 2], 2, str(flag), conds=("a",))
    with pytest.raises(SimulationError, match=r"task a/2 failed.*rerun the same command to resume"):
        run_tasks(tasks, workers=0, cache_dir=tmp_path / "cache", progress=False)
    cache = TaskCache(tmp_path / "cache")
    assert [cache.get(t) is not None for t in tasks] == [True, True, False]
    before = [cache.path(t).stat().st_mtime_ns for t in tasks[:2]]
    flag.unlink()
    res = run_tasks(tasks, workers=0, cache_dir=tmp_path / "cache", progress=False)
    assert len(res) == 3 and res[2] == _work(2, 1.0)
    assert [cache.path(t).stat().st_mtime_ns for t in tasks[:2]] == before  # not redone


def test_corrupt_cache_entry_is_recomputed(tmp_path):
    tasks = _tasks(_work, [0], 1.0, conds=("a",))
    cache = TaskCache(tmp_path)
    cache.path(tasks[0]).write_text("{not json")
    assert run_tasks(tasks, workers=0, cache_dir=tmp_path, progress=False)[0] == _work(0, 1.0)


def test_to_dataset_gathers_scalars_and_pads_lists():
    tasks = _tasks(_work, [0, 1, 2], 1.0)
    ds = to_dataset(tasks, run_tasks(tasks, workers=0, progress=False), ("condition", "seed"),
                    {"vec": ("k",)})
    assert dict(ds.sizes) == {"condition": 2, "seed": 3, "k": 3, "seq_dim0": 3}
    assert list(ds["condition"].values) == ["a", "b"] and list(ds["seed"].values) == [0, 1, 2]
    assert ds["mean"].sel(condition="b", seed=1) == pytest.approx(_work(1, 1.0)["mean"])
    np.testing.assert_array_equal(ds["seq"].sel(condition="a", seed=0).values, [0, np.nan, np.nan])


def test_duplicate_tasks_are_refused():
    t = _tasks(_work, [0], 1.0, conds=("a",))
    with pytest.raises(SpecError, match="duplicate"):
        run_tasks(t + t, workers=0, progress=False)


@pytest.mark.parametrize("address", ["nonsense", "http://1.2.3.4:8786", "tcp://host:99999", "tcp://host"])
def test_malformed_scheduler_address_is_refused_at_once(address):
    with pytest.raises(SpecError, match="--scheduler"):
        check_scheduler_address(address)


@pytest.mark.parametrize("address,expected", [("127.0.0.1:8786", "tcp://127.0.0.1:8786"),
                                              ("tls://node7:8786", "tls://node7:8786")])
def test_scheduler_address_forms(address, expected):
    assert check_scheduler_address(address) == expected


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_scheduler_that_does_not_answer_fails_clearly_within_the_timeout():
    """Nothing listens on a free loopback port: a clear SpecError after ~2 s, not a hang."""
    address = f"tcp://127.0.0.1:{_free_port()}"
    start = time.perf_counter()
    with pytest.raises(SpecError, match=r"nothing answered at .* within 2 s"):
        run_tasks(_tasks(_work, [0], 1.0), scheduler=address, connect_timeout_s=2.0, progress=False)
    assert time.perf_counter() - start < 2.0 + 8.0


def test_killed_worker_loses_nothing_and_gathers_the_serial_result(tmp_path):
    """2-worker LocalCluster (processes, loopback); one worker is SIGKILLed while running a task.
    The scheduler reruns that task on a restarted/remaining worker: the gathered Dataset equals
    the serial run exactly."""
    seeds = [0, 1, 2, 3, 4, 5]
    tasks = _tasks(_killed_once, seeds, str(tmp_path), 1, conds=("a",))
    dist = run_tasks(tasks, workers=2, cache_dir=tmp_path / "cache", progress=False)
    assert (tmp_path / "killed").exists()  # the kill happened
    serial = run_tasks(tasks, workers=0, progress=False)
    ds_dist = to_dataset(tasks, dist, ("condition", "seed"))
    ds_serial = to_dataset(tasks, serial, ("condition", "seed"))
    assert ds_dist.identical(ds_serial)


@pytest.mark.slow
@pytest.mark.brian2
def test_workers_preload_modules_that_need_the_main_thread(tmp_path):
    """Brian2 installs a SIGINT handler at import, which fails in a worker's executor thread.
    With ``preload`` every worker (the restarted one too) imports it in its main thread first."""
    tasks = _tasks(_killed_once, [0, 1, 2, 3], str(tmp_path), 1, True, conds=("a",))
    res = run_tasks(tasks, workers=2, progress=False, preload=("brian2",))
    assert res == run_tasks(tasks, workers=0, progress=False)


def _singular_task(seed: int) -> dict:
    if seed == 1:
        np.linalg.solve(np.zeros((2, 2)), np.ones(2))  # LinAlgError: Singular matrix
    return _work(seed, 1.0)


def test_deterministic_failure_is_one_line_naming_point_and_cause(tmp_path):
    """A numerical error fails again on a rerun: say so (no 'rerun to resume'), in one line."""
    tasks = _tasks(_singular_task, [0, 1], conds=("J_EE=2.0",))
    with pytest.raises(SimulationError) as info:
        run_tasks(tasks, workers=0, cache_dir=tmp_path / "cache", progress=False)
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith("task J_EE=2.0/1 failed: LinAlgError: Singular matrix")
    assert "deterministic" in msg and "rerunning will not help" in msg and "rerun the same command" not in msg
    assert "(raised at " in msg and msg.count("task ") == 1


def test_failure_on_a_dask_worker_prints_no_traceback(tmp_path, capfd):
    tasks = _tasks(_singular_task, [0, 1], conds=("J_EE=2.0",))
    with pytest.raises(SimulationError, match=r"task J_EE=2.0/1 failed: LinAlgError.*deterministic"):
        run_tasks(tasks, workers=1, cache_dir=tmp_path / "cache", progress=False)
    err = capfd.readouterr().err
    assert "Traceback" not in err and "Compute Failed" not in err, err
    assert TaskCache(tmp_path / "cache").get(tasks[0]) is not None  # the good task is kept
