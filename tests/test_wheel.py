"""The wheel: it ships the model library and the bundled data, and runs installed.

Built with ``pip wheel .`` and installed into a fresh virtual environment whose other
dependencies come from this interpreter's site-packages (no network), then run from a
folder outside the checkout, so nothing can be found through the source tree.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]


def _run(command: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, check=False)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # built from a copy (links kept), so the build folders do not land in the checkout
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for name in ("src", "models"):
        ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
        shutil.copytree(ROOT / name, source / name, symlinks=True, ignore=ignore)
    out = tmp_path_factory.mktemp("wheel")
    build = [sys.executable, "-m", "pip", "wheel", str(source), "--no-deps"]
    done = _run([*build, "--no-build-isolation", "-w", str(out), "-q"], out)
    assert done.returncode == 0, done.stderr
    (path,) = out.glob("tpopk-*.whl")
    return path


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the wheel; returns its bin folder."""
    venv = tmp_path_factory.mktemp("venv")
    assert _run([sys.executable, "-m", "venv", str(venv)], venv).returncode == 0
    python = venv / "bin" / "python"
    done = _run([str(python), "-m", "pip", "install", "--no-deps", "--no-index", str(wheel)], venv)
    assert done.returncode == 0, done.stderr
    purelib = _run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], venv
    )
    # the dependencies (not tpopk: a path line does not run the editable install's hook)
    Path(purelib.stdout.strip(), "_dependencies.pth").write_text(sysconfig.get_paths()["purelib"])
    return venv / "bin"


def test_wheel_ships_the_model_library_and_the_data_with_their_units(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    library = {
        f"tpopk/models/{p.relative_to(ROOT / 'models')}"
        for p in (ROOT / "models").rglob("*")
        if p.is_file()
    }
    assert library
    assert library <= names, sorted(library - names)
    datasets = ROOT / "src" / "tpopk" / "datasets"
    for table in [*datasets.glob("*.csv"), *datasets.glob("*.dta")]:
        assert f"tpopk/datasets/{table.name}" in names
        assert f"tpopk/datasets/{table.stem}.units.toml" in names, table.name
    assert "tpopk/datasets/reference_estimates.toml" in names


@pytest.mark.slow  # a virtual environment and an install: ~80 s
def test_installed_wheel_finds_its_data_outside_the_checkout(
    installed: Path, tmp_path: Path
) -> None:
    code = (
        "import tpopk, tpopk.demo as d, tpopk.datasets as s; "
        "print(tpopk.__file__); print(d.STUDY_TRIAL.is_file()); "
        "print(s.load_theophylline().describe().splitlines()[0])"
    )
    done = _run([str(installed / "python"), "-c", code], tmp_path)
    assert done.returncode == 0, done.stderr
    where, trial, theophylline = done.stdout.splitlines()
    assert not Path(where).is_relative_to(ROOT)
    assert trial == "True"
    assert theophylline.startswith("12 subjects")
    version = _run([str(installed / "tpopk"), "--version"], tmp_path)
    assert version.stdout.startswith("tpopk ")


@pytest.mark.slow
def test_quick_demo_runs_from_the_installed_wheel(installed: Path, tmp_path: Path) -> None:
    done = _run([str(installed / "tpopk"), "demo", "--quick", "--out", "demo"], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "demo" / "study_report.html").is_file()
