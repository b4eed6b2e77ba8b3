"""The path a `cnntrain` command takes, driven in-process through main: one composition, one look at the
data, every file of a run where RunDir says, one-line errors from every command, a torch-free config."""

from __future__ import annotations

import subprocess
import sys

import pytest

from cnntrain.commands.train import main
from cnntrain.reporting.run_dir import RunDir

from helpers import TINY_RUN, assert_one_line_error, run_main


def test_a_single_run_is_composed_once(tmp_path, train_cli, monkeypatch):
    from hydra._internal.hydra import Hydra

    calls = []
    real = Hydra.compose_config
    monkeypatch.setattr(Hydra, "compose_config", lambda self, *a, **k: calls.append(1) or real(self, *a, **k))
    train_cli(tmp_path / "run", "trainer.epochs=1", "report.plots=false")
    assert len(calls) == 1


def test_an_image_folder_is_scanned_once_per_run(tmp_path, synthetic_data_root, monkeypatch):
    from cnntrain.data.sources import class_folders

    from synthetic_images import make_folder

    root = make_folder(tmp_path / "images", rgb=False, size=12, per_class=6)
    scans = []
    real = class_folders.scan_folder

    def counted(cfg):
        scans.append(1)
        return real(cfg)

    monkeypatch.setattr(class_folders, "scan_folder", counted)
    result = run_main(
        main,
        [
            "dataset=imagefolder",
            f"dataset.root={root}",
            "model=cnn2",
            "trainer.epochs=1",
            "trainer.batch_size=8",
            "trainer.progress=false",
            "report.plots=false",
            f"hydra.run.dir='{tmp_path / 'run'}'",
        ],
        tmp_path,
        monkeypatch,
    )
    assert result.returncode == 0, result.stderr
    assert len(scans) == 1


def test_every_file_of_a_run_is_where_run_dir_says(tmp_path, train_cli):
    train_cli(tmp_path / "run", "trainer.epochs=1", "report.plots=true")
    paths = RunDir(tmp_path / "run")
    expected = (
        paths.config_yaml,
        paths.overrides_yaml,
        paths.hydra_yaml,
        paths.train_log,
        paths.metrics_csv,
        paths.steps_csv,
        paths.summary_json,
        paths.best,
        paths.last,
        *paths.plots,
        *paths.analysis_plots,
        paths.report_html,
    )
    for path in expected:
        assert path.is_file(), path
    written = {p.relative_to(paths.root).as_posix() for p in paths.root.rglob("*") if p.is_file()}
    named = {p.relative_to(paths.root).as_posix() for p in expected}
    assert written == named, "a file of the run that RunDir does not name"


def test_a_rejected_command_in_process_leaves_nothing(tmp_path, monkeypatch):
    result = run_main(main, [*TINY_RUN, "optimizer.lr=-1"], tmp_path, monkeypatch)
    assert_one_line_error(result, "optimizer.lr=-1.0: must be > 0", cwd=tmp_path)


def test_help_in_process(tmp_path, monkeypatch):
    result = run_main(main, ["--help"], tmp_path, monkeypatch)
    assert result.returncode == 0 and "Config groups" in result.stdout


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--bogus"], "cnntrain-reproduce: the following arguments are required: run_dir"),
        (["run-dir", "--no-such-flag"], "cnntrain-reproduce: unrecognized arguments: --no-such-flag"),
    ],
)
def test_reproduce_bad_arguments_are_one_line(tmp_path, monkeypatch, argv, expected):
    from cnntrain.commands import reproduce

    result = run_main(reproduce.main, argv, tmp_path, monkeypatch)
    assert_one_line_error(result, expected)


def test_config_package_never_imports_torch(tmp_path):
    script = (
        "import sys\nfrom cnntrain.config.compose import compose_train\n"
        "from cnntrain.config.validate import validate\n"
        "import cnntrain.config.names, cnntrain.config.optimizers\n"
        "validate(compose_train(['optimizer=sgd', 'scheduler=onecycle', 'model=cnn3']))\n"
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "False", out.stderr
