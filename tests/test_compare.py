"""cnntrain-compare on real runs: two run directories, a whole sweep, and the mistakes it answers in one line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from PIL import Image
from test_sweep_plot import four_job_sweep

from cnntrain.commands import compare
from cnntrain.commands.compare import differing_keys, short_names
from cnntrain.config.flat import flatten
from cnntrain.reporting.compare_plot import GAP_W, LEFT, PANEL_W, PANELS, RIGHT, legend_columns

from helpers import assert_one_line_error, run_main

COMPARE_WIDTH = round(100 * (LEFT + len(PANELS) * PANEL_W + (len(PANELS) - 1) * GAP_W + RIGHT))


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory, small_data_root) -> Path:
    """The 4-job sweep of test_sweep_plot.py (jobs 0, 1: lenet with lr 1e-3, 1e-2; jobs 2, 3: cnn2 with both)."""
    return four_job_sweep(tmp_path_factory, small_data_root)[0]


def copy_run(source: Path, target: Path) -> Path:
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("checkpoints", "*.png"))
    return target


def damage(run: Path, name: str, text: str) -> Path:
    (run / name).write_text(text)
    return run


@pytest.fixture(scope="module")
def broken(tmp_path_factory, sweep_dir) -> dict[str, str]:
    """Copies of job 0, each with one thing wrong, by the name the cases below use for it."""
    root = tmp_path_factory.mktemp("broken")
    job = sweep_dir / "0"
    summary = json.loads((job / "summary.json").read_text())
    no_metrics = copy_run(job, root / "no_metrics")
    (no_metrics / "metrics.csv").unlink()
    sweep_without_epochs = root / "sweep_without_epochs"
    (copy_run(job, sweep_without_epochs / "0") / "metrics.csv").unlink()
    (root / "EMPTY").mkdir()
    (root / "picture.png").mkdir()
    (root / "a_file").write_text("not a run\n")
    places = {
        "EMPTY": root / "EMPTY",
        "FILE": root / "a_file",
        "DIR_PNG": root / "picture.png",
        "NO_METRICS": no_metrics,
        "SWEEP_WITHOUT_EPOCHS": sweep_without_epochs,
        "TORN_JSON": damage(copy_run(job, root / "torn_json"), "summary.json", '{"status": "do'),
        "LIST_JSON": damage(copy_run(job, root / "list_json"), "summary.json", "[1, 2]\n"),
        "WORD_ACC": damage(
            copy_run(job, root / "word_acc"),
            "summary.json",
            json.dumps({**summary, "test": {"acc": "high", "loss": 0.1}}),
        ),
        "WORD_CELL": damage(
            copy_run(job, root / "word_cell"),
            "metrics.csv",
            "epoch,train/loss,train/acc,val/loss,val/acc,lr,seconds\n1,abc,0.5,0.4,0.9,0.001,1.0\n",
        ),
        "NO_COLUMN": damage(copy_run(job, root / "no_column"), "metrics.csv", "epoch,train/loss\n1,0.5\n"),
        "BAD_CONFIG": damage(copy_run(job, root / "bad_config"), ".hydra/config.yaml", "model: [lenet\n"),
        "LIST_CONFIG": damage(copy_run(job, root / "list_config"), ".hydra/config.yaml", "- lenet\n"),
        "RUN": job,
    }
    return {name: str(path) for name, path in places.items()}


COMPARE_MISTAKES = [
    ([], "cnntrain-compare: the following arguments are required: RUN_DIR"),
    (["/no/such/run"], "run directory not found: /no/such/run"),
    (["RUN", "/no/such/run"], "run directory not found: /no/such/run"),
    (["EMPTY"], "is not a cnntrain run or sweep directory (no .hydra/config.yaml in it or in its sub-directories)"),
    (["FILE"], "a_file is a file; give a run directory or a sweep directory"),
    (["NO_METRICS"], "no_metrics has no metrics.csv, so no curve to draw"),
    (["SWEEP_WITHOUT_EPOCHS"], "no run to compare in"),
    (["TORN_JSON"], "torn_json/summary.json line 1: not valid JSON"),
    (["LIST_JSON"], "list_json/summary.json holds a list, not the JSON object a run writes"),
    (["WORD_ACC"], "word_acc/summary.json: 'test.acc' is a string, not a number"),
    (["WORD_CELL"], "word_cell/metrics.csv row 1: train/loss is 'abc', not a number"),
    (["NO_COLUMN"], "no_column/metrics.csv lacks the columns"),
    (["BAD_CONFIG"], "bad_config/.hydra/config.yaml line 2: not valid YAML"),
    (["LIST_CONFIG"], "list_config/.hydra/config.yaml holds a list, not the mapping of the run's config"),
    (["RUN", "--out", "curves.pdf"], "--out curves.pdf: the picture is a PNG; give a file name ending in .png"),
    (["RUN", "--out", "DIR_PNG"], "picture.png is a directory; give a file name ending in .png"),
    (["RUN", "--bogus"], "cnntrain-compare: unrecognized arguments: --bogus"),
]


@pytest.mark.slow
@pytest.mark.parametrize(("args", "expected"), COMPARE_MISTAKES, ids=[" ".join(a) for a, _ in COMPARE_MISTAKES])
def test_compare_mistake(tmp_path, monkeypatch, broken, args, expected):
    filled = [broken.get(arg, arg) for arg in args]
    result = run_main(compare.main, filled, tmp_path, monkeypatch)
    assert_one_line_error(result, expected, cwd=tmp_path)
    assert not (tmp_path / "compare.png").exists()


@pytest.mark.slow
def test_two_runs_overlaid_with_the_key_that_differs(tmp_path, monkeypatch, sweep_dir):
    out = tmp_path / "pictures" / "two.png"
    result = run_main(
        compare.main, [str(sweep_dir / "0"), str(sweep_dir / "1"), "--out", str(out)], tmp_path, monkeypatch
    )
    assert result.returncode == 0, result.stderr
    assert "config keys that differ: optimizer.lr" in result.stdout
    assert "model.name" not in result.stdout, "both are lenet"
    assert result.stdout.strip().splitlines()[-1] == f"wrote {out}"
    with Image.open(out) as image:
        assert image.format == "PNG" and image.width == COMPARE_WIDTH
    summary = json.loads((sweep_dir / "0" / "summary.json").read_text())
    assert f"{100 * summary['test']['acc']:.2f}%" in result.stdout and "2 runs compared" in result.stdout


@pytest.mark.slow
def test_a_sweep_directory_stands_for_its_jobs(tmp_path, monkeypatch, sweep_dir):
    unfinished = copy_run(sweep_dir / "3", tmp_path / "unfinished")
    (unfinished / "summary.json").unlink()  # a run still training: its curves so far, dashes for the rest
    result = run_main(compare.main, [str(sweep_dir), str(sweep_dir / "0"), str(unfinished)], tmp_path, monkeypatch)
    assert result.returncode == 0, result.stderr
    assert "5 runs compared" in result.stdout, "job 0, named twice, is compared once"
    assert (
        "config keys that differ: model.name, optimizer.lr; with model.name also model.description, "
        "model.dropout, model.layers"
    ) in result.stdout
    assert "unfinished" in result.stdout
    assert result.stdout.strip().splitlines()[-1] == f"wrote {tmp_path / 'compare.png'}"
    with Image.open(tmp_path / "compare.png") as image:
        assert image.width == COMPARE_WIDTH and image.height > 400


def test_differing_keys_leave_out_what_a_differing_group_choice_implies():
    lenet = flatten(
        {"model": {"name": "lenet", "layers": [1, 2]}, "optimizer": {"lr": 0.001, "name": "adam"}, "seed": 1}
    )
    cnn2 = flatten(
        {
            "model": {"name": "cnn2", "layers": [3]},
            "optimizer": {"lr": 0.01, "name": "adam"},
            "seed": 1,
            "extra": {"tag": "x"},
        }
    )
    assert differing_keys([lenet, cnn2]) == (["model.name", "optimizer.lr", "extra.tag"], ["model.layers"])
    assert differing_keys([lenet, lenet]) == ([], [])


def test_short_names_are_the_paths_below_the_shared_folder(tmp_path):
    assert short_names([tmp_path / "sweep" / "0", tmp_path / "sweep" / "1"]) == ["0", "1"]
    assert short_names([tmp_path / "a" / "run", tmp_path / "b" / "run"]) == ["a/run", "b/run"]
    assert short_names([tmp_path / "sweep" / "3"]) == ["3"]
    assert short_names([tmp_path / "s" / "0", tmp_path / "s" / "1", tmp_path / "t" / "0"]) == ["s/0", "1", "t/0"]
    assert short_names([tmp_path / "s" / "0", tmp_path / "s" / "0"]) == [str(tmp_path.resolve() / "s" / "0")] * 2


def test_legend_columns_fit_the_labels():
    assert legend_columns(["0: lr=0.001"] * 8, 15.0) == 4
    assert legend_columns(["0: lr=0.001"] * 6, 15.0) == 3, "two even rows"
    assert legend_columns(["0: " + "x" * 150], 15.0) == 1
    assert legend_columns(["a", "b"], 15.0) == 2


def test_runs_with_steps_draw_their_per_step_loss(tmp_path, monkeypatch):
    """The train-loss panel draws each run's steps (smoothed) through its epoch markers and starts at the first
    step; a run without steps.csv keeps its line between epochs."""
    from cnntrain.reporting import compare_plot

    drawn = {}
    monkeypatch.setattr(compare_plot, "save_png", lambda figure, path: drawn.setdefault("figure", figure))
    values = {metric: (1.0, 0.5) for metric, _, _ in PANELS}
    steps = tuple((0.1 * i, 2.0 - 0.05 * i) for i in range(1, 21))
    compare_plot.plot_compare(
        [compare_plot.Curves("a", (1, 2), values, steps), compare_plot.Curves("b", (1, 2), values)],
        tmp_path / "c.png",
        "t",
    )
    train_loss = drawn["figure"].axes[0]
    lines = train_loss.get_lines()
    assert [len(line.get_xdata()) for line in lines] == [20, 2, 2]
    assert lines[1].get_linewidth() == 0 and lines[2].get_linewidth() > 0
    assert list(lines[1].get_ydata()) == [lines[0].get_ydata()[9], lines[0].get_ydata()[19]], "markers on the line"
    assert train_loss.get_xlim()[0] == 0, "the steps start the axis at epoch 0"
    assert "per step" in train_loss.get_title()
