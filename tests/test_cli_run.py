"""The CLI as users run it: a single run and a sweep, as subprocesses on the synthetic data."""

from __future__ import annotations

import json

import pytest
import yaml

from helpers import TINY_RUN

pytestmark = pytest.mark.slow


def test_single_run_writes_hydra_and_cnntrain_files(run_cli, tmp_path, small_data_root):
    result = run_cli(*TINY_RUN, data_root=small_data_root)
    assert result.returncode == 0, result.stderr
    [run_dir] = [p for p in (tmp_path / "outputs").glob("*/*") if p.is_dir()]
    for name in (
        ".hydra/config.yaml",
        ".hydra/overrides.yaml",
        ".hydra/hydra.yaml",
        "train.log",
        "metrics.csv",
        "summary.json",
        "checkpoints/best.pt",
        "checkpoints/last.pt",
    ):
        assert (run_dir / name).is_file(), name
    assert yaml.safe_load((run_dir / ".hydra" / "overrides.yaml").read_text()) == list(TINY_RUN)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["model"] == "cnn2" and summary["test"]["acc"] > 0.5
    assert "test/acc (best checkpoint)" in result.stdout and "50,186" in result.stdout


def test_multirun_runs_each_job_in_its_own_directory(run_cli, tmp_path, small_data_root):
    result = run_cli(
        "-m",
        "model=lenet,cnn2",
        "trainer.epochs=1",
        "trainer.batch_size=128",
        "report.plots=false",
        data_root=small_data_root,
    )
    assert result.returncode == 0, result.stderr
    [sweep_dir] = list((tmp_path / "outputs" / "multirun").glob("*/*"))
    summaries = {}
    for job in ("0", "1"):
        summary = json.loads((sweep_dir / job / "summary.json").read_text())
        summaries[summary["model"]] = summary
        assert (sweep_dir / job / "checkpoints" / "best.pt").is_file()
    assert set(summaries) == {"lenet", "cnn2"}
    assert summaries["lenet"]["params"] == 431_080 and summaries["cnn2"]["params"] == 50_186
    assert summaries["lenet"]["macs_per_image"] == 2_293_000
    assert (sweep_dir / "multirun.yaml").is_file()
