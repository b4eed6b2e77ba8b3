"""sweep_summary.png: the panels planned from the jobs' rows (which keys, which axes), the figure drawn from them,
and the picture a real 4-job sweep leaves beside sweep_summary.csv (shared with test_compare.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from omegaconf import OmegaConf
from PIL import Image

from cnntrain.commands.sweep_end import SweepSummary
from cnntrain.reporting.sweep_plot import (
    CATEGORY,
    GAP_W,
    JOB_KEY,
    LEFT,
    LINEAR,
    LOG,
    PANEL_W,
    RIGHT,
    UNSET,
    axis_scale,
    parse_overrides,
    plan_panels,
    sweep_figure,
    write_sweep_plot,
)
from cnntrain.reporting.sweep_rows import JobRow, collect

from helpers import run_main

SWEEP = (
    "-m",
    "model=lenet,cnn2",
    "optimizer.lr=1e-3,1e-2",
    "trainer.epochs=1",
    "trainer.batch_size=64",
    "trainer.progress=false",
)
_shared: dict[str, object] = {}


def four_job_sweep(tmp_path_factory: pytest.TempPathFactory, data_root: Path) -> tuple[Path, str]:
    """The sweep directory of `cnntrain SWEEP` (4 jobs: lenet and cnn2, each with lr 1e-3 and 1e-2) on data_root
    (the small set: nothing here depends on its size) and what the command printed; run once per test session,
    through the CLI's main in this process."""
    if "sweep" not in _shared:
        from cnntrain.commands.train import main

        folder = tmp_path_factory.mktemp("sweep")
        with pytest.MonkeyPatch.context() as monkeypatch:
            result = run_main(
                main,
                [*SWEEP, f"hydra.sweep.dir='{folder / 'sweep'}'"],
                folder,
                monkeypatch,
                CNNTRAIN_DATA_ROOT=str(data_root),
            )
        assert result.returncode == 0, result.stderr
        _shared["sweep"] = (folder / "sweep", result.stdout)
    return _shared["sweep"]  # type: ignore[return-value]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory, small_data_root) -> tuple[Path, str]:
    return four_job_sweep(tmp_path_factory, small_data_root)


def job(
    number: int,
    overrides: list[str],
    best: float | None,
    status: str = "done",
    monitor: str = "val/acc",
    mode: str = "max",
) -> JobRow:
    values = {} if best is None else {"monitor": monitor, "best": best}
    return JobRow(str(number), status, overrides, values, mode)


def grid(models: list[str], lrs: list[str]) -> list[JobRow]:
    rows = [
        job(i * len(lrs) + k, [f"model={m}", f"optimizer.lr={lr}", "trainer.epochs=1"], 0.9 + 0.01 * (i + k))
        for i, m in enumerate(models)
        for k, lr in enumerate(lrs)
    ]
    return sorted(rows, key=JobRow.sort_key)


def test_names_get_a_categorical_axis_and_learning_rates_over_two_decades_a_log_one():
    panels = plan_panels(grid(["lenet", "cnn2"], ["1e-4", "1e-3", "1e-2"]))
    assert [(p.key, p.scale) for p in panels] == [("model", CATEGORY), ("optimizer.lr", LOG)]
    assert panels[0].categories == ("lenet", "cnn2"), "in the order the sweep ran them, not sorted"
    assert [p.job for p in panels[0].points] == ["0", "1", "2", "3", "4", "5"]
    assert [p.x for p in panels[1].points] == [1e-4, 1e-3, 1e-2] * 2


@pytest.mark.parametrize(
    ("values", "scale"),
    [
        (["0.001", "0.01"], LINEAR),  # one decade
        (["0.001", "0.1"], LOG),  # two decades
        (["1e-4", "5e-3"], LOG),  # 1.7 decades: Optuna's log-uniform rates seldom span the full two
        (["32", "64", "128", "256"], LINEAR),  # a batch size spans less than a decade
        (["-0.1", "10"], LINEAR),  # not all positive
        (["0", "0.5"], LINEAR),
        (["True", "False"], CATEGORY),
        (["0.1", "nan"], CATEGORY),
        (["adam", "sgd"], CATEGORY),
        (["0.001", UNSET], CATEGORY),
    ],
)
def test_axis_scale(values, scale):
    assert axis_scale(values) == scale


def test_only_keys_that_vary_between_drawn_jobs_get_panels_and_failed_jobs_are_left_out():
    rows = [
        job(0, ["optimizer.lr=0.01", "+trainer.tag=a", "seed=1"], 0.95),
        job(1, ["optimizer.lr=0.02", "+trainer.tag=b", "seed=1"], 0.97),
        job(2, ["optimizer.lr=1e12", "+trainer.tag=c", "seed=1"], None, status="failed"),
        job(3, [], None, status="failed"),
    ]  # overrides.yaml unreadable: it must not make every key "swept"
    panels = plan_panels(rows)
    assert [(p.key, p.scale) for p in panels] == [("optimizer.lr", LINEAR), ("trainer.tag", CATEGORY)]
    assert all([p.job for p in panel.points] == ["0", "1"] for panel in panels)


def test_a_key_some_jobs_leave_at_its_default_is_categorical():
    rows = [job(0, ["model=lenet"], 0.9), job(1, ["model=lenet", "optimizer.lr=0.01"], 0.8)]
    (panel,) = plan_panels(rows)
    assert (panel.key, panel.scale, panel.categories) == ("optimizer.lr", CATEGORY, (UNSET, "0.01"))


