"""One public name, one object: ``cortex_resnet.train`` is the training function in any import order.

Each order runs in a fresh interpreter (the order of first imports is what matters,
and this test process has imported everything already).
"""

from __future__ import annotations

import subprocess
import sys

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


@pytest.mark.parametrize("code", list(ORDERS.values()), ids=list(ORDERS))
def test_train_is_the_function_in_any_import_order(code):
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and p.stdout.strip() == "ok", p.stderr[-2000:]
