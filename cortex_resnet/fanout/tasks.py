"""Fan-out of independent tasks on Dask distributed, with an on-disk result cache.

Every (condition, seed) of a hypothesis is one :class:`Task`: a picklable,
module-level function plus its arguments, and a key that is the SHA-256 of
everything the result depends on (:func:`task_key`). :func:`run_tasks`

* runs the tasks on a :class:`distributed.LocalCluster` (``workers`` worker
  processes, one thread each, loopback only), on an existing cluster
  (``scheduler="tcp://host:8786"``, e.g. one started by dask-jobqueue on
  SLURM; refused with a clear message when nothing answers within
  ``connect_timeout_s``), or serially in this process (``workers=0``);
  each task runs with ``threads_per_task`` torch threads (default 1);
* stores each finished task's result in ``cache_dir/<key>.json`` (written
  atomically, by the client as results arrive), so an interrupted run resumes
  without redoing finished tasks;
* loses nothing when a worker is killed: the scheduler reruns its task on
  another worker (up to ``distributed.scheduler.allowed-failures`` times);
* shows a progress bar over tasks (stderr).

:func:`to_dataset` gathers the result dicts into one :class:`xarray.Dataset`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import xarray as xr
from distributed.diagnostics.plugin import WorkerPlugin
from tqdm.auto import tqdm

from cortex_resnet.core.jsonable import to_jsonable
from cortex_resnet.errors import SimulationError, SpecError, CortexError
from cortex_resnet.fanout.task_cache import TaskCache

__all__ = ["Task", "TaskCache", "task_key", "run_tasks", "to_dataset", "check_scheduler_address",
           "DEFAULT_CONNECT_TIMEOUT_S"]

DEFAULT_CONNECT_TIMEOUT_S = 10.0
_SCHEMES = ("tcp", "tls", "ucx", "inproc", "ws", "wss")


def task_key(inputs: dict[str, Any]) -> str:
    """SHA-256 (hex) of the canonical JSON of a task's inputs."""
    text = json.dumps(inputs, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Task:
    """One independent unit of work.

    Attributes
    ----------
    fn : module-level function (picklable by reference), ``fn(*args) -> dict``
    args : its arguments (picklable; plain data)
    inputs : everything the result depends on, JSON-able; hashed into ``key``
    label : human-readable name, e.g. ``"condition=isn seed=3"``
    coords : where the result goes in the gathered Dataset, e.g. ``{"condition": "isn", "seed": 3}``
    """

    fn: Callable[..., dict[str, Any]]
    args: tuple
    inputs: dict[str, Any]
    label: str
    coords: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return task_key(self.inputs)

    def __repr__(self) -> str:  # one line: label, function, coordinates
        return f"Task({self.label[:60]!r}: {getattr(self.fn, '__name__', 'task')}, {len(self.coords)} coordinates)"


def _normalise(result: dict[str, Any]) -> dict[str, Any]:
    """Round-trip through JSON so fresh and cached results are identical objects."""
    return json.loads(json.dumps(to_jsonable(result, keep_nan=True), default=str))


def _call(fn: Callable[..., dict[str, Any]], args: tuple, threads: int = 1) -> dict[str, Any]:
    """Run a task with ``threads`` torch threads (restored afterwards).

    Tasks are small and run side by side, so one thread each is the default: on a
    loaded machine several torch threads per small matrix product are many times slower.
    """
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        torch = None
    old = torch.get_num_threads() if torch is not None else None
    if torch is not None:
        torch.set_num_threads(max(1, int(threads)))
    try:
        out = fn(*args)
    except SpecError:
        raise
    except Exception as err:  # reported by the client in one line (no worker traceback in the log)
        return {_ERROR_KEY: _describe_failure(err)}
    finally:
        if torch is not None and old is not None:
            torch.set_num_threads(old)
    if not isinstance(out, dict):
        raise TypeError(f"task function {fn.__name__} returned {type(out).__name__}, not a dict")
    return _normalise(out)


_ERROR_KEY = "__task_error__"


def _deterministic(err: BaseException) -> bool:
    """Failures that the same inputs reproduce: numerical and model errors (not I/O, memory, a lost worker)."""
    return (isinstance(err, (CortexError, ArithmeticError, np.linalg.LinAlgError))
            or type(err).__name__.endswith("LinAlgError"))  # torch.linalg.LinAlgError


def _describe_failure(err: BaseException) -> dict[str, Any]:
    """A task's exception as plain data: type, message (one line), where it was raised, deterministic."""
    import traceback

    frames = traceback.extract_tb(err.__traceback__)
    where = f"{Path(frames[-1].filename).name}:{frames[-1].lineno} in {frames[-1].name}" if frames else "?"
    message = " ".join(str(err).split()) or "(no message)"
    return {"type": type(err).__name__, "message": message[:600], "where": where,
            "deterministic": _deterministic(err)}


class _PreImport(WorkerPlugin):
    """Dask worker plugin: import modules in each worker's main thread when it starts.

    Some libraries install signal handlers at import (Brian2 does), which Python allows only
    in the main thread; tasks run in a worker's executor thread. Registered as a plugin, this
    also covers workers that (re)start during a run.
    """

    idempotent = True

    def __init__(self, modules: Sequence[str]):
        self.modules = tuple(modules)
        self.name = "cortex-preimport-" + "-".join(self.modules)

    def setup(self, worker: Any) -> None:
        import importlib

        for m in self.modules:
            importlib.import_module(m)


def check_scheduler_address(address: str) -> str:
    """Validate the form of a scheduler address (``tcp://host:port``, or ``host:port``)."""
    addr = address.strip()
    m = re.fullmatch(r"(?:(?P<scheme>[a-z]+)://)?(?P<host>[^:/\s]+|\[[0-9a-fA-F:]+\]):(?P<port>\d{1,5})", addr)
    if m is None or (m.group("scheme") and m.group("scheme") not in _SCHEMES) or not 0 < int(m.group("port")) < 65536:
        raise SpecError("--scheduler", address,
                        "a Dask scheduler address such as tcp://10.0.0.5:8786 (scheme "
                        f"{'/'.join(_SCHEMES)}, host, port)")
    return addr if m.group("scheme") else f"tcp://{addr}"


def _connect(scheduler: str | None, workers: int, connect_timeout_s: float, threads: int = 1):
    """A (client, cluster) pair: a new loopback LocalCluster, or a client on an existing scheduler."""
    from distributed import Client, LocalCluster

    if scheduler is None:
        cluster = LocalCluster(n_workers=workers, threads_per_worker=threads, processes=True,
                               host="127.0.0.1", dashboard_address=None, silence_logs=logging.ERROR)
        return Client(cluster), cluster
    address = check_scheduler_address(scheduler)
    if not (connect_timeout_s > 0 and math.isfinite(connect_timeout_s)):
        raise SpecError("connect_timeout_s", connect_timeout_s, "a finite timeout > 0 s")
    start = time.perf_counter()
    try:
        client = Client(address, timeout=connect_timeout_s)
    except (OSError, TimeoutError) as err:
        waited = time.perf_counter() - start
        raise SpecError(
            "--scheduler", scheduler,
            f"a running Dask scheduler; nothing answered at {address} within {connect_timeout_s:g} s "
            f"(gave up after {waited:.1f} s: {type(err).__name__}). Start one with `dask scheduler` "
            "(and workers with `dask worker ADDRESS`), check host/port and firewall, or leave "
            "--scheduler out to use a local cluster") from None
    return client, None


def run_tasks(tasks: Sequence[Task], *, scheduler: str | None = None, workers: int = 2,
              cache_dir: str | Path | None = None, progress: bool = True,
              connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S, desc: str = "tasks",
              on_result: Callable[[Task, dict[str, Any]], None] | None = None,
              threads_per_task: int = 1, preload: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Run independent tasks and return their results in task order.

    Parameters
    ----------
    tasks : the tasks (keys must be unique)
    scheduler : address of an existing Dask scheduler; None starts a LocalCluster
    workers : LocalCluster worker processes (one thread each); 0 runs serially here
    cache_dir : where finished results are stored and looked up; None disables the cache
    progress : show a progress bar on stderr
    connect_timeout_s : how long to wait for ``scheduler`` to answer (s)
    on_result : called as each result arrives (fresh or cached), e.g. for logging
    threads_per_task : torch threads inside each task (LocalCluster workers get as many threads)
    preload : modules every worker imports in its main thread before running tasks (e.g.
        ``brian2``, which installs a signal handler at import)

    Raises
    ------
    SpecError
        Bad scheduler address, or a scheduler that does not answer in time.
    SimulationError
        A task failed: one line names it (its grid point or condition and seed), the cause and
        where it was raised; numerical and model errors are called deterministic (a rerun fails
        the same way), others say that a rerun resumes. Results already finished stay cached.
    """
    keys = [t.key for t in tasks]
    if len(set(keys)) != len(keys):
        raise SpecError("tasks", f"{len(keys)} tasks", "tasks with distinct inputs (duplicate task keys)")
    if workers < 0:
        raise SpecError("--workers", workers, "an integer >= 0 (0 = run serially in this process)")
    if scheduler is not None:
        check_scheduler_address(scheduler)
    cache = TaskCache(cache_dir) if cache_dir is not None else None
    results: list[dict[str, Any] | None] = [None] * len(tasks)
    todo = _from_cache(tasks, cache, results, on_result)
    bar = tqdm(total=len(tasks), initial=len(tasks) - len(todo), desc=desc, unit="task",
               disable=not progress, file=sys.stderr, leave=False)

    def finish(i: int, res: dict[str, Any]) -> None:
        results[i] = res
        if cache:
            cache.put(tasks[i], res)
        if on_result:
            on_result(tasks[i], res)
        bar.update(1)

    try:
        if todo and scheduler is None and workers == 0:
            _run_serially(tasks, todo, finish, threads_per_task)
        elif todo:
            _run_distributed(tasks, todo, finish, scheduler, max(1, min(workers, len(todo))),
                             connect_timeout_s, threads_per_task, tuple(preload))
    finally:
        bar.close()
    return [r for r in results if r is not None]


def _from_cache(tasks: Sequence[Task], cache: TaskCache | None, results: list[dict[str, Any] | None],
                on_result: Callable[[Task, dict[str, Any]], None] | None) -> list[int]:
    """Fill ``results`` from the cache; the indices of the tasks still to run."""
    todo: list[int] = []
    for i, t in enumerate(tasks):
        hit = cache.get(t) if cache else None
        if hit is not None:
            results[i] = hit
            if on_result:
                on_result(t, hit)
        else:
            todo.append(i)
    return todo


def _run_serially(tasks: Sequence[Task], todo: list[int], finish: Callable[[int, dict[str, Any]], None],
                  threads_per_task: int) -> None:
    """``workers = 0``: the tasks one after another in this process (a failure stops the run)."""
    for i in todo:
        try:
            res = _call(tasks[i].fn, tasks[i].args, threads_per_task)
        except SpecError:
            raise
        except Exception as err:
            raise _task_failed(tasks[i], _describe_failure(err)) from None
        _finish_or_fail(tasks[i], i, res, finish)


def _task_failed(task: Task, info: dict[str, Any]) -> SimulationError:
    """One line naming the task (its grid point/condition and seed), the cause, and whether a rerun helps."""
    cause = f"{info['type']}: {info['message']} (raised at {info['where']})"
    if info.get("deterministic"):
        return SimulationError(f"task {task.label} failed: {cause}. This failure is deterministic: the same "
                               "inputs fail the same way, so rerunning will not help; change or leave out this "
                               "point (finished tasks are cached)")
    return SimulationError(f"task {task.label} failed: {cause} "
                           "(finished tasks are cached; rerun the same command to resume)")


def _finish_or_fail(task: Task, i: int, res: dict[str, Any], finish: Callable[[int, dict], None]) -> None:
    """Store a result, or raise the one-line failure that :func:`_call` reported in its place."""
    if _ERROR_KEY in res:
        raise _task_failed(task, res[_ERROR_KEY])
    finish(i, res)


def _run_distributed(tasks: Sequence[Task], todo: list[int], finish: Callable[[int, dict], None],
                     scheduler: str | None, workers: int, connect_timeout_s: float, threads: int,
                     preload: tuple[str, ...] = ()) -> None:
    from distributed import as_completed
    from distributed.scheduler import KilledWorker

    client, cluster = _connect(scheduler, workers, connect_timeout_s, threads)
    try:
        if preload:
            client.register_plugin(_PreImport(preload))
        futures = {}
        for i in todo:
            t = tasks[i]
            fut = client.submit(_call, t.fn, t.args, threads, key=f"cortex-task-{t.key}", pure=False)
            futures[fut] = i
        for fut in as_completed(list(futures)):
            i = futures[fut]
            try:
                res = fut.result()
            except KilledWorker as err:
                raise SimulationError(
                    f"task {tasks[i].label} killed its worker repeatedly ({err}); it may need more "
                    "memory than a worker has. Finished tasks are cached; rerun to resume") from None
            except SpecError:
                raise
            except Exception as err:  # outside the task function (e.g. unpicklable arguments)
                raise _task_failed(tasks[i], _describe_failure(err)) from None
            _finish_or_fail(tasks[i], i, res, finish)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def to_dataset(tasks: Sequence[Task], results: Sequence[dict[str, Any]], dims: Sequence[str],
               var_dims: dict[str, Sequence[str]] | None = None, attrs: dict[str, Any] | None = None) -> xr.Dataset:
    """Gather task results into one Dataset with dims ``dims`` (from each task's coords).

    Scalar results become variables over ``dims``; list results add their own
    trailing dims (named by ``var_dims[var]`` or ``<var>_dim<i>``), padded with
    NaN where tasks returned different lengths. Missing values are NaN.
    """
    var_dims = dict(var_dims or {})
    labels: dict[str, list[Any]] = {d: [] for d in dims}
    for t in tasks:
        for d in dims:
            if d not in t.coords:
                raise SpecError("coords", sorted(t.coords), f"every task to give coordinate '{d}'")
            if t.coords[d] not in labels[d]:
                labels[d].append(t.coords[d])
    index = [tuple(labels[d].index(t.coords[d]) for d in dims) for t in tasks]
    names: list[str] = []
    for r in results:
        names.extend(k for k in r if k not in names)
    data: dict[str, Any] = {}
    for name in names:
        vals = [np.asarray(r.get(name, np.nan), dtype=np.float64) for r in results]
        ndim = max(v.ndim for v in vals)
        shape = tuple(max((v.shape[k] if v.ndim == ndim else 0) for v in vals) for k in range(ndim))
        arr = np.full(tuple(len(labels[d]) for d in dims) + shape, np.nan)
        for idx, v in zip(index, vals):
            if v.ndim == 0:
                arr[idx] = v if ndim == 0 else np.nan
            elif v.ndim == ndim:
                arr[idx + tuple(slice(0, s) for s in v.shape)] = v
        extra = tuple(var_dims.get(name, [f"{name}_dim{k}" for k in range(ndim)]))
        if len(extra) != ndim:
            raise SpecError(f"var_dims.{name}", list(extra), f"{ndim} dimension name(s)")
        data[name] = (tuple(dims) + extra, arr)
    coords = {d: labels[d] for d in dims}
    return xr.Dataset(data, coords=coords, attrs=dict(attrs or {}))
