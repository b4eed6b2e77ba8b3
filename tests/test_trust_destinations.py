"""A saved run chooses no destination, and the command line does (issue 29's leftovers): cnntrain-eval says in
one line which of a checkpoint's destinations it did not take; `cnntrain resume=RUN` takes the trackers and the
cache folder from its own command line (and nothing else); `Run.export()` writes nothing through a planted
`export/` link."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from test_trust_files import plant_export_link

from cnntrain.commands import evaluate, train
from cnntrain.training.checkpoints import load_checkpoint, save_checkpoint

from helpers import TINY_RUN, assert_one_line_error, compose_config, run_main, run_stopped_in_epoch

SENDERS_URI = "http://mlflow.sender.example:5000"


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` (links not followed) and its bytes: to tell that nothing was written there."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def plant_destinations(checkpoint: Path, outside: Path) -> None:
    """The checkpoint names a tracking server and a cache folder of its sender's."""
    payload = load_checkpoint(checkpoint)
    payload["config"]["mlflow"]["tracking_uri"] = SENDERS_URI
    payload["config"]["dataset"]["cache_dir"] = str(outside / "cache")
    save_checkpoint(checkpoint, payload)


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "victim.txt").write_text("keep me\n")
    return folder


# -- cnntrain-eval ----------------------------------------------------------------------------------------------


def test_eval_says_in_one_line_which_destinations_of_the_checkpoint_it_did_not_take(
    one_epoch_run, tmp_path, outside, monkeypatch
):
    run = tmp_path / "run"
    shutil.copytree(one_epoch_run, run)
    result = run_main(evaluate.main, [str(run), "--device", "cpu"], tmp_path, monkeypatch)
    assert result.returncode == 0, result.stderr
    assert "notice:" not in result.stderr, "a checkpoint with this machine's destinations needs no notice"

    plant_destinations(run / "checkpoints" / "best.pt", outside)
    before = snapshot(outside)
    result = run_main(evaluate.main, [str(run), "--device", "cpu"], tmp_path, monkeypatch)
    assert result.returncode == 0, result.stderr
    notices = [line for line in result.stderr.splitlines() if line.startswith("notice:")]
    assert notices == [
        f"notice: the checkpoint {run / 'checkpoints' / 'best.pt'} names its own mlflow, dataset.cache_dir; not "
        f"taken (a saved run chooses no destination on this machine): this run uses this machine's defaults"
    ]
    mine = tmp_path / "mine"
    result = run_main(evaluate.main, [str(run), "--device", "cpu", f"dataset.cache_dir={mine}"], tmp_path, monkeypatch)
    assert result.returncode == 0, result.stderr
    (notice,) = [line for line in result.stderr.splitlines() if line.startswith("notice:")]
    assert "names its own mlflow; not taken" in notice
    assert notice.endswith("this run uses the command's dataset.cache_dir and this machine's defaults for the rest")
    assert snapshot(outside) == before and SENDERS_URI not in (run / "eval_summary.json").read_text()


# -- cnntrain resume=RUN with the trackers on the command line ------------------------------------------------


@pytest.fixture(scope="module")
def stopped(tmp_path_factory: pytest.TempPathFactory, small_data_root: Path) -> Path:
    """A run stopped in its second epoch, whose last.pt names a sender's MLflow server and cache folder."""
    folder = tmp_path_factory.mktemp("stopped")
    cfg = compose_config(*TINY_RUN, "trainer.progress=false", data_root=small_data_root)
    with pytest.MonkeyPatch.context() as monkeypatch:
        run_stopped_in_epoch(cfg, folder / "run", 2, monkeypatch)
    (folder / "outside").mkdir()
    plant_destinations(folder / "run" / "checkpoints" / "last.pt", folder / "outside")
    return folder / "run"


