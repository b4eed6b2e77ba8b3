"""`cnntrain-reproduce RUN_DIR`: the same run again from its directory alone, compared value by value."""

from __future__ import annotations

import json
from io import StringIO
from pathlib import Path

import pytest
import torch
from rich.console import Console

from cnntrain.commands import train
from cnntrain.commands.reproduce import (
    EXACT,
    Comparison,
    Tolerance,
    _say_environment,
    compare_runs,
    compose_saved,
    environment_changes,
    parser,
    saved_command,
)

from helpers import assert_one_line_error, cnntrain_command, run_main

TWO_EPOCHS = ("model=cnn2", "trainer.epochs=2", "trainer.batch_size=64", "trainer.progress=false", "threads=1")
REPRODUCE = cnntrain_command("cnntrain-reproduce", "cnntrain.reproduce")


@pytest.fixture(scope="module")
def synthetic_data_root(small_data_root: Path) -> Path:
    """A run is compared with its re-run, whatever the data: the runs here train on the small set."""
    return small_data_root


@pytest.mark.slow
def test_reproduce_names_what_differs_in_the_environment_first(run_cli, tmp_path, monkeypatch, synthetic_data_root):
    """A real run whose summary.json is edited as if it came from another CPU family and torch: reproduce names
    both before any number, says floats may differ, and compares within its stated tolerance."""
    original = run_main(
        train.main,
        [*TWO_EPOCHS, "hydra.run.dir=original"],
        tmp_path,
        monkeypatch,
        CNNTRAIN_DATA_ROOT=str(synthetic_data_root),
    )  # cnntrain's main here; the re-run is a process
    assert original.returncode == 0, original.stderr
    summary_path = tmp_path / "original" / "summary.json"
    summary = json.loads(summary_path.read_text())
    assert summary["status"] == "done" and summary["threads"] == 1
    assert summary["deterministic"]["algorithms"] is True
    assert set(summary["git"] or {}) <= {"commit", "dirty"}
    here = torch.backends.cpu.get_cpu_capability()
    assert summary["cpu"]["capability"] == here
    cfg = compose_saved(saved_command(tmp_path / "original"))
    monkeypatch.chdir(tmp_path)
    assert environment_changes(summary, cfg) == [], "the same machine and code: nothing to name"
    said = StringIO()
    assert _say_environment(Console(file=said, width=1000), summary, cfg, parser().parse_args(["RUN"])) == EXACT
    assert said.getvalue().startswith("environment: the same as the original run's") and "identical" in said.getvalue()

    other = "AVX2" if here != "AVX2" else "AVX512"
    summary["cpu"]["capability"] = other  # as if the run was made on a machine of another CPU family
    summary["versions"]["torch"] = "0.0-older"  # and with another torch
    summary_path.write_text(json.dumps(summary))
    result = run_cli("original", "--out", "again", command=REPRODUCE)
    assert result.returncode == 0, result.stderr
    out = " ".join(result.stdout.split())  # the console wraps long lines: compare the words
    assert out.index("environment differs") < out.index("re-running") < out.index("original vs re-run")
    assert "version of torch: 0.0-older then" in out and f"cpu instruction set: {other} then, {here} now" in out
    assert "float results may differ where these differ; values are compared within rel 0.02 or abs 0.005" in out
    assert "all 19 values are identical" in out  # the same machine did both: 8 summary values, epochs, 2 x 5
    assert (tmp_path / "again" / ".hydra" / "config.yaml").read_text() == (
        tmp_path / "original" / ".hydra" / "config.yaml"
    ).read_text()

    summary["test"]["acc"] += 0.001  # what another CPU family does to an accuracy (the issue: 0.07 points)
    summary_path.write_text(json.dumps(summary))
    within = compare_runs(tmp_path / "original", tmp_path / "again", Tolerance(0.02, 0.005))
    assert all(row.equal for row in within) and [r.name for r in within if not r.identical] == ["test.acc"]
    exact = compare_runs(tmp_path / "original", tmp_path / "again")
    assert [row.name for row in exact if not row.equal] == ["test.acc"]
    summary["test"]["acc"] += 0.1
    summary_path.write_text(json.dumps(summary))
    beyond = compare_runs(tmp_path / "original", tmp_path / "again", Tolerance(0.02, 0.005))
    assert [row.name for row in beyond if not row.equal] == ["test.acc"]


def test_counts_compare_exactly_under_a_tolerance():
    loose = Tolerance(0.5, 0.5)
    assert not Comparison("best.epoch", 2, 3, loose).equal
    assert not Comparison("stopped_early", True, False, loose).equal
    assert Comparison("epoch 1 val/loss", "0.4", "0.41", Tolerance(0.05, 0.0)).equal
    assert not Comparison("epoch 1 val/loss", "0.4", "0.41", EXACT).equal


def test_an_old_summary_without_the_cpu_names_it_as_not_recorded(tiny_config):
    cfg = tiny_config()
    changes = environment_changes({"versions": {}, "device": "cpu", "threads": 1}, cfg)
    assert any(line.startswith("cpu instruction set: not recorded then, ") for line in changes)


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["RUN", "--rtol", "-1"], "argument --rtol: -1 is not allowed; give a finite tolerance >= 0"),
        (["RUN", "--atol", "lots"], "argument --atol: 'lots' is not a number; give a tolerance >= 0"),
        (["RUN", "--rtol", "nan"], "argument --rtol: nan is not allowed"),
    ],
)
def test_bad_tolerances_are_one_line(tmp_path, monkeypatch, argv, fragment):
    from cnntrain.commands import reproduce

    result = run_main(reproduce.main, argv, tmp_path, monkeypatch)
    assert_one_line_error(result, fragment)


def test_saved_command_keeps_task_overrides_and_drops_hydra_and_trackers(tmp_path):
    hydra_dir = tmp_path / ".hydra"
    hydra_dir.mkdir()
    (hydra_dir / "overrides.yaml").write_text(
        "- model=cnn2\n- hydra.job.chdir=false\n- optimizer.lr=0.01\n- +hydra.output_subdir=/tmp/x\n"
        "- ++hydra.job.env_set.A=1\n- ~hydra.verbose\n- hydra/launcher=joblib\n- logger=[csv,wandb]\n"
        "- wandb.project=theirs\n"
    )
    (hydra_dir / "hydra.yaml").write_text("hydra:\n  overrides:\n    hydra: [hydra.job.chdir=false]\n")
    assert saved_command(tmp_path) == ["model=cnn2", "optimizer.lr=0.01"]


def test_reproduce_of_a_folder_that_is_not_a_run(run_cli, tmp_path):
    (tmp_path / "empty").mkdir()
    result = run_cli("empty", command=REPRODUCE)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: empty is not a cnntrain run directory (no .hydra/overrides.yaml)"
    ]


def test_recorded_facts_are_printed_as_text(tiny_config):
    """A summary.json is data: a fact spelled like console markup is shown as written, not interpreted."""
    out = StringIO()
    summary = {"cpu": {"capability": "[/bold]"}, "versions": {}, "device": "cpu"}
    tolerance = _say_environment(Console(file=out, width=1000), summary, tiny_config(), parser().parse_args(["RUN"]))
    assert "cpu instruction set: [/bold] then" in out.getvalue()
    assert tolerance == Tolerance(0.02, 0.005)
