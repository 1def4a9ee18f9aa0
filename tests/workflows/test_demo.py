"""``cortex-resnet demo --quick`` runs end to end and writes its summary and figures.

It runs once (minutes), into a folder holding a user's file with ``--force``: the
file survives and the manifest lists what the demo wrote. Refusals and reruns are
tested cheaply in ``test_output_safety.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cortex_resnet.cli import app
from cortex_resnet.io.outdir import MANIFEST

# one worker runs this module: its module-scoped fixture (demo run) is then built once (make test: --dist loadscope keeps a module on one worker)
pytestmark = pytest.mark.xdist_group("demo")


@pytest.fixture(scope="module")
def demo_out(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    out = tmp_path_factory.mktemp("demo") / "demo_out"
    out.mkdir()
    (out / "notes.txt").write_text("the user's")  # --force: the demo writes beside it, never over it
    res = CliRunner().invoke(app, ["demo", "--quick", "--out", str(out), "--no-progress", "--force"])
    return out, res


def test_demo_quick_succeeds(demo_out) -> None:
    out, res = demo_out
    assert res.exit_code == 0, res.output
    assert "summary" in res.output


def test_demo_keeps_the_users_file_and_lists_what_it_wrote(demo_out) -> None:
    out, _ = demo_out
    assert (out / "notes.txt").read_text() == "the user's"
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["commands"] == ["demo"] and "notes.txt" not in manifest["files"]
    written = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert set(manifest["files"]) == written - {"notes.txt", MANIFEST}
    assert "summary.md" in written and "train_tied/checkpoint.pt" in written


def test_demo_writes_summary_and_figures(demo_out) -> None:
    out, _ = demo_out
    summary = json.loads((out / "summary.json").read_text())
    md = (out / "summary.md").read_text()
    assert "network" in md and "hypotheses" in md.lower()
    for fig in ("decomposition_rate.png", "decomposition_spiking.png", "compare.png"):
        assert (out / fig).stat().st_size > 1000
    # the demo's own numbers keep the project's contracts
    assert summary["unroll"]["within_tolerance"]
    assert summary["compare"]["rate_accuracy"] == summary["compare"]["network_accuracy"]
    # steady state: x_E/r_E = 0.40 (the model file's calibration); the quick demo reads it at 200 ms,
    # before r_E has fully risen (slowest mode ~68 ms), which gives 0.44: hence the 0.05 above 1/2
    assert 1 / 3 < summary["rate"]["x_over_r_E"] < 1 / 2 + 0.05
    assert set(summary["hypotheses"]) == {"isn-paradox", "amplification"}
    assert all(h["verdict"] in ("supported", "not supported", "inconclusive") for h in summary["hypotheses"].values())
