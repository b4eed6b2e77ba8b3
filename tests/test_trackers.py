"""What the experiment trackers share, without their packages: `logger` as one name or a list, where a run sits
(the outputs root, its sweep), the guard that turns a failing logger into one warning, and the preflight's
checks of MLflow's tracking URI and of the optional packages."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from cnntrain.commands import train
from cnntrain.config.validate import chosen_loggers
from cnntrain.reporting.run_dir import RunDir
from cnntrain.reporting.trackers import Guarded, flat_config, place_of, run_outcome

from helpers import TINY_RUN, assert_one_line_error, compose_config, run_main


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("csv", ["csv"]),
        ("mlflow", ["csv", "mlflow"]),
        (["tensorboard", "wandb"], ["csv", "tensorboard", "wandb"]),
        (["mlflow", "csv", "mlflow"], ["csv", "mlflow"]),
        ([], ["csv"]),
    ],
)
def test_logger_is_a_list_that_starts_with_csv(value, expected):
    assert chosen_loggers(value) == expected


def test_a_saved_config_with_one_logger_name_still_validates(synthetic_data_root):
    """Runs saved before loggers could be listed hold `logger: csv`; resume and reproduce validate them again."""
    from omegaconf import OmegaConf

    from cnntrain.config.validate import validate

    saved = OmegaConf.to_container(compose_config(*TINY_RUN, data_root=synthetic_data_root))
    saved["logger"] = "tensorboard"
    del saved["mlflow"], saved["wandb"]
    cfg = validate(OmegaConf.create(saved))
    assert list(cfg.logger) == ["csv", "tensorboard"] and cfg.mlflow.tracking_uri is None


def write_hydra_files(run_dir: Path, mode: str, num: int = 0, overrides: str = "[]") -> None:
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / ".hydra" / "hydra.yaml").write_text(f"hydra:\n  mode: {mode}\n  job:\n    num: {num}\n")
    (run_dir / ".hydra" / "overrides.yaml").write_text(overrides + "\n")


def test_the_outputs_root_and_the_sweep_of_a_run(tmp_path):
    single = tmp_path / "outputs" / "2026-11-23" / "10-00-00"
    write_hydra_files(single, "RUN")
    place = place_of(RunDir(single))
    assert (place.root, place.name, place.sweep, place.job) == (tmp_path / "outputs", "2026-11-23/10-00-00", None, None)

    job = tmp_path / "outputs" / "multirun" / "2026-11-23" / "10-00-00" / "3"
    write_hydra_files(job, "MULTIRUN", 3, "- optimizer.lr=0.1\n- seed=2")
    place = place_of(RunDir(job))
    assert place.root == tmp_path / "outputs" and place.sweep == "multirun/2026-11-23/10-00-00"
    assert (place.name, place.job, place.overrides) == (
        "multirun/2026-11-23/10-00-00/3",
        3,
        ("optimizer.lr=0.1", "seed=2"),
    )

    named = tmp_path / "multirun" / "lr-sweep" / "0"  # hydra.sweep.dir=multirun/lr-sweep: outside outputs/
    write_hydra_files(named, "MULTIRUN")
    place = place_of(RunDir(named))
    assert (place.root, place.sweep, place.name) == (tmp_path / "multirun", "lr-sweep", "lr-sweep/0")

    bare = tmp_path / "runs" / "a"  # no .hydra/ (cnntrain.training.run.run called directly): a single run
    bare.mkdir(parents=True)
    assert (place_of(RunDir(bare)).root, place_of(RunDir(bare)).sweep) == (tmp_path / "runs", None)


def test_flat_config_has_dotted_keys(synthetic_data_root):
    flat = flat_config(OmegaConf.to_container(compose_config(*TINY_RUN, data_root=synthetic_data_root), resolve=True))
    assert flat["optimizer.lr"] == 0.001 and flat["model.name"] == "cnn2" and flat["trainer.epochs"] == 2
    assert flat["trainer.early_stopping.patience"] == 5 and flat["logger"] == ["csv"]


class Flaky:
    """A logger whose second epoch fails, as a tracker's server or disk might."""

    def __init__(self) -> None:
        self.rows: list[int] = []

    def log_epoch(self, row):
        if row["epoch"] == 2:
            raise OSError("No space left on device\nmore detail")
        self.rows.append(row["epoch"])


