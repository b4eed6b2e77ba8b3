"""logger=tensorboard: event files with the per-epoch scalars, the model text and the misclassified grid."""

from __future__ import annotations

import importlib.util

import pytest

from cnntrain.training.run import run

needs_extra = pytest.mark.skipif(
    importlib.util.find_spec("tensorboard") is None,
    reason="tensorboard is not installed: pip install 'cnntrain[tensorboard]'",
)  # found, not imported: collection stays quick
pytestmark = needs_extra


def read_events(log_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    events.Reload()
    return events


def test_tensorboard_event_files_hold_the_scalars(tmp_path, tiny_config):
    run(tiny_config("logger=tensorboard", "report.plots=false"), tmp_path)
    log_dir = tmp_path / "tensorboard"
    assert list(log_dir.glob("events.out.tfevents.*"))
    events = read_events(log_dir)
    tags = events.Tags()
    assert {"train/loss", "train/acc", "val/loss", "val/acc", "lr", "test/acc", "test/loss"} <= set(tags["scalars"])
    assert [e.step for e in events.Scalars("val/acc")] == [1, 2]
    csv_losses = [float(line.split(",")[1]) for line in (tmp_path / "metrics.csv").read_text().splitlines()[1:]]
    assert [e.value for e in events.Scalars("train/loss")] == pytest.approx(csv_losses, rel=1e-6)
    assert "test/misclassified" in tags["images"]
    assert any("model/summary" in tag for tag in tags["tensors"])


def test_csv_logger_writes_no_event_files(tmp_path, tiny_config):
    run(tiny_config("trainer.epochs=1", "report.plots=false"), tmp_path)
    assert not (tmp_path / "tensorboard").exists() and (tmp_path / "metrics.csv").is_file()


def test_tensorboard_gets_the_run_pictures_and_names_its_page(tmp_path, tiny_config):
    """The tracker shows what the run directory holds: every picture drawn (the analysis's too) as an image
    under report/, and the report page's location as text (TensorBoard keeps no files)."""
    run(tiny_config("trainer.epochs=1", "logger=tensorboard", "report.plots=true"), tmp_path)
    tags = read_events(tmp_path / "tensorboard").Tags()
    drawn = {f"report/{p.stem}" for p in tmp_path.glob("*.png") if p.stem != "augment_preview"}
    assert {"report/curves", "report/worst_mistakes", "report/reliability", "report/per_class"} <= drawn
    assert {tag for tag in tags["images"] if tag.startswith("report/")} == drawn
    assert any("report/page" in tag for tag in tags["tensors"])
