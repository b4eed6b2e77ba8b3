"""The pictures a run leaves behind, and the switch that turns them off."""

from __future__ import annotations

import torch
from PIL import Image

from cnntrain.reporting.plots import misclassified_figure, mosaic, plot_confusion_matrix
from cnntrain.training.run import run

PLOTS = ("curves.png", "confusion_matrix.png", "misclassified.png")


def test_run_writes_three_readable_pngs(tmp_path, tiny_config):
    run(tiny_config("trainer.epochs=1", "report.plots=true"), tmp_path)
    for name in PLOTS:
        with Image.open(tmp_path / name) as image:
            assert image.format == "PNG" and image.width > 300 and image.height > 100, name


def test_plots_can_be_switched_off(tmp_path, tiny_config):
    run(tiny_config("trainer.epochs=1", "report.plots=false"), tmp_path)
    assert not any((tmp_path / name).exists() for name in PLOTS)
    assert (tmp_path / "summary.json").is_file()


def test_misclassified_grid_titles_are_pred_then_true():
    images = torch.zeros(5, 1, 8, 8, dtype=torch.uint8)
    labels = torch.tensor([0, 1, 2, 0, 1])
    preds = torch.tensor([0, 2, 2, 1, 1])
    figure = misclassified_figure(images, labels, preds, ["cat", "dog", "bird"])
    titles = [text.get_text() for text in figure.axes[0].texts]
    assert titles == ["bird\n(dog)", "dog\n(cat)"]
    assert misclassified_figure(images, labels, labels, ["cat", "dog", "bird"]) is None


def test_misclassified_grid_is_capped_at_100_and_shows_rgb():
    images = torch.randint(0, 255, (150, 3, 8, 8), dtype=torch.uint8)
    labels = torch.zeros(150, dtype=torch.int64)
    figure = misclassified_figure(images, labels, torch.ones(150, dtype=torch.int64), ["a", "b"])
    assert len(figure.axes[0].texts) == 100
    canvas = figure.axes[0].get_images()[0].get_array()
    _, origins = mosaic(images[:100], 10)
    for i, (top, left) in enumerate(origins):
        assert (canvas[top : top + 8, left : left + 8] == images[i].permute(1, 2, 0).numpy()).all()


def test_mosaic_places_every_gray_tile_on_white_without_overlap():
    tiles = torch.randint(0, 255, (7, 1, 5, 6), dtype=torch.uint8)
    canvas, origins = mosaic(tiles, 3)
    assert canvas.shape[2] == 3 and len(set(origins)) == 7
    covered = torch.zeros(canvas.shape[:2], dtype=torch.int64)
    for tile, (top, left) in zip(tiles, origins):
        assert torch.equal(canvas[top : top + 5, left : left + 6], tile[0, :, :, None].expand(-1, -1, 3))
        covered[top : top + 5, left : left + 6] += 1
    assert covered.max() == 1 and (canvas[covered == 0] == 255).all()


def test_confusion_matrix_png_for_many_classes(tmp_path):
    matrix = torch.eye(30, dtype=torch.int64) * 5
    plot_confusion_matrix(matrix, [f"class number {i}" for i in range(30)], tmp_path / "cm.png")
    with Image.open(tmp_path / "cm.png") as image:
        assert image.width > 600
