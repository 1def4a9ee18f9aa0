"""No command deletes or overwrites what it did not write; exit 2 writes nothing; files follow the umask.

Every writing command is tried on a folder (or file) the user made: the user's file
survives byte for byte, and the refusal happens before any work (nothing new appears).
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from cortex_resnet.bridge import save_circuit
from cortex_resnet.cli import app
from cortex_resnet.cli._common import DEBUG_ENV, handle_errors
from cortex_resnet.errors import SpecError
from cortex_resnet.io.outdir import (
    MANIFEST,
    _plan,
    claim_folder,
    remove_written,
    written_by_us,
)
from cortex_resnet.io.results import atomic_write_text
from cortex_resnet.model.circuit import build_circuit
from cortex_resnet.model.spec import load_spec

ROOT = Path(__file__).resolve().parents[2]
LINEAR = ROOT / "models" / "linear.toml"
ISN = ROOT / "models" / "isn.toml"
runner = CliRunner()


def _cli(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def precious(tmp_path: Path) -> Path:
    """A folder holding a user's file (the issue's `mkdir precious; echo data > precious/thesis.txt`)."""
    folder = tmp_path / "precious"
    folder.mkdir()
    (folder / "thesis.txt").write_text("data\n")
    return folder


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# ------------------------------------------------------------------ the mechanism
def test_new_and_empty_folders_are_used_and_get_a_manifest(tmp_path: Path) -> None:
    for folder in (tmp_path / "new" / "deeper", tmp_path / "empty"):
        if folder.name == "empty":
            folder.mkdir()
        with claim_folder(folder, "demo"):
            folder.mkdir(parents=True, exist_ok=True)
            atomic_write_text(folder / "a.txt", "1")
        manifest = json.loads((folder / MANIFEST).read_text())
        assert manifest["commands"] == ["demo"] and manifest["files"] == ["a.txt"]


def test_a_claim_that_writes_nothing_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(SpecError):
        with claim_folder(tmp_path, "sweep"):
            raise SpecError("--param", "x", "a failure after the claim, before any output")
    assert list(tmp_path.iterdir()) == []


def test_the_repository_gallery_is_a_figures_folder() -> None:
    claim = _plan(ROOT / "figures", "figures", option="--out", force=False, accept=(), adopt=False,
                  owned_dirs=("data",), force_ok=True)
    assert claim.foreign == set() and "README.md" in claim.owned


def test_foreign_folder_is_refused_naming_the_folder_and_the_fix(precious: Path) -> None:
    before = _snapshot(precious)
    with pytest.raises(SpecError) as err:
        with claim_folder(precious, "demo"):
            raise AssertionError("the body must not run")
    msg = str(err.value)
    assert str(precious) in msg and "thesis.txt" in msg and "--force" in msg
    assert _snapshot(precious) == before and not (precious / MANIFEST).exists()


def test_rerun_replaces_only_its_own_files_and_keeps_what_the_user_added(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    with claim_folder(out, "demo"):
        atomic_write_text(out / "summary.md", "first")
    (out / "notes.txt").write_text("mine")
    with claim_folder(out, "demo"):
        atomic_write_text(out / "summary.md", "second")
        with pytest.raises(SpecError, match="did not write"):
            atomic_write_text(out / "notes.txt", "overwritten")
    assert (out / "summary.md").read_text() == "second" and (out / "notes.txt").read_text() == "mine"
    assert json.loads((out / MANIFEST).read_text())["files"] == ["summary.md"]


def test_another_commands_folder_is_foreign(tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    with claim_folder(out, "train"):
        atomic_write_text(out / "config.toml", "x = 1\n")
    with pytest.raises(SpecError, match="cortex-resnet train"):
        with claim_folder(out, "demo"):
            pass
    with claim_folder(out, "compare", accept=("train",)):  # compare adds files to a train run
        atomic_write_text(out / "compare.json", "{}")
    assert set(json.loads((out / MANIFEST).read_text())["commands"]) == {"train", "compare"}


def test_force_writes_beside_foreign_files_but_never_replaces_them(precious: Path) -> None:
    with claim_folder(precious, "demo", force=True):
        atomic_write_text(precious / "summary.md", "ours")
        with pytest.raises(SpecError, match="did not write"):
            atomic_write_text(precious / "thesis.txt", "replaced")
    assert (precious / "thesis.txt").read_text() == "data\n"
    assert json.loads((precious / MANIFEST).read_text())["files"] == ["summary.md"]
    # a second run (no --force needed now: the folder is the demo's) still keeps the user's file
    with claim_folder(precious, "demo"):
        atomic_write_text(precious / "summary.md", "ours again")
    assert (precious / "thesis.txt").read_text() == "data\n"


def test_force_refuses_before_work_where_the_command_would_write_a_foreign_file(precious: Path) -> None:
    with pytest.raises(SpecError, match="thesis.txt"):
        with claim_folder(precious, "demo", force=True, expected=("thesis.txt",)):
            raise AssertionError("the body must not run")


def test_remove_written_deletes_only_files_the_command_wrote(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    (out / "train_tied").mkdir(parents=True)
    with claim_folder(out, "demo"):
        atomic_write_text(out / "train_tied" / "checkpoint.pt", "ckpt")
    (out / "train_tied" / "user.txt").write_text("mine")
    with claim_folder(out, "demo"):
        remove_written(out / "train_tied")
    assert not (out / "train_tied" / "checkpoint.pt").exists()
    assert (out / "train_tied" / "user.txt").read_text() == "mine"
    with pytest.raises(SpecError, match="nothing was deleted"):  # outside a claimed folder
        remove_written(out / "train_tied")
    assert (out / "train_tied" / "user.txt").exists()


def test_owned_cache_folder_is_not_listed_file_by_file(tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    (out / ".cache").mkdir(parents=True)
    with claim_folder(out, "sweep", owned_dirs=(".cache",)):
        atomic_write_text(out / ".cache" / "k.json", "{}")
        atomic_write_text(out / "sweep.json", "{}")
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["files"] == ["sweep.json"] and manifest["owned_dirs"] == [".cache"]
    with claim_folder(out, "sweep", owned_dirs=(".cache",)):
        atomic_write_text(out / ".cache" / "k.json", "{}")  # a rerun may rewrite its cache


# ------------------------------------------------------------------ every writing command
def test_demo_keeps_a_foreign_folder_untouched(precious: Path) -> None:
    before = _snapshot(precious)
    res = _cli("demo", "--quick", "--out", precious, "--no-progress")
    assert res.exit_code == 2, res.output
    assert str(precious) in res.output and "--force" in res.output and "Traceback" not in res.output
    assert _snapshot(precious) == before


def test_demo_refuses_the_current_folder_when_it_holds_other_files(precious: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(precious)
    res = _cli("demo", "--quick", "--out", ".", "--no-progress")
    assert res.exit_code == 2 and (precious / "thesis.txt").read_text() == "data\n"
    assert sorted(p.name for p in precious.iterdir()) == ["thesis.txt"]


def test_simulate_keeps_a_foreign_file_and_replaces_its_own(tmp_path: Path) -> None:
    mine = tmp_path / "mine.nc"
    mine.write_text("my own netCDF, honestly")
    res = _cli("simulate", LINEAR, "--duration", "2", "--out", mine, "--no-progress")
    assert res.exit_code == 2 and "--force" in res.output and mine.read_text() == "my own netCDF, honestly"
    fig = tmp_path / "fig.png"
    fig.write_bytes(b"\x89PNG not ours")
    res = _cli("simulate", LINEAR, "--duration", "2", "--out", tmp_path / "y.nc", "--plot", fig, "--no-progress")
    assert res.exit_code == 2 and fig.read_bytes() == b"\x89PNG not ours"
    assert not (tmp_path / "y.nc").exists()  # exit 2: nothing written
    out = tmp_path / "run.nc"
    for _ in range(2):  # a file cortex-resnet wrote is replaced without --force
        res = _cli("simulate", LINEAR, "--duration", "2", "--out", out, "--plot", tmp_path / "run.png", "--no-progress")
        assert res.exit_code == 0, res.output
    assert written_by_us(out) and written_by_us(tmp_path / "run.png")
    res = _cli("simulate", LINEAR, "--duration", "2", "--out", mine, "--no-progress", "--force")
    assert res.exit_code == 0 and written_by_us(mine)


@pytest.mark.parametrize("args, problem", [
    (["--out", "y.nc", "--plot", "y.jpgg"], "--plot"),
    (["--out", "y.ncc"], "--out"),
    (["--out", "missing/y.nc"], "does not exist"),
    (["--out", "y.nc", "--plot", "y.nc"], "--plot"),
])
def test_simulate_validates_every_output_before_any_work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         args: list[str], problem: str) -> None:
    monkeypatch.chdir(tmp_path)
    res = _cli("simulate", LINEAR, "--duration", "2", "--no-progress", *args)
    assert res.exit_code == 2 and problem in res.output, res.output
    assert list(tmp_path.iterdir()) == []


def test_unroll_bench_and_train_report_keep_foreign_files(tmp_path: Path) -> None:
    for suffix, argv in ((".pt", ["unroll", LINEAR, "--steps", "2"]), (".json", ["bench", "rate", "--quick"]),
                         (".md", ["train-report", tmp_path])):
        path = tmp_path / f"user{suffix}"
        path.write_text("the user's")
        res = _cli(*argv, "--out", path)
        assert res.exit_code == 2 and "--force" in res.output, res.output
        assert path.read_text() == "the user's"
    res = _cli("bench", "rate", "--quick", "--out", tmp_path / "bench.txt")
    assert res.exit_code == 2 and ".json" in res.output


def test_unroll_force_replaces_a_file_and_rerun_needs_force(tmp_path: Path) -> None:
    out = tmp_path / "net.pt"
    assert _cli("unroll", LINEAR, "--steps", "2", "--out", out).exit_code == 0
    assert _cli("unroll", LINEAR, "--steps", "2", "--out", out).exit_code == 2  # not recognisable: --force
    assert _cli("unroll", LINEAR, "--steps", "2", "--out", out, "--force").exit_code == 0


def test_train_keeps_a_foreign_folder_untouched(precious: Path) -> None:
    before = _snapshot(precious)
    res = _cli("train", ROOT / "experiments" / "digits_tied.toml", "--out", precious, "--no-progress")
    assert res.exit_code == 2 and str(precious) in res.output, res.output
    assert _snapshot(precious) == before


def test_train_with_force_writes_beside_the_users_file(precious: Path) -> None:
    res = _cli("train", ROOT / "experiments" / "digits_tied.toml", "--out", precious, "--no-progress",
               "--force", "--epochs", "1", "--set", "data.n_train=200", "--set", "data.n_test=100",
               "--threads", "1")
    assert res.exit_code == 0, res.output
    assert (precious / "thesis.txt").read_text() == "data\n" and (precious / "report.json").is_file()
    manifest = json.loads((precious / MANIFEST).read_text())
    assert "thesis.txt" not in manifest["files"] and "checkpoint.pt" in manifest["files"]


def test_compare_keeps_a_foreign_result_file(tmp_path: Path) -> None:
    (tmp_path / "compare.json").write_text("the user's")
    res = _cli("compare", tmp_path / "no_run_needed", "--out", tmp_path, "--no-spiking")
    assert res.exit_code == 2 and "compare.json" in res.output, res.output
    assert (tmp_path / "compare.json").read_text() == "the user's"


def test_hypothesis_run_and_report_keep_a_foreign_folder(precious: Path) -> None:
    before = _snapshot(precious)
    res = _cli("hypothesis", "run", "isn-paradox", "--quick", "--workers", "0", "--out", precious)
    assert res.exit_code == 2 and "thesis.txt" in res.output, res.output
    res = _cli("hypothesis", "report", precious)
    assert res.exit_code == 2, res.output
    assert _snapshot(precious) == before


def test_figures_keep_a_foreign_folder(precious: Path) -> None:
    before = _snapshot(precious)
    res = _cli("figures", "isn_paradox", "--out", precious, "--no-progress")
    assert res.exit_code == 2 and "thesis.txt" in res.output, res.output
    assert _snapshot(precious) == before


def test_sweep_keeps_a_foreign_folder(precious: Path) -> None:
    before = _snapshot(precious)
    res = _cli("sweep", ISN, "--param", "connectivity.J_EE=0.5", "--workers", "0", "--out", precious,
               "--no-progress", "--duration", "5")
    assert res.exit_code == 2 and "thesis.txt" in res.output, res.output
    assert _snapshot(precious) == before


def test_sweep_without_out_uses_a_run_folder_says_where_and_resumes(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    argv = ["sweep", ISN, "--param", "connectivity.J_EE=0.5,1.0", "--workers", "0", "--no-progress",
            "--duration", "5"]
    res = _cli(*argv, "--json")
    assert res.exit_code == 0, res.output
    out = Path(json.loads(res.stdout)["out"])
    assert out.parent.parent == Path("runs") and out.name == "sweep.nc" and out.is_file()
    cached = sorted((out.parent / ".cache").glob("*.json"))
    assert len(cached) == 2
    stamps = [p.stat().st_mtime_ns for p in cached]
    res = _cli(*argv)  # text output names the file; the rerun reuses the cache
    assert res.exit_code == 0 and f"wrote {out}" in res.output, res.output
    assert [p.stat().st_mtime_ns for p in cached] == stamps


# ------------------------------------------------------------------ permissions
def test_outputs_follow_the_umask(tmp_path: Path, umask_022) -> None:
    res = _cli("simulate", LINEAR, "--duration", "2", "--out", tmp_path / "r.nc", "--plot", tmp_path / "r.png",
               "--no-progress")
    assert res.exit_code == 0, res.output
    assert _cli("unroll", LINEAR, "--steps", "2", "--out", tmp_path / "n.pt").exit_code == 0
    save_circuit(build_circuit(load_spec(LINEAR)), tmp_path / "saved.toml")
    files = [p for p in tmp_path.iterdir() if p.is_file()]
    assert {p.suffix for p in files} >= {".nc", ".png", ".pt", ".toml", ".npz"}
    assert {p.name: oct(_mode(p)) for p in files} == {p.name: "0o644" for p in files}
    os.umask(0o077)
    atomic_write_text(tmp_path / "private.json", "{}")
    assert _mode(tmp_path / "private.json") == 0o600


# ------------------------------------------------------------------ error reporting
def _app_raising(exc: BaseException) -> typer.Typer:
    small = typer.Typer()

    @small.command()
    @handle_errors
    def boom() -> None:
        raise exc

    @small.command()
    def other() -> None:  # a second command, so typer keeps the sub-command name
        pass

    return small


def test_unexpected_error_says_internal_error_and_logs_its_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(DEBUG_ENV, raising=False)
    res = runner.invoke(_app_raising(ValueError("a bug, not the user's input")), ["boom"])
    assert res.exit_code == 1
    assert "internal error: ValueError: a bug" in res.output and "Traceback" not in res.output
    log = Path(res.output.split("traceback in ")[1].split(";")[0])
    assert "Traceback" in log.read_text() and "a bug, not the user's input" in log.read_text()
    log.unlink()
    monkeypatch.setenv(DEBUG_ENV, "1")
    res = runner.invoke(_app_raising(TypeError("shown")), ["boom"])
    assert res.exit_code == 1 and "Traceback" in res.output and "internal error: TypeError" in res.output


def test_bad_input_and_unreadable_paths_exit_2_without_traceback() -> None:
    for exc in (SpecError("--x", 1, "2"), PermissionError(13, "Permission denied", "/some/file")):
        res = runner.invoke(_app_raising(exc), ["boom"])
        assert res.exit_code == 2 and "Traceback" not in res.output, res.output
    assert "/some/file: Permission denied" in res.output
