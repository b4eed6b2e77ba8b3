"""`cnntrain-reproduce RUN_DIR`: the same run again from its directory alone, compared value by value."""

from __future__ import annotations

import json

import pytest

from cnntrain.commands.reproduce import compare_runs, saved_command

from helpers import cnntrain_command

TWO_EPOCHS = ("model=cnn2", "trainer.epochs=2", "trainer.batch_size=64", "trainer.progress=false", "threads=1")
REPRODUCE = cnntrain_command("cnntrain-reproduce", "cnntrain.reproduce")


@pytest.mark.slow
def test_reproduce_gives_identical_metrics_and_flags_differences(run_cli, tmp_path):
    original = run_cli(*TWO_EPOCHS, "hydra.run.dir=original")
    assert original.returncode == 0, original.stderr
    summary_path = tmp_path / "original" / "summary.json"
    summary = json.loads(summary_path.read_text())
    assert summary["status"] == "done" and summary["threads"] == 1
    assert summary["deterministic"]["algorithms"] is True
    assert set(summary["git"] or {}) <= {"commit", "dirty"}
    summary["versions"]["torch"] = "0.0-older"  # as if the run was made with another torch
    summary_path.write_text(json.dumps(summary))

    result = run_cli("original", "--out", "again", command=REPRODUCE)
    assert result.returncode == 0, result.stderr
    assert "warning: version of torch: 0.0-older then" in result.stdout
    assert "all 19 values are identical" in result.stdout  # 8 summary values, epoch count, 2 epochs x 5
    assert (tmp_path / "again" / ".hydra" / "config.yaml").read_text() == \
        (tmp_path / "original" / ".hydra" / "config.yaml").read_text()

    summary["test"]["acc"] += 0.01
    summary_path.write_text(json.dumps(summary))
    differing = [row.name for row in compare_runs(tmp_path / "original", tmp_path / "again") if not row.equal]
    assert differing == ["test.acc"]


def test_saved_command_keeps_task_overrides_and_drops_hydra_and_trackers(tmp_path):
    hydra_dir = tmp_path / ".hydra"
    hydra_dir.mkdir()
    (hydra_dir / "overrides.yaml").write_text(
        "- model=cnn2\n- hydra.job.chdir=false\n- optimizer.lr=0.01\n- +hydra.output_subdir=/tmp/x\n"
        "- ++hydra.job.env_set.A=1\n- ~hydra.verbose\n- hydra/launcher=joblib\n- logger=[csv,wandb]\n"
        "- wandb.project=theirs\n")
    (hydra_dir / "hydra.yaml").write_text("hydra:\n  overrides:\n    hydra: [hydra.job.chdir=false]\n")
    assert saved_command(tmp_path) == ["model=cnn2", "optimizer.lr=0.01"]


def test_reproduce_of_a_folder_that_is_not_a_run(run_cli, tmp_path):
    (tmp_path / "empty").mkdir()
    result = run_cli("empty", command=REPRODUCE)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == ["error: empty is not a cnntrain run directory (no "
                                                  ".hydra/overrides.yaml)"]
