"""The newcomer's path: what a new user types first from README alone, and the line that tells them what to type
instead. One test per message; the commands run through the CLI's main in this process."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cnntrain.commands.train import main
from cnntrain.reporting.sweep_plot import plan_panels, sweep_figure
from cnntrain.reporting.sweep_rows import JobRow

from helpers import assert_one_line_error, run_main
from synthetic_images import make_folder


def cnntrain(monkeypatch, cwd: Path, *argv: str, data_root: Path | None = None, **env: str):
    return run_main(main, list(argv), cwd, monkeypatch, CNNTRAIN_DATA_ROOT=str(data_root or cwd / "data"), **env)


def test_missing_data_names_data_root_and_the_environment_variable(monkeypatch, tmp_path):
    result = cnntrain(monkeypatch, tmp_path, "dataset=fashion", "dataset.download=false")
    assert_one_line_error(
        result,
        f"FashionMNIST not found under {tmp_path / 'data' / 'FashionMNIST' / 'raw'}",
        "set data_root (or CNNTRAIN_DATA_ROOT;",
        "to a folder that holds FashionMNIST/raw/",
        cwd=tmp_path,
    )


@pytest.mark.parametrize(
    ("dataset", "inside"), [("fashion", "FashionMNIST/raw"), ("mnist", "MNIST/raw"), ("mnist", "MNIST")]
)
def test_a_data_root_inside_the_dataset_gets_its_parent_folder(
    monkeypatch, tmp_path, synthetic_data_root, dataset, inside
):
    result = cnntrain(
        monkeypatch, tmp_path, f"dataset={dataset}", "dataset.download=false", data_root=synthetic_data_root / inside
    )
    assert_one_line_error(
        result, f"point at the parent folder {synthetic_data_root}: data_root={synthetic_data_root}", cwd=tmp_path
    )
    assert "raw/MNIST" not in result.stderr and "MNIST/MNIST" not in result.stderr, "no doubled path"


def test_an_unknown_model_says_where_a_model_file_of_ones_own_goes(monkeypatch, tmp_path, synthetic_data_root):
    result = cnntrain(monkeypatch, tmp_path, "model=mine", data_root=synthetic_data_root)
    assert_one_line_error(
        result,
        "unknown model 'mine'; available: cnn2,",
        "a model of your own: save it as DIR/model/mine.yaml and pass the folder, cnntrain --config-dir DIR model=mine",
        cwd=tmp_path,
    )

    mine = tmp_path / "configs" / "model" / "mine.yaml"  # dropped into configs/model/ as docs/models.md says
    mine.parent.mkdir(parents=True)
    mine.write_text("name: mine\nlayers:\n  - flatten\n  - linear: ${dataset.num_classes}\n")
    result = cnntrain(monkeypatch, tmp_path, "model=mine", data_root=synthetic_data_root)
    assert_one_line_error(
        result,
        "configs/model/mine.yaml is there: pass its folder, cnntrain --config-dir configs model=mine",
        cwd=tmp_path,
    )
    result = cnntrain(
        monkeypatch, tmp_path, "--config-dir", "configs", "model=mine", "--cfg", "job", data_root=synthetic_data_root
    )
    assert result.returncode == 0 and "name: mine" in result.stdout, result.stderr


def test_a_typo_keeps_its_did_you_mean_without_the_config_dir_advice(monkeypatch, tmp_path, synthetic_data_root):
    result = cnntrain(monkeypatch, tmp_path, "model=lenett", data_root=synthetic_data_root)
    assert_one_line_error(result, "(did you mean 'lenet'?)", cwd=tmp_path)
    assert "--config-dir" not in result.stderr


@pytest.mark.parametrize(
    ("argv", "meant"),
    [
        (["--epochs", "1"], "trainer.epochs=1"),
        (["--epochs=1"], "trainer.epochs=1"),
        (["--lr", "3e-4", "model=lenet"], "optimizer.lr=3e-4"),
        (["--batch-size", "32"], "trainer.batch_size=32"),
        (["--model", "cnn2"], "model=cnn2"),
        (["--epochs", "model=lenet"], "trainer.epochs=VALUE"),
    ],
)
def test_a_flag_named_like_a_key_suggests_the_override(monkeypatch, tmp_path, argv, meant):
    result = cnntrain(monkeypatch, tmp_path, *argv)
    assert_one_line_error(result, f"cnntrain takes KEY=VALUE overrides: write {meant}", cwd=tmp_path)
    assert "--hydra-help" not in result.stderr, "the suggestion, not the list of Hydra's flags"


def test_another_unknown_flag_still_lists_the_flags(monkeypatch, tmp_path):
    assert_one_line_error(cnntrain(monkeypatch, tmp_path, "--frobnicate"), "the flags -m/--multirun", cwd=tmp_path)


@pytest.mark.parametrize(
    ("argv", "whole"),
    [
        (["dataset.augment=[{random_crop:", "4},hflip]"], "dataset.augment=[{random_crop: 4},hflip]"),
        (["dataset.augment=[hflip,", "{translate:", "2}]", "model=lenet"], "dataset.augment=[hflip, {translate: 2}]"),
    ],
)
def test_a_list_the_shell_cut_at_its_spaces_is_to_be_quoted(monkeypatch, tmp_path, argv, whole):
    """What bash passes for an unquoted `dataset.augment=[{random_crop: 4},hflip]`: two words."""
    result = cnntrain(monkeypatch, tmp_path, *argv)
    assert_one_line_error(
        result,
        f"cannot parse override '{argv[0]}'",
        f'the shell cut it at a space: quote it whole, "{whole}"',
        cwd=tmp_path,
    )


def test_an_image_folder_under_data_root_says_where_it_looks(monkeypatch, tmp_path):
    result = cnntrain(monkeypatch, tmp_path, "dataset=imagefolder", f"data_root={tmp_path / 'X'}")
    assert_one_line_error(
        result,
        f"image folder {tmp_path / 'X' / 'images'} not found",
        f"{tmp_path / 'X' / 'images' / 'train'}/<class>/<images>",
        "by default dataset=imagefolder reads <data_root>/images",
        cwd=tmp_path,
    )


@pytest.mark.slow
def test_an_image_folder_run_names_its_folder_in_its_first_lines(monkeypatch, tmp_path):
    make_folder(tmp_path / "X" / "images", rgb=False, size=12, per_class=12, test_per_class=4)
    result = cnntrain(
        monkeypatch,
        tmp_path,
        "dataset=imagefolder",
        f"data_root={tmp_path / 'X'}",
        "model=cnn2",
        "trainer.epochs=1",
        "trainer.progress=false",
        "report.plots=false",
        "report.html=false",
    )
    assert result.returncode == 0, result.stderr
    first = result.stdout.splitlines()[:3]
    assert any(f"data: class folders in {tmp_path / 'X' / 'images'}: train/, test/" in line for line in first), first


@pytest.mark.slow
def test_the_outputs_path_is_whole_on_a_narrow_terminal(monkeypatch, tmp_path, small_data_root):
    run_dir = tmp_path / "a-long-folder-name-for-experiments" / "lenet-on-mnist-with-a-long-name" / "run-0001"
    result = cnntrain(
        monkeypatch,
        tmp_path,
        "model=cnn2",
        "trainer.epochs=1",
        "trainer.batch_size=64",
        "trainer.progress=false",
        "report.plots=false",
        f"hydra.run.dir='{run_dir}'",
        data_root=small_data_root,
        COLUMNS="60",
    )
    assert result.returncode == 0, result.stderr
    assert len(str(run_dir)) > 60
    assert f"\noutputs: {run_dir}\n" in result.stdout, "one line holding the whole path, to copy"
    assert f"\nreport: {run_dir / 'report.html'}\n" in result.stdout


def test_the_sweep_plot_title_breaks_between_phrases():
    rows = sorted(
        (
            JobRow(
                str(i),
                "done",
                [f"optimizer.lr={lr}", "trainer.epochs=1"],
                {"monitor": "val/acc", "best": 0.9 + 0.01 * i},
                "max",
            )
            for i, lr in enumerate(["1e-4", "1e-3", "1e-2"])
        ),
        key=JobRow.sort_key,
    )
    panels = plan_panels(rows)
    figure = sweep_figure(panels, rows, rows[0], "multirun/2026-12-02/12-00-00-a-long-sweep-name")
    lines = figure._suptitle.get_text().splitlines()
    assert len(lines) > 2, "the one-panel title is wrapped"
    first_line_ends = [line for line in lines if not line.startswith("best: job")]
    for line in first_line_ends[:-1]:
        assert line.endswith((":", ",")), f"broken inside a phrase: {lines}"
    assert "3 jobs drawn, none failed" in "\n".join(lines).replace(",\n", ", ")


def test_a_long_value_in_a_key_value_table_folds_instead_of_being_cut():
    """cnntrain-eval's table holds the checkpoint's path: on a narrow terminal it folds, every character kept."""
    from rich.console import Console

    from cnntrain.reporting.tables import key_value_table

    path = "/home/someone/experiments/outputs/2026-12-02/12-00-00/checkpoints/best.pt"
    console = Console(width=40, record=True)
    console.print(key_value_table("evaluation", [("checkpoint", path)]))
    cells = [line.split("│")[2].strip() for line in console.export_text().splitlines() if line.count("│") == 3]
    assert "".join(cells) == path and "…" not in console.export_text()


def test_an_unquoted_home_folder_is_to_be_written_out(monkeypatch, tmp_path):
    """`dataset.root=~/photos`: the shell leaves the `~` (it follows `=`) and Hydra's lexer refuses it."""
    result = cnntrain(monkeypatch, tmp_path, "dataset.root=~/photos")
    home = os.path.expanduser("~/photos")
    assert_one_line_error(
        result,
        "cannot parse override 'dataset.root=~/photos'",
        f"a '~' is not expanded after '=': write the path out, dataset.root={home}",
        cwd=tmp_path,
    )
