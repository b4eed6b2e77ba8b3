"""Checkpoint files: atomic writes, safe loading, clear errors for torn or foreign files."""

from __future__ import annotations

import pytest
import torch

from cnntrain.errors import CheckpointError
from cnntrain.training.checkpoints import load_checkpoint, save_checkpoint
from cnntrain.training.run_state import MetricWatch, RunState


def test_round_trip(tmp_path):
    path = tmp_path / "ck" / "last.pt"
    save_checkpoint(path, {"epoch": 3, "model": {"w": torch.ones(2)}})
    loaded = load_checkpoint(path)
    assert loaded["epoch"] == 3 and torch.equal(loaded["model"]["w"], torch.ones(2))
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]


def test_failed_write_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"epoch": 1})

    def broken_save(obj, target):  # torch.save is handed the open temp file
        target.write(b"half a chec")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError):
        save_checkpoint(path, {"epoch": 2})
    monkeypatch.undo()
    assert load_checkpoint(path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "nope.pt")


def test_corrupt_file(tmp_path):
    path = tmp_path / "best.pt"
    path.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(CheckpointError, match=f"cannot read checkpoint {path}"):
        load_checkpoint(path)


def test_truncated_file(tmp_path):
    path = tmp_path / "best.pt"
    save_checkpoint(path, {"model": {"w": torch.randn(1000)}})
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        load_checkpoint(path)


def test_foreign_file(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"state_dict": {}}, path)
    with pytest.raises(CheckpointError, match="is not a cnntrain checkpoint"):
        load_checkpoint(path)


def test_pickled_objects_are_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format": "cnntrain-checkpoint", "obj": torch.nn.Linear(2, 2)}, path)
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        load_checkpoint(path)


def test_a_run_state_keeps_the_file_layout(tmp_path):
    """The keys of a RunState's file are those runs have always written, in their order; the optional ones only
    when set, so a file written before one of them existed reads back the same."""
    state = RunState(
        epoch=2,
        model={"w": torch.ones(2)},
        optimizer={"state": {}, "param_groups": []},
        scheduler=None,
        best=MetricWatch("val/acc", "max", best=0.5, best_epoch=2),
        early_stopping=MetricWatch("val/loss", "min"),
        rng={"torch": torch.get_rng_state()},
        metrics=None,
        history=[],
        config={"seed": 1},
    )
    assert list(state.payload()) == [
        "epoch",
        "model",
        "optimizer",
        "scheduler",
        "best",
        "early_stopping",
        "rng",
        "metrics",
        "history",
        "config",
    ]
    assert state.payload()["best"] == {
        "monitor": "val/acc",
        "mode": "max",
        "min_delta": 0.0,
        "best": 0.5,
        "best_epoch": 2,
        "bad_epochs": 0,
    }
    state.thresholds, state.in_epoch = [0.5], {"epoch": 3}
    assert list(state.payload())[-2:] == ["thresholds", "in_epoch"]
    state.save(tmp_path / "last.pt", tmp_path)
    loaded = load_checkpoint(tmp_path / "last.pt")
    assert list(loaded)[:3] == ["format", "format_version", "epoch"]
    again = RunState.read(loaded)
    assert again.best == state.best and again.epoch == 2 and again.in_epoch == {"epoch": 3} and again.data is None
