"""The installable package: bundled model/experiment files, no repository lookups, the wheel.

The slow test builds a wheel, installs it (``--no-deps``) into a fresh virtual
environment that sees this environment's third-party packages but not the source
tree, and runs the issue's two commands from an empty working directory.
"""

from __future__ import annotations

import configparser
import fnmatch
import json
import os
import re
import shutil
import site
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

import cortex_resnet
from cortex_resnet.catalog import bundled_file, catalog_root, experiments_dir, find_model_file, models_dir
from cortex_resnet.cli import app

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "cortex_resnet"
runner = CliRunner()


def test_repository_folders_are_relative_symlinks_to_the_bundled_ones():
    """``models/x.toml`` typed in a checkout reads the same file the installed package ships."""
    for name, bundled in (("models", models_dir()), ("experiments", experiments_dir())):
        link = ROOT / name
        assert link.is_symlink(), f"{link} should be a symlink to {bundled}"
        assert not os.path.isabs(os.readlink(link)), "an absolute link breaks in another clone"
        assert link.resolve() == bundled.resolve()
    assert (models_dir() / "canonical_microcircuit.toml").is_file()
    assert (experiments_dir() / "hypotheses" / "isn-paradox.toml").is_file()


def test_package_data_globs_cover_every_bundled_file():
    """Every file under cortex_resnet/catalog (but its module) matches setup.cfg's package_data."""
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    globs = [g.strip() for g in cfg["options.package_data"]["cortex_resnet"].split("\n") if g.strip()]
    assert "py.typed" in globs and (PACKAGE / "py.typed").is_file()
    data = [p.relative_to(PACKAGE).as_posix() for p in catalog_root().rglob("*")
            if p.is_file() and p.suffix not in (".py", ".pyc")]
    assert len(data) > 30
    missing = [d for d in data if not any(fnmatch.fnmatchcase(d, g) and d.count("/") == g.count("/")
                                          for g in globs)]
    assert not missing, f"not shipped in the wheel (add a glob to [options.package_data]): {missing}"


def test_model_names_resolve_to_bundled_files_from_any_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    expected = models_dir() / "canonical_microcircuit.toml"
    for name in ("canonical_microcircuit", "canonical_microcircuit.toml", "models/canonical_microcircuit.toml"):
        assert find_model_file(name) == expected, name
    assert bundled_file("experiments/circuits/ei_dense.toml") == experiments_dir() / "circuits" / "ei_dense.toml"
    assert bundled_file("../setup.cfg") is None and bundled_file("models/nope.toml") is None
    assert find_model_file("nope") == Path("nope")  # unchanged: the caller's error names it
    (tmp_path / "canonical_microcircuit").write_text("x")  # a file in the cwd wins over the catalog
    assert find_model_file("canonical_microcircuit") == Path("canonical_microcircuit")
    assert cortex_resnet.load_model("isn").spec.name == "isn"
    assert cortex_resnet.load_experiment("mnist1d_tied").name == "mnist1d_tied"
    assert cortex_resnet.load_experiment("experiments/digits_tied.toml").circuit_spec().n_units > 0


def test_simulate_by_name_and_unknown_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(app, ["simulate", "linear", "--duration", "5", "--json", "--no-progress"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["backend"] == "rate"
    res = runner.invoke(app, ["simulate", "no_such_model"])
    assert res.exit_code == 2 and "no_such_model" in res.output
    assert list(tmp_path.iterdir()) == []


def test_no_repository_root_lookups_in_the_package():
    """An installed package has no repository around it: no parents[2] / REPO_ROOT paths."""
    pattern = re.compile(r"parents\[\d\]|REPO_ROOT|parent\.parent")
    offenders = [f"{p.relative_to(ROOT)}:{i}" for p in PACKAGE.rglob("*.py")
                 for i, line in enumerate(p.read_text().splitlines(), 1) if pattern.search(line)]
    assert not offenders, offenders


def test_version_is_single_sourced_and_public_names_come_from_this_tree():
    """setup.cfg reads ``__version__``; every lazy public name is defined in this package's files
    (an editable install of another checkout must not fill in a missing module)."""
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    assert cfg["metadata"]["version"].strip() == "attr: cortex_resnet.__version__"
    for name in cortex_resnet.__all__:
        obj = getattr(cortex_resnet, name)
        module = getattr(obj, "__module__", None)
        if module is not None and module.startswith("cortex_resnet"):
            origin = Path(sys.modules[module].__file__).resolve()
            assert PACKAGE.resolve() in origin.parents, (name, origin)


# ------------------------------------------------------------------ the wheel, installed

def _deps_site_packages() -> list[str]:
    """This environment's site-packages (third-party dependencies, not the editable finder)."""
    return [p for p in site.getsitepackages() if Path(p).is_dir()]


def _run(cmd: list[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    p = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, f"{cmd} exited {p.returncode}:\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
    return p


@pytest.mark.slow
def test_wheel_installs_and_runs_the_two_commands(tmp_path):
    """pip wheel (no build isolation: offline) -> a fresh venv (--no-deps; a .pth line adds this
    environment's site-packages for torch & co, without running its .pth files, so an editable
    install is not seen) -> simulate + hypothesis run from an empty directory."""
    t0 = time.perf_counter()
    wheels, venv, cwd, src = tmp_path / "wheels", tmp_path / "venv", tmp_path / "empty", tmp_path / "src"
    cwd.mkdir()
    # build from a copy: setuptools' build/ folder would otherwise land in (and go stale in) the checkout
    shutil.copytree(PACKAGE, src / "cortex_resnet", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
          "-w", str(wheels), str(src)], tmp_path, 300)
    (wheel,) = wheels.glob("cortex_resnet-*.whl")
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], tmp_path, 120)
    vpy = venv / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", str(vpy), "install", "-q", "--no-deps", str(wheel)],
         tmp_path, 300)
    purelib = _run([str(vpy), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                   tmp_path, 60).stdout.strip()
    Path(purelib, "_cortex_resnet_test_deps.pth").write_text("\n".join(_deps_site_packages()) + "\n")
    where = _run([str(vpy), "-c", "import cortex_resnet; print(cortex_resnet.__file__)"], cwd, 120).stdout
    assert Path(where.strip()).is_relative_to(venv), where  # the wheel, not the source tree
    t_install = time.perf_counter() - t0
    script = venv / "bin" / "cortex-resnet"
    assert _run([str(script), "--version"], cwd, 120).stdout.startswith(f"cortex-resnet {cortex_resnet.__version__}\n")
    sim = json.loads(_run([str(script), "simulate", "canonical_microcircuit", "--json", "--no-progress"],
                          cwd, 600).stdout)
    assert sim["backend"] == "rate" and sim["mean_rate_hz"]["E"] > 0
    _run([str(script), "hypothesis", "run", "isn-paradox", "--quick", "--no-progress"], cwd, 900)
    report = json.loads((cwd / "runs" / "hypotheses" / "isn-paradox-quick" / "report.json").read_text())
    assert report["verdict"] == "supported", report  # t = -57 at 3 seeds (quick design): far from a tie
    assert Path(report["spec"]).is_relative_to(venv)  # the bundled spec file was used
    print(f"wheel build + venv + install: {t_install:.1f} s; total with the two commands: "
          f"{time.perf_counter() - t0:.1f} s")
