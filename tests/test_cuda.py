"""Checks that need a CUDA GPU (skipped without one; benchmarks/gpu_check.py runs them on a GPU machine)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from helpers import TINY_RUN, cli_env, cnntrain_command

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]
RUN = (*TINY_RUN, "trainer.progress=false", "device=cuda")


def _run(command: list[str], cwd: Path, data_root: Path):
    import subprocess

    return subprocess.run(command, cwd=cwd, env=cli_env(data_root), capture_output=True, text=True, timeout=600)


def test_torchrun_on_one_gpu_trains_with_nccl(tmp_path, synthetic_data_root):
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=1",
        "-m",
        "cnntrain",
        *RUN,
        f"hydra.run.dir={tmp_path / 'run'}",
    ]
    result = _run(command, tmp_path, synthetic_data_root)
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["parallel"]["backend"] == "nccl" and summary["parallel"]["world_size"] == 1
    assert summary["test"]["acc"] > 0.5


def test_parallel_jobs_share_the_gpu_when_asked(tmp_path, synthetic_data_root):
    """Two jobs at once, sweep.jobs_per_gpu=2: both on GPU 0 (of those visible), each in its own slot."""
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher")
    result = _run(
        [
            *cnntrain_command(),
            "-m",
            "hydra/launcher=local_parallel",
            "hydra.launcher.n_jobs=2",
            "sweep.jobs_per_gpu=2",
            *RUN,
            "optimizer.lr=1e-3,3e-4",
            f"hydra.sweep.dir={tmp_path / 's'}",
        ],
        tmp_path,
        synthetic_data_root,
    )
    assert result.returncode == 0, result.stderr
    for job in ("0", "1"):
        assert "device cuda" in (tmp_path / "s" / job / "train.log").read_text()
        assert json.loads((tmp_path / "s" / job / "summary.json").read_text())["status"] == "done"
