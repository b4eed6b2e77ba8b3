"""Multiruns: the sweep summary, a failing job that does not stop the sweep, and the shipped
Optuna / joblib / submitit configs (each skipped when its optional extra is not installed)."""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

import pytest

from cnntrain.commands import train

from helpers import run_main

TINY_JOB = (
    "model=cnn2",
    "trainer.epochs=1",
    "trainer.batch_size=64",
    "trainer.progress=false",
    "threads=1",
    "report.plots=false",
)


@pytest.fixture(scope="module")
def synthetic_data_root(small_data_root: Path) -> Path:
    """Sweeps train several jobs; none of these tests depends on the data's size, so run_cli uses the small set."""
    return small_data_root


def read_sweep_summary(sweep_dir: Path) -> list[dict[str, str]]:
    with (sweep_dir / "sweep_summary.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def needs(plugin: str) -> pytest.MarkDecorator:
    missing = importlib.util.find_spec(f"hydra_plugins.{plugin}") is None
    return pytest.mark.skipif(missing, reason=f"{plugin} not installed (pip install 'cnntrain[optuna,joblib,slurm]')")


@pytest.mark.slow
def test_failing_job_is_recorded_and_the_sweep_goes_on(run_cli, tmp_path):
    result = run_cli("-m", *TINY_JOB, "optimizer=sgd", "optimizer.lr=0.01,0.02,1e12,0.05", "hydra.sweep.dir=sweep")
    assert result.returncode == 0, result.stderr
    assert "job 2 failed: training loss became" in result.stderr
    rows = read_sweep_summary(tmp_path / "sweep")
    assert [row["status"] for row in rows] == ["done", "done", "done", "failed"]
    assert rows[-1]["job"] == "2" and "optimizer.lr=1000000000000.0" in rows[-1]["overrides"]
    assert rows[-1]["error"].startswith("training loss became") and "batch" in rows[-1]["error"]
    best = [float(row["best"]) for row in rows[:3]]
    assert best == sorted(best, reverse=True), "sorted by val/acc (trainer.checkpoint.mode=max), best first"
    for row in rows[:3]:
        assert row["monitor"] == "val/acc" and float(row["test/acc"]) > 0 and float(row["elapsed_seconds"]) > 0
    assert "sweep: 3 done, 1 failed" in result.stdout


def test_summary_lists_a_killed_job_as_failed(tmp_path):
    from cnntrain.reporting.sweep_rows import collect

    (tmp_path / "0" / ".hydra").mkdir(parents=True)
    (tmp_path / "0" / ".hydra" / "overrides.yaml").write_text("- optimizer.lr=0.1\n")
    (row,) = collect(tmp_path)
    assert (row.status, row.overrides) == ("failed", ["optimizer.lr=0.1"])
    assert "no summary.json" in row.values["error"]


@pytest.mark.slow
@needs("hydra_optuna_sweeper")
def test_optuna_preset_runs_four_trials(run_cli, tmp_path):
    result = run_cli(
        "-m",
        "hparams_search=mnist_optuna",
        "hydra.sweeper.n_trials=4",
        "trainer.epochs=1",
        "trainer.progress=false",
        "threads=1",
        "report.plots=false",
        "hydra.sweep.dir=search",
    )
    assert result.returncode == 0, result.stderr
    rows = read_sweep_summary(tmp_path / "search")
    assert len(rows) == 4 and {row["status"] for row in rows} == {"done"}
    for row in rows:
        params = dict(o.split("=", 1) for o in row["overrides"].split())
        assert 1e-4 <= float(params["optimizer.lr"]) <= 1e-2
        assert 0.0 <= float(params["optimizer.weight_decay"]) <= 1e-3
        assert params["trainer.batch_size"] in {"32", "64", "128", "256"}
        assert 0.0 <= float(params["model.dropout"]) <= 0.7
    assert (tmp_path / "search" / "optimization_results.yaml").is_file()
    assert "Best value" in result.stdout + result.stderr


@pytest.mark.slow
@needs("hydra_joblib_launcher")
def test_joblib_launcher_runs_two_jobs_each_on_its_share_of_the_cores(run_cli, tmp_path):
    """Without threads=N, each of the 2 parallel jobs runs on half the cores (its affinity mask), so the jobs
    do not fight over them."""
    import os

    job = [arg for arg in TINY_JOB if not arg.startswith("threads=")]
    result = run_cli("-m", "hydra/launcher=local_parallel", *job, "optimizer.lr=1e-3,3e-4", "hydra.sweep.dir=parallel")
    assert result.returncode == 0, result.stderr
    assert "Joblib.Parallel(n_jobs=2" in result.stdout + result.stderr
    rows = read_sweep_summary(tmp_path / "parallel")
    assert sorted(row["job"] for row in rows) == ["0", "1"] and {row["status"] for row in rows} == {"done"}
    threads = max(1, len(os.sched_getaffinity(0)) // 2)
    for num in ("0", "1"):
        assert f", {threads} CPU threads," in (tmp_path / "parallel" / num / "train.log").read_text()
    assert sorted(p.name for p in (tmp_path / "parallel" / ".slots").iterdir()) == ["0.lock", "1.lock"]


@pytest.mark.slow
@needs("hydra_submitit_launcher")
def test_slurm_settings_run_with_the_submitit_local_executor(run_cli, tmp_path):
    result = run_cli("-m", "hydra/launcher=slurm_local", *TINY_JOB, "hydra.sweep.dir=cluster")
    assert result.returncode == 0, result.stderr
    rows = read_sweep_summary(tmp_path / "cluster")
    assert [row["status"] for row in rows] == ["done"]
    assert (tmp_path / "cluster" / ".submitit").is_dir(), "submitit ran the job and kept its logs there"


def test_unknown_launcher_names_the_extras(tmp_path, monkeypatch, synthetic_data_root):
    argv = ["-m", "hydra/launcher=nope", "trainer.epochs=1"]
    result = run_main(train.main, argv, tmp_path, monkeypatch, CNNTRAIN_DATA_ROOT=str(synthetic_data_root))
    assert result.returncode == 2
    assert result.stderr.startswith("error: unknown hydra/launcher 'nope'; available: basic")
    assert "pip install 'cnntrain[optuna,joblib,slurm,ray]'" in result.stderr


@needs("hydra_submitit_launcher")
def test_slurm_launcher_config_composes(run_cli):
    result = run_cli("hydra/launcher=slurm", "hydra.launcher.partition=gpu", "--cfg", "hydra")
    assert result.returncode == 0, result.stderr
    assert "_target_: hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher" in result.stdout
    assert "partition: gpu" in result.stdout and "gpus_per_node: 1" in result.stdout


@pytest.mark.slow
def test_running_a_sweep_again_keeps_done_jobs_resumes_checkpoints_and_starts_the_rest(
    run_cli, tmp_path, monkeypatch, synthetic_data_root
):
    """The same command and sweep directory continue an interrupted sweep: job 0 finished (kept untouched),
    job 1 stopped after its first epoch (resumed from last.pt), job 2 never started (run)."""
    import shutil

    import torch

    sweep = ("-m", *TINY_JOB, "trainer.epochs=2", "optimizer.lr=1e-3,3e-4,1e-4", "hydra.sweep.dir=sweep")
    assert run_cli(*sweep).returncode == 0
    jobs = tmp_path / "sweep"
    kept = (jobs / "0" / "summary.json").read_bytes()
    last = jobs / "1" / "checkpoints" / "last.pt"
    checkpoint = torch.load(last, weights_only=False)
    checkpoint["epoch"], checkpoint["history"] = 1, checkpoint["history"][:1]
    torch.save(checkpoint, last)
    (jobs / "1" / "summary.json").unlink()
    shutil.rmtree(jobs / "2")
    (jobs / "sweep_summary.csv").unlink()

    result = run_cli(*sweep)
    assert result.returncode == 0, result.stderr
    assert f"job 0: done in an earlier run of this sweep, kept ({jobs / '0'})" in result.stdout
    assert f"job 1: resuming after epoch 1 ({jobs / '1'})" in result.stdout
    assert (jobs / "0" / "summary.json").read_bytes() == kept
    rows = read_sweep_summary(jobs)
    assert sorted(row["job"] for row in rows) == ["0", "1", "2"] and {row["status"] for row in rows} == {"done"}
    assert len((jobs / "1" / "metrics.csv").read_text().splitlines()) == 1 + 2

    other = run_main(train.main, ["-m", *TINY_JOB, "trainer.epochs=2", "optimizer.lr=5e-3", "hydra.sweep.dir=sweep"],
                     tmp_path, monkeypatch, CNNTRAIN_DATA_ROOT=str(synthetic_data_root))  # fmt: skip
    assert other.returncode == 2
    assert other.stderr.strip().splitlines() == [
        f"error: hydra.sweep.dir={jobs} holds job 0 of another sweep (its config differs in optimizer.lr); give "
        "this sweep a new hydra.sweep.dir"
    ]


def test_a_sweep_saved_by_an_older_cnntrain_can_be_continued():
    """Keys the saved run did not have, and `logger: csv` against `logger: [csv]`, are not differences; a
    changed value, or another set of loggers, is."""
    from cnntrain.commands.sweep_job import config_difference

    saved = {"logger": "csv", "optimizer": {"lr": 1e-3}, "trainer": {"epochs": 2}}
    fresh = {
        "logger": ["csv"],
        "optimizer": {"lr": 1e-3},
        "trainer": {"epochs": 2, "devices": 1},
        "mlflow": {"tracking_uri": None},
    }
    assert config_difference(saved, fresh) == []
    assert config_difference(saved, {**fresh, "logger": ["csv", "mlflow"]}) == ["logger"]
    assert config_difference(saved, {**fresh, "optimizer": {"lr": 3e-4}}) == ["optimizer.lr"]
