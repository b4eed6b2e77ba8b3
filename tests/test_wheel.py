"""A built wheel carries the configs: `cnntrain --help` and a tiny run work from a fresh venv."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from helpers import repo_group_line

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    dist = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist), str(REPO)],
        check=True,
        capture_output=True,
        text=True,
    )
    [built] = list(dist.glob("cnntrain-*.whl"))
    return built


def test_wheel_contains_every_config(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {
        str(p.relative_to(REPO)).replace("configs/", "cnntrain/configs/", 1) for p in (REPO / "configs").rglob("*.yaml")
    }
    assert shipped and shipped <= names, sorted(shipped - names)


def test_fresh_venv_runs_from_the_wheel(wheel, tmp_path, synthetic_data_root):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    bin_dir = venv / ("Scripts" if os.name == "nt" else "bin")
    site = Path(
        subprocess.run(
            [str(bin_dir / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    # Install the wheel alone; its dependencies (torch is gigabytes) come from this environment through a
    # .pth file. Only the wheel's cnntrain is importable there: this checkout is not on that path.
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--target", str(site), str(wheel)],
        check=True,
        capture_output=True,
        text=True,
    )
    (site / "_cnntrain_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "CNNTRAIN_DEBUG")}
    env["CNNTRAIN_DATA_ROOT"] = str(synthetic_data_root)
    # `pip --target` writes console scripts for the installing interpreter, so call the entry point directly
    entry = "from cnntrain.commands.train import main; main()"
    run = lambda *args: subprocess.run(
        [str(bin_dir / "python"), "-c", entry, *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )

    where = subprocess.run(
        [str(bin_dir / "python"), "-c", "import cnntrain; print(cnntrain.__file__)"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert Path(where.strip()).is_relative_to(site), where

    help_text = run("--help")
    assert help_text.returncode == 0, help_text.stderr
    assert repo_group_line("model") in help_text.stdout, "every model config must ship in the wheel"
    assert repo_group_line("experiment") in help_text.stdout

    tiny = run("model=cnn2", "trainer.epochs=1", "hydra.run.dir=run")
    assert tiny.returncode == 0, tiny.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["git"] is None, "an installed wheel has no checkout to name a commit of"
    declared = re.search(r'^version = "([^"]+)"', (REPO / "pyproject.toml").read_text(), re.MULTILINE)
    assert summary["versions"]["cnntrain"] == declared.group(1)
