"""logger=[csv,mlflow] with the real mlflow package and a SQLite store, read back with MlflowClient: one run's
params, metrics, tags and artifacts; a sweep's jobs grouped in one experiment; parallel jobs sharing a store;
a resumed run continuing its MLflow run; a store that breaks or a server that is not there costing nothing
but one warning."""

from __future__ import annotations

import csv
import importlib.util
import json
import shutil
from pathlib import Path

import pytest

import cnntrain
from cnntrain.commands import train
from cnntrain.config.names import EPOCH_METRICS, STEP_LOSS

from helpers import TINY_RUN, run_main, run_stopped_in_epoch

needs_extra = pytest.mark.skipif(
    importlib.util.find_spec("mlflow") is None, reason="mlflow is not installed: pip install 'cnntrain[mlflow]'"
)  # found, not imported: collection stays quick
pytestmark = needs_extra


ARTIFACTS = {
    "curves.png",
    "confusion_matrix.png",
    "misclassified.png",
    "summary.json",
    "model.txt",
    "report.html",
    "worst_mistakes.png",
    "reliability.png",
    "per_class.png",
}  # what the run directory shows


@pytest.fixture(scope="session")
def empty_store(tmp_path_factory) -> Path:
    """An MLflow SQLite store with no runs, made once: creating one runs MLflow's migrations (seconds)."""
    from mlflow.tracking import MlflowClient

    path = tmp_path_factory.mktemp("mlflow_store") / "mlflow.db"
    MlflowClient(f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture(scope="module")
def synthetic_data_root(small_data_root: Path) -> Path:
    """A tracker logs what the run writes, whatever the data: the runs here train on the small set."""
    return small_data_root


@pytest.fixture
def outputs(tmp_path, empty_store, monkeypatch) -> Path:
    """tmp_path/outputs holding a copy of the empty store, where a run under it logs by default."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    (tmp_path / "outputs").mkdir()
    shutil.copyfile(empty_store, tmp_path / "outputs" / "mlflow.db")
    return tmp_path / "outputs"


def client_of(outputs: Path):
    from mlflow.tracking import MlflowClient

    return MlflowClient(f"sqlite:///{outputs / 'mlflow.db'}")


def runs_in(client, experiment: str) -> list:
    found = client.get_experiment_by_name(experiment)
    assert found is not None, f"no experiment {experiment!r}"
    return sorted(client.search_runs([found.experiment_id]), key=lambda r: r.info.start_time)


def history(client, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


def csv_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def assert_complete(run_dir: Path, epochs: int) -> None:
    """Everything a run writes is there, whatever its trackers did."""
    assert [row["epoch"] for row in csv_rows(run_dir / "metrics.csv")] == [str(e) for e in range(1, epochs + 1)]
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "done"
    for name in ("checkpoints/best.pt", "checkpoints/last.pt", "curves.png", "misclassified.png"):
        assert (run_dir / name).is_file(), name


def importlib_missing(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is None


@pytest.mark.slow
def test_a_run_is_logged_to_the_sqlite_store_in_the_outputs_root(outputs, train_cli):
    run_dir = outputs / "2026-11-23" / "10-00-00"
    run_dir.parent.mkdir()
    result = train_cli(run_dir, "logger=[csv,mlflow]", "mlflow.log_checkpoint=true", "report.plots=true")
    assert "warning" not in result.stderr, result.stderr

    client = client_of(outputs)
    (run,) = runs_in(client, "cnntrain")
    store = f"sqlite:///{outputs / 'mlflow.db'}"
    assert (
        f"mlflow: run {run.info.run_id} logged to {store}; look with: mlflow ui --backend-store-uri {store}"
        in result.stdout
    ), "the run says where its store is"
    assert json.loads((run_dir / "trackers.json").read_text())["mlflow"]["run_id"] == run.info.run_id
    assert run.info.status == "FINISHED" and run.info.run_name == "2026-11-23/10-00-00"
    params = run.data.params
    assert params["model.name"] == "cnn2" and params["trainer.epochs"] == "2" and params["optimizer.lr"] == "0.001"
    assert params["trainer.batch_size"] == "64" and params["mlflow.log_checkpoint"] == "True"
    tags = run.data.tags
    assert (tags["model"], tags["dataset"], tags["cnntrain_version"]) == ("cnn2", "mnist", cnntrain.__version__)
    assert len(tags["git_commit"]) == 40 or tags["git_commit"] == "none"
    assert tags["run_dir"] == str(run_dir) and "sweep" not in tags

    rows = csv_rows(run_dir / "metrics.csv")
    for key in EPOCH_METRICS:
        assert history(client, run.info.run_id, key) == [
            (e, pytest.approx(float(rows[e - 1][key]), rel=1e-6)) for e in (1, 2)
        ], key
    steps = csv_rows(run_dir / "steps.csv")
    assert history(client, run.info.run_id, STEP_LOSS) == [
        (int(float(s["step"])), pytest.approx(float(s[STEP_LOSS]), rel=1e-6)) for s in steps
    ]
    assert [step for step, _ in history(client, run.info.run_id, "lr")] == [int(float(s["step"])) for s in steps]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert run.data.metrics["test/acc"] == pytest.approx(summary["test"]["acc"])
    assert run.data.metrics["test/loss"] == pytest.approx(summary["test"]["loss"])
    assert history(client, run.info.run_id, "test/acc")[0][0] == 2

    assert {a.path for a in client.list_artifacts(run.info.run_id)} == ARTIFACTS | {"checkpoints"}
    assert [a.path for a in client.list_artifacts(run.info.run_id, "checkpoints")] == ["checkpoints/best.pt"]
    assert (outputs / "mlartifacts" / run.info.run_id / "artifacts" / "summary.json").is_file()


@pytest.mark.slow
def test_a_sweep_is_one_experiment_with_a_run_per_job(outputs, monkeypatch, small_data_root):
    result = run_main(
        train.main,
        [
            "-m",
            *TINY_RUN,
            "trainer.epochs=1",
            "trainer.progress=false",
            "threads=1",
            "report.plots=false",
            "optimizer.lr=1e-3,2e-3,3e-3",
            "logger=[csv,mlflow]",
            "hydra.sweep.dir=outputs/multirun/lr",
        ],
        outputs.parent,
        monkeypatch,
        CNNTRAIN_DATA_ROOT=str(small_data_root),
    )
    assert result.returncode == 0, result.stderr
    assert "warning" not in result.stderr, result.stderr

    client = client_of(outputs)
    runs = runs_in(client, "multirun/lr")
    assert [r.info.run_name for r in runs] == ["multirun/lr/0", "multirun/lr/1", "multirun/lr/2"]
    assert [r.data.tags["job"] for r in runs] == ["0", "1", "2"]
    assert [r.data.params["optimizer.lr"] for r in runs] == ["0.001", "0.002", "0.003"]
    assert {r.data.tags["sweep"] for r in runs} == {"multirun/lr"}
    assert "optimizer.lr=0.001" in runs[0].data.tags["overrides"].split()
    for earlier, later in zip(runs, runs[1:]):
        assert earlier.info.end_time <= later.info.start_time, "each job's run ends before the next starts"
    for run in runs:
        assert run.info.status == "FINISHED"
        assert [step for step, _ in history(client, run.info.run_id, "val/acc")] == [1]
        assert {a.path for a in client.list_artifacts(run.info.run_id)} == {"summary.json", "model.txt", "report.html"}
    assert client.get_experiment_by_name("cnntrain") is None


@pytest.mark.slow
def test_parallel_jobs_share_a_new_store(run_cli, tmp_path, monkeypatch):
    """Two joblib jobs at once, into a store neither finds: one creates it while the other waits on the lock."""
    if importlib_missing("hydra_plugins.hydra_joblib_launcher"):
        pytest.skip("hydra-joblib-launcher not installed (pip install 'cnntrain[joblib]')")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    result = run_cli(
        "-m",
        "hydra/launcher=local_parallel",
        *TINY_RUN,
        "trainer.epochs=1",
        "trainer.progress=false",
        "report.plots=false",
        "seed=1,2",
        "logger=[csv,mlflow]",
        "hydra.sweep.dir=outputs/multirun/par",
    )
    assert result.returncode == 0, result.stderr
    assert "warning" not in result.stderr and "locked" not in result.stderr, result.stderr
    runs = runs_in(client_of(tmp_path / "outputs"), "multirun/par")
    assert sorted(r.data.params["seed"] for r in runs) == ["1", "2"]
    assert {r.info.status for r in runs} == {"FINISHED"}
    for run in runs:
        assert [step for step, _ in history(client_of(tmp_path / "outputs"), run.info.run_id, "val/acc")] == [1]


@pytest.mark.slow
def test_a_resumed_run_continues_its_mlflow_run(outputs, tiny_config, monkeypatch):
    from cnntrain.training.run import resume_run

    cfg = tiny_config("trainer.epochs=3", "report.plots=false", "logger=[csv,mlflow]")
    run_dir = outputs / "stopped"
    run_stopped_in_epoch(cfg, run_dir, 2, monkeypatch)
    client = client_of(outputs)
    (first,) = runs_in(client, "cnntrain")
    assert first.info.status == "KILLED"
    assert [step for step, _ in history(client, first.info.run_id, "val/acc")] == [1]

    resume_run(run_dir)
    (resumed,) = runs_in(client, "cnntrain")
    assert resumed.info.run_id == first.info.run_id and resumed.info.status == "FINISHED"
    assert json.loads((run_dir / "trackers.json").read_text())["mlflow"]["run_id"] == first.info.run_id
    rows = csv_rows(run_dir / "metrics.csv")
    assert history(client, first.info.run_id, "val/acc") == [
        (e, pytest.approx(float(rows[e - 1]["val/acc"]), rel=1e-6)) for e in (1, 2, 3)
    ], "each epoch once"
    steps = [step for step, _ in history(client, first.info.run_id, STEP_LOSS)]
    assert steps == sorted(set(steps)) and len(steps) == len(csv_rows(run_dir / "steps.csv"))


@pytest.mark.slow
def test_an_unreachable_server_costs_one_warning(tmp_path, train_cli, monkeypatch):
    from cnntrain.training.launch import free_port

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "1")
    run_dir = tmp_path / "run"
    result = train_cli(
        run_dir, "logger=[csv,mlflow]", f"mlflow.tracking_uri=http://127.0.0.1:{free_port()}", "report.plots=true"
    )
    lines = result.stderr.strip().splitlines()
    assert (
        len(lines) == 1
        and lines[0].startswith("warning: mlflow logger stopped: ")
        and lines[0].endswith("; the run goes on")
    ), result.stderr
    assert_complete(run_dir, 2)
    assert not (run_dir / "trackers.json").exists()


@pytest.mark.slow
def test_a_store_that_breaks_mid_run_costs_one_warning(outputs, train_cli, monkeypatch):
    """The store is fine when the run starts and unreadable from its second epoch on (a full or failing disk)."""
    from cnntrain.reporting.mlflow_logger import MLflowLogger

    real_log_steps = MLflowLogger.log_steps

    def breaking_log_steps(self, rows):
        if rows[0]["epoch"] > 1:
            (outputs / "mlflow.db").write_bytes(b"\0" * 4096)
        return real_log_steps(self, rows)

    monkeypatch.setattr(MLflowLogger, "log_steps", breaking_log_steps)
    run_dir = outputs / "run"
    result = train_cli(run_dir, "logger=[csv,mlflow]", "report.plots=true")
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("warning: mlflow logger stopped: "), result.stderr
    assert_complete(run_dir, 2)