def test_one_job_or_nothing_varying_gives_one_panel_per_job_and_no_finished_job_none():
    (panel,) = plan_panels([job(0, ["model=lenet"], 0.9)])
    assert (panel.key, panel.scale, panel.categories) == (JOB_KEY, CATEGORY, ("0",))
    (panel,) = plan_panels([job(0, ["seed=1"], 0.9), job(1, ["seed=1"], 0.8)])
    assert panel.key == JOB_KEY and [p.job for p in panel.points] == ["0", "1"]
    assert plan_panels([job(0, ["seed=1"], None, status="failed")]) == []


def test_jobs_monitoring_another_metric_are_not_drawn_against_the_best_jobs_metric():
    rows = [
        job(0, ["trainer.checkpoint.monitor=val/acc", "seed=1"], 0.9),
        job(1, ["trainer.checkpoint.monitor=val/loss", "seed=2"], 0.1, monitor="val/loss", mode="min"),
        job(2, ["trainer.checkpoint.monitor=val/acc", "seed=3"], 0.95),
    ]
    (panel,) = plan_panels(sorted(rows, key=JobRow.sort_key))
    assert panel.key == "seed" and [p.job for p in panel.points] == ["0", "2"]


def test_parse_overrides():
    assert parse_overrides(["a=1", "+b.c=x=y", "++d=2", "~e", "~f=3", "g"]) == {"a": "1", "b.c": "x=y", "d": "2"}


def test_figure_marks_the_best_job_and_counts_the_failed_ones(tmp_path):
    failed = job(6, ["model=cnn3", "optimizer.lr=1"], None, "failed")
    rows = [*grid(["lenet", "cnn2"], ["1e-4", "1e-3", "1e-2"]), failed]
    best = rows[0]
    figure = sweep_figure(plan_panels(rows), rows, best, "lr-sweep")
    axes = [ax for ax in figure.axes if ax.get_visible()]
    assert [ax.get_xlabel() for ax in axes] == ["model", "optimizer.lr (log scale)"]
    assert [ax.get_xscale() for ax in axes] == ["linear", "log"]
    assert [t.get_text() for t in axes[0].get_xticklabels()] == ["lenet", "cnn2"]
    assert axes[0].get_ylabel() == "best val/acc (%)"
    title = figure._suptitle.get_text().replace("\n", " ")
    assert "sweep lr-sweep: best val/acc against each swept key: 6 jobs drawn, 1 failed (left out)" in title
    assert f"best: job {best.job} (model=cnn2 optimizer.lr=1e-2), val/acc 93.00%" in title
    for ax in axes:
        notes = [t.get_text() for t in ax.texts]
        assert f"best: job {best.job}, 93.00%" in notes and "0" in notes, "the best job is named, the others numbered"
    path = tmp_path / "sweep_summary.png"
    assert write_sweep_plot(rows, path) == f"plot of the sweep: {path}"
    with Image.open(path) as image:
        assert image.format == "PNG" and image.width == round(100 * (LEFT + 2 * PANEL_W + GAP_W + RIGHT))
    assert write_sweep_plot([job(0, [], None, "failed")], tmp_path / "none.png").startswith("none.png not drawn")
    assert not (tmp_path / "none.png").exists()


def test_a_loss_monitor_is_plotted_as_is_and_many_keys_wrap_onto_rows(tmp_path):
    keys = ["a", "b", "c", "d"]
    rows = sorted(
        [
            job(i, [f"{k}={i * (n + 1)}" for n, k in enumerate(keys)], 0.5 - 0.1 * i, monitor="val/loss", mode="min")
            for i in range(4)
        ],
        key=JobRow.sort_key,
    )
    figure = sweep_figure(plan_panels(rows), rows, rows[0])
    visible = [ax for ax in figure.axes if ax.get_visible()]
    assert len(visible) == 4 and len(figure.axes) == 6, "two rows of three, the last two panels hidden"
    assert visible[0].get_ylabel() == "best val/loss" and visible[3].get_ylabel() == "best val/loss"
    assert "best: job 3, 0.2" in [t.get_text() for t in visible[0].texts]


@pytest.mark.slow
def test_a_sweep_writes_its_picture_beside_the_csv(sweep):
    sweep_dir, stdout = sweep
    assert f"plot of the sweep: {sweep_dir / 'sweep_summary.png'}" in stdout
    with Image.open(sweep_dir / "sweep_summary.png") as image:
        assert image.format == "PNG"
        assert image.width == round(100 * (LEFT + 2 * PANEL_W + GAP_W + RIGHT)), "two panels: model and optimizer.lr"
        assert 450 <= image.height <= 600
    panels = plan_panels(collect(sweep_dir))
    assert [(p.key, p.scale, len(p.points)) for p in panels] == [("model", CATEGORY, 4), ("optimizer.lr", LINEAR, 4)]
    assert panels[0].categories == ("lenet", "cnn2")


@pytest.mark.slow
def test_report_plots_false_draws_no_sweep_picture(sweep, tmp_path, capsys):
    sweep_dir, _ = sweep
    copy = tmp_path / "sweep"
    shutil.copytree(sweep_dir, copy, ignore=shutil.ignore_patterns("checkpoints", "*.png"))
    config = OmegaConf.create({"hydra": {"sweep": {"dir": str(copy)}}, "report": {"plots": False}})
    SweepSummary().on_multirun_end(config)
    assert (copy / "sweep_summary.csv").is_file() and not (copy / "sweep_summary.png").exists()
    assert "sweep_summary.png" not in capsys.readouterr().out
    SweepSummary().on_multirun_end(OmegaConf.create({"hydra": {"sweep": {"dir": str(copy)}}}))
    assert (copy / "sweep_summary.png").is_file(), "drawn when the config says nothing"
