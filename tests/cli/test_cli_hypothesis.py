"""``cortex-resnet hypothesis list | run | report``: JSON contracts, exit codes, bad input."""

from __future__ import annotations

import json
import socket
import time

import pytest
from typer.testing import CliRunner

from cortex_resnet.cli import app
from cortex_resnet.hypotheses import known_hypotheses

runner = CliRunner()
RUN_CONTRACT = {"name", "verdict", "test", "statistic", "p_value", "effect_size", "ci", "seeds", "out"}


def _invoke(*args: str):
    return runner.invoke(app, ["hypothesis", *map(str, args)])


def test_list_json_contract():
    res = _invoke("list", "--json")
    assert res.exit_code == 0, res.output
    items = json.loads(res.stdout)
    assert [h["name"] for h in items] == known_hypotheses()
    assert all({"name", "claim", "h0", "h1"} <= set(h) for h in items)


def test_list_text_shows_claims():
    res = _invoke("list")
    assert res.exit_code == 0 and "isn-paradox" in res.stdout and "H0:" in res.stdout


@pytest.fixture(scope="module")
def quick_isn(tmp_path_factory):
    out = tmp_path_factory.mktemp("isn")
    res = _invoke("run", "isn-paradox", "--quick", "--workers", "0", "--json", "--out", out)
    return out, res


def test_run_json_contract(quick_isn):
    out, res = quick_isn
    assert res.exit_code == 0, res.output
    s = json.loads(res.stdout)
    assert RUN_CONTRACT <= set(s)
    assert s["name"] == "isn-paradox" and s["out"] == str(out) and s["seeds"] == 3
    assert s["verdict"] == "supported" and isinstance(s["ci"], list) and len(s["ci"]) == 2


def test_report_rewrites_the_report(quick_isn):
    out, _ = quick_isn
    (out / "report.md").unlink()
    res = _invoke("report", out, "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["verdict"] == "supported" and (out / "report.md").is_file()


def test_report_of_a_folder_without_results_exits_2(tmp_path):
    res = _invoke("report", tmp_path)
    assert res.exit_code == 2 and "results.nc" in res.output


def test_unknown_hypothesis_exits_2_listing_the_names():
    res = _invoke("run", "no-such-claim", "--quick")
    assert res.exit_code == 2
    assert "unknown hypothesis" in res.output and "isn-paradox" in res.output


def test_one_seed_exits_2():
    res = _invoke("run", "isn-paradox", "--seeds", "1", "--workers", "0")
    assert res.exit_code == 2 and "at least 2 seeds" in res.output


def test_malformed_scheduler_exits_2_at_once():
    res = _invoke("run", "isn-paradox", "--quick", "--scheduler", "not-an-address")
    assert res.exit_code == 2 and "--scheduler" in res.output


def test_scheduler_that_does_not_answer_exits_2_within_the_timeout(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = time.perf_counter()
    res = _invoke("run", "isn-paradox", "--quick", "--scheduler", f"tcp://127.0.0.1:{port}",
                  "--connect-timeout", "2", "--out", tmp_path / "run")
    assert res.exit_code == 2
    assert f"nothing answered at tcp://127.0.0.1:{port} within 2 s" in res.output
    assert time.perf_counter() - start < 10.0


def test_out_that_is_a_file_exits_2(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    res = _invoke("run", "isn-paradox", "--quick", "--workers", "0", "--out", f)
    assert res.exit_code == 2 and "--out" in res.output


def test_help_has_an_example():
    res = _invoke("run", "--help")
    assert res.exit_code == 0 and "hypothesis run isn-paradox --quick" in res.stdout


def test_run_help_shows_the_quick_table_name():
    """Rich reads "[quick]" as markup and prints nothing: the help text escapes it."""
    res = runner.invoke(app, ["hypothesis", "run", "--help"], env={"COLUMNS": "200"})
    assert res.exit_code == 0
    assert "the spec's [quick] table" in res.output
    assert "\\[quick]" not in res.output