@pytest.mark.parametrize(
    ("overrides", "fragments"),
    [
        (["trainer.epochs=5"], ("continues one run with its saved config", "trainer.epochs=5", "logger, mlflow.KEY")),
        (["+logger=[csv]"], ("drop -m and the other overrides (+logger=[csv])",)),
        (["seed=3", "logger=csv"], ("other overrides (seed=3)",)),
        (["logger=[csv,bogus]"], ("logger=[csv, bogus]", "unknown logger 'bogus'")),
        (["logger=[csv,mlflow]", "mlflow.tracking_uri=file:/tmp/x"], ("mlflow.tracking_uri=file:/tmp/x", "MLflow 3")),
        (["mlflow.bogus=1"], ("bogus",)),
        (["logger=csv,mlflow"], ("logger=csv,mlflow", "sweeps over several values", "logger=[csv,mlflow]")),
        (["dataset.cache_dir=~/x"], ("dataset.cache_dir=~/x", "~")),
    ],
)
def test_resume_takes_only_destinations_from_the_command_line(stopped, tmp_path, monkeypatch, overrides, fragments):
    run = tmp_path / "run"
    shutil.copytree(stopped, run)
    before = snapshot(run)
    result = run_main(train.main, [f"resume={run}", *overrides], tmp_path, monkeypatch)
    assert_one_line_error(result, *fragments)  # the notice on the checkpoint's destinations comes only once all is well
    assert snapshot(run) == before, "a refused resume writes nothing"


@pytest.mark.slow
def test_resume_logs_to_the_trackers_its_command_line_names(stopped, tmp_path, monkeypatch):
    pytest.importorskip("mlflow", reason="pip install 'cnntrain[mlflow]'")
    from mlflow.tracking import MlflowClient

    run = tmp_path / "run"
    shutil.copytree(stopped, run)
    outside = stopped.parent / "outside"
    before = snapshot(outside)
    store = f"sqlite:///{tmp_path / 'mine.db'}"
    argv = [f"resume={run}", "logger=[csv,mlflow]", f"mlflow.tracking_uri={store}", "mlflow.experiment=resumed"]
    result = run_main(train.main, argv, tmp_path, monkeypatch)
    assert result.returncode == 0, result.stderr
    (notice,) = [line for line in result.stderr.splitlines() if line.startswith("notice:")]
    assert notice == (
        f"notice: the checkpoint of {run} names its own mlflow, dataset.cache_dir; not taken (a saved run chooses "
        f"no destination on this machine): this run uses the command's logger, mlflow.tracking_uri, "
        f"mlflow.experiment and this machine's defaults for the rest"
    )
    client = MlflowClient(tracking_uri=store)
    (logged,) = client.search_runs([client.get_experiment_by_name("resumed").experiment_id])
    assert logged.info.status == "FINISHED" and "test/acc" in logged.data.metrics
    assert [m.step for m in client.get_metric_history(logged.info.run_id, "val/acc")] == [2]
    saved = load_checkpoint(run / "checkpoints" / "last.pt")["config"]
    assert saved["logger"] == ["csv", "mlflow"] and saved["mlflow"]["tracking_uri"] == store
    assert snapshot(outside) == before and SENDERS_URI not in (run / "summary.json").read_text()


# -- Run.export() through a planted link -------------------------------------------------------------------------


@pytest.mark.parametrize("what", ["export", "export/model.pt"])
def test_run_export_writes_nothing_through_a_planted_link(one_epoch_run, tmp_path, outside, what):
    from cnntrain import Run
    from cnntrain.errors import UserError

    run = tmp_path / "run"
    shutil.copytree(one_epoch_run, run)
    plant_export_link(run, outside, what)
    before = snapshot(outside)
    with pytest.raises(UserError) as refused:
        Run(run).export(format="torchscript")
    message = str(refused.value)
    assert "\n" not in message and f"{run / what} is a symbolic link" in message
    assert snapshot(outside) == before and (run / what).is_symlink()
    (run / what).unlink()
    assert Run(run).export(format="torchscript") == run / "export" / "model.pt"
    assert snapshot(outside) == before
