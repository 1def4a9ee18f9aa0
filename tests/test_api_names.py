"""One public name, one object: ``cortex_resnet.train`` is the training function in any import order.

The orders run in a fresh interpreter (the order of first imports is what matters,
and this test process has imported everything already), the package re-imported for each.
"""

from __future__ import annotations

import dataclasses
import inspect
import subprocess
import sys
from pathlib import Path

import pytest

CHECK = ("import inspect; from cortex_resnet import train; "
         "assert inspect.isfunction(train), type(train); "
         "import cortex_resnet; assert cortex_resnet.train is train; "
         "from cortex_resnet.training.loop import train as loop; assert loop is train; print('ok')")

ORDERS = {
    "package first": CHECK,
    "loop module first": "import cortex_resnet.training.loop; " + CHECK,
    "epoch/ddp modules first": "import cortex_resnet.training.epoch, cortex_resnet.training.distributed; " + CHECK,
    "cli first": "import cortex_resnet.cli.train; " + CHECK,
}


# One fresh interpreter for all orders: before each order every ``cortex_resnet`` module is dropped
# from ``sys.modules``, so the package is imported anew in that order (third-party modules such as
# torch stay imported: they do not depend on our import order, and importing them once saves a
# Python start-up per order).
_ALL_ORDERS = """
import sys
for name, code in ORDERS.items():
    for m in [m for m in sys.modules if m == "cortex_resnet" or m.startswith("cortex_resnet.")]:
        del sys.modules[m]
    exec(code, {})
    print(name)
"""


def test_train_is_the_function_in_any_import_order():
    p = subprocess.run([sys.executable, "-c", f"ORDERS = {ORDERS!r}\n{_ALL_ORDERS}"], capture_output=True,
                       text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stdout.split("\n") == [line for name in ORDERS for line in ("ok", name)] + [""], p.stdout


# ------------------------------------------------------------ short printed forms (issue 17, point 4)
MAX_REPR_CHARS = 200
# option bags whose generated dataclass repr is short by construction (a few scalar fields)
SCALAR_TYPES = {"int", "float", "bool", "str", "None", "int | None", "float | None", "str | None", "bool | None"}


# public classes left with the default ``<... object at 0x...>`` (one line, but no summary), and why
EXEMPT: dict[str, str] = {}


def _public_classes() -> list[type]:
    import enum
    import importlib
    import pkgutil

    import cortex_resnet

    found = []
    for m in pkgutil.walk_packages(cortex_resnet.__path__, "cortex_resnet."):
        if "._" in m.name or m.name.endswith("__main__"):
            continue
        mod = importlib.import_module(m.name)
        for name in getattr(mod, "__all__", []):
            obj = getattr(mod, name, None)
            if (inspect.isclass(obj) and obj.__module__ == m.name
                    and not issubclass(obj, (BaseException, enum.Enum))):
                found.append(obj)
    return found


def _scalar_option_bag(cls: type) -> bool:
    if not dataclasses.is_dataclass(cls):
        return False
    fields = dataclasses.fields(cls)
    return len(fields) <= 12 and all(str(f.type).replace("Optional[", "").rstrip("]") in SCALAR_TYPES
                                    or str(f.type).startswith("Literal") for f in fields if f.repr)


def _deliberate_repr(cls: type) -> bool:
    """``__repr__`` written in cortex_resnet (not object's, pydantic's, torch's or dataclass-generated)."""
    fn = inspect.unwrap(cls.__repr__)
    code = getattr(fn, "__code__", None)
    return (code is not None and code.co_filename != "<string>"
            and (getattr(fn, "__module__", "") or "").startswith("cortex_resnet"))


def test_every_public_class_has_a_short_printed_form():
    missing = [f"{c.__module__}.{c.__qualname__}" for c in _public_classes()
               if not _deliberate_repr(c) and not _scalar_option_bag(c)
               and f"{c.__module__}.{c.__qualname__}" not in EXEMPT]
    assert not missing, f"{len(missing)} public classes print a default repr: {missing}"


def _check_short(obj) -> str:
    text = repr(obj)
    assert "\n" not in text and len(text) <= MAX_REPR_CHARS, (type(obj).__name__, len(text), text[:400])
    assert text.startswith(type(obj).__name__), text
    return text


def _spec_tables(spec) -> list:
    """Every spec table (pydantic model) reachable from ``spec``."""
    from pydantic import BaseModel

    out, stack = [], [spec]
    while stack:
        node = stack.pop()
        if isinstance(node, BaseModel):
            out.append(node)
            stack.extend(getattr(node, k) for k in type(node).model_fields)
        elif isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, (list, tuple)):
            stack.extend(node)
    return out


@pytest.fixture(scope="module")
def objects():
    """Cheap instances of the public objects users print: specs, circuits, plans, results, engines."""
    import numpy as np

    from cortex_resnet import load_model, unroll
    from cortex_resnet.hypotheses.registry import HYPOTHESES, get_hypothesis
    from cortex_resnet.hypotheses.stats import compare
    from cortex_resnet.rate.integrators import INTEGRATORS
    from cortex_resnet.rate.system import RateSystem
    from cortex_resnet.io.outdir import OutputFolder
    from cortex_resnet.model.analysis import analyze
    from cortex_resnet.model.stimulus import make_stimulus
    from cortex_resnet.spiking.build import build_plan
    from cortex_resnet.spiking.torch_engine import TorchEngine
    from cortex_resnet.training.experiment import load_experiment

    c = load_model("models/lif_ei.toml")
    exp = load_experiment("experiments/mnist1d_tied.toml")
    plan = build_plan(c, "constant:amp=25.0", 5.0, engine="torch")
    eng = TorchEngine(plan)
    rng = np.random.default_rng(0)
    stim = make_stimulus("step:amp=1.0,onset_ms=50", c.n_inputs)
    return [c, c.spec, exp, *_spec_tables(c.spec), *_spec_tables(exp), *c.transfers.values(), analyze(c, 25.0),
            OutputFolder(Path("."), "demo", owned={"a", "b"}), plan, plan.mapping, eng, eng.run(True, 0),
            stim, unroll(c, steps=3, dt_ms=0.5),
            compare(rng.normal(1, 1, 8), rng.normal(0, 1, 8)), *(get_hypothesis(h) for h in HYPOTHESES),
            *(INTEGRATORS[m](RateSystem(c), stim, 0.1, 0.0, 0) for m in ("euler", "rk4", "dopri5"))]


def test_printed_forms_are_one_short_line(objects):
    kinds = {type(o).__name__ for o in objects}
    assert {"Circuit", "CircuitSpec", "ExperimentSpec", "SpikingPlan", "SynapseSpec", "Hypothesis", "TestResult",
            "Euler", "RK4", "TorchEngine", "LinearAnalysis"} <= kinds, kinds
    for obj in objects:
        _check_short(obj)