def test_a_failing_logger_warns_once_and_stops(capsys):
    flaky = Flaky()
    guarded = Guarded("mlflow", lambda: flaky)
    for epoch in (1, 2, 3):
        guarded.log_epoch({"epoch": epoch})
    guarded.close()  # a method the wrapped logger lacks is not called once it has stopped
    assert flaky.rows == [1]
    assert capsys.readouterr().err == ("warning: mlflow logger stopped: No space left on device; the run goes on\n")


def test_a_logger_that_cannot_open_warns_and_does_nothing(capsys):
    def unreachable():
        raise ConnectionError("Connection refused")

    guarded = Guarded("wandb", unreachable)
    guarded.log_epoch({"epoch": 1})
    guarded.close()
    assert capsys.readouterr().err == "warning: wandb logger stopped: Connection refused; the run goes on\n"


def test_ctrl_c_is_not_swallowed():
    class Stopping:
        def log_epoch(self, row):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        Guarded("wandb", Stopping).log_epoch({"epoch": 1})


def test_run_outcome(tmp_path):
    paths = RunDir(tmp_path)
    assert run_outcome(paths) == "stopped"
    paths.summary_json.write_text('{"status": "done"}')
    assert run_outcome(paths) == "done"
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        assert run_outcome(paths) == "failed"


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("htp:/x", "mlflow.tracking_uri=htp:/x: unsupported scheme 'htp' (did you mean 'http'?); expected sqlite:///"),
        ("ftp://host/x", "mlflow.tracking_uri=ftp://host/x: unsupported scheme 'ftp'"),
        ("http:/x", "mlflow.tracking_uri=http:/x: names no host; expected http://HOST[:PORT]"),
        ("http://127.0.0.1:port", "mlflow.tracking_uri=http://127.0.0.1:port: Port could not be cast"),
        ("sqlite:/mlflow.db", "expected sqlite:///RELATIVE/PATH.db or sqlite:////ABSOLUTE/PATH.db"),
        (
            "file:///tmp/mlruns",
            "MLflow 3 no longer creates file stores; use a database such as sqlite:///PATH/mlflow.db",
        ),
        ("mlruns", "mlflow.tracking_uri=mlruns: MLflow 3 no longer creates file stores"),
    ],
)
def test_a_malformed_tracking_uri_is_one_line(tmp_path, monkeypatch, synthetic_data_root, uri, expected):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    result = run_main(
        train.main,
        [*TINY_RUN, "logger=[csv,mlflow]", f"mlflow.tracking_uri='{uri}'"],
        tmp_path,
        monkeypatch,
        CNNTRAIN_DATA_ROOT=str(synthetic_data_root),
    )
    assert_one_line_error(result, expected, cwd=tmp_path)


def test_a_malformed_tracking_uri_in_the_environment_is_named(tmp_path, monkeypatch, synthetic_data_root):
    result = run_main(
        train.main,
        [*TINY_RUN, "logger=mlflow"],
        tmp_path,
        monkeypatch,
        CNNTRAIN_DATA_ROOT=str(synthetic_data_root),
        MLFLOW_TRACKING_URI="htps://server:5000",
    )
    assert_one_line_error(
        result,
        "MLFLOW_TRACKING_URI=htps://server:5000: unsupported scheme 'htps' (did you mean 'https'?)",
        cwd=tmp_path,
    )


@pytest.mark.parametrize("tracker", ["mlflow", "wandb", "tensorboard"])
def test_a_missing_package_names_its_extra(tmp_path, monkeypatch, synthetic_data_root, tracker):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == tracker else real_find_spec(name, *a)
    )
    result = run_main(
        train.main,
        [*TINY_RUN, f"logger=[csv,{tracker}]"],
        tmp_path,
        monkeypatch,
        CNNTRAIN_DATA_ROOT=str(synthetic_data_root),
    )
    assert_one_line_error(
        result, f"logger={tracker} needs the {tracker} package: pip install 'cnntrain[{tracker}]'", cwd=tmp_path
    )


def test_the_trackers_keep_the_page_and_every_picture_the_run_drew(tmp_path):
    """artifact_files: the pictures that exist (the multi-label pr_curves.png included), report.html, summary.json,
    best.pt only when asked; nothing that is not there."""
    from cnntrain.reporting.trackers import artifact_files

    paths = RunDir(tmp_path)
    names = [
        "curves.png",
        "worst_mistakes.png",
        "reliability.png",
        "per_class.png",
        "pr_curves.png",
        "report.html",
        "summary.json",
    ]
    for name in names:
        (tmp_path / name).write_text("x")
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "best.pt").write_text("x")
    assert sorted(path.name for path, folder in artifact_files(paths, False)) == sorted(names)
    assert "checkpoints" in {folder for _, folder in artifact_files(paths, True)}
