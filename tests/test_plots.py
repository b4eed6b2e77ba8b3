"""The pictures a run leaves behind, and the switch that turns them off."""

from __future__ import annotations

import torch
from PIL import Image

from cnntrain.plots import misclassified_figure, plot_confusion_matrix
from cnntrain.train import run

PLOTS = ("curves.png", "confusion_matrix.png", "misclassified.png")


def test_run_writes_three_readable_pngs(tmp_path, tiny_config):
    run(tiny_config("trainer.epochs=1"), tmp_path)
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
    titles = [ax.get_title() for ax in figure.axes if ax.get_title()]
    assert titles == ["bird\n(dog)", "dog\n(cat)"]
    assert misclassified_figure(images, labels, labels, ["cat", "dog", "bird"]) is None


def test_misclassified_grid_is_capped_at_100_and_shows_rgb():
    images = torch.randint(0, 255, (150, 3, 8, 8), dtype=torch.uint8)
    labels = torch.zeros(150, dtype=torch.int64)
    figure = misclassified_figure(images, labels, torch.ones(150, dtype=torch.int64), ["a", "b"])
    assert sum(1 for ax in figure.axes if ax.get_title()) == 100
    assert figure.axes[0].get_images()[0].get_array().shape == (8, 8, 3)


def test_confusion_matrix_png_for_many_classes(tmp_path):
    matrix = torch.eye(30, dtype=torch.int64) * 5
    plot_confusion_matrix(matrix, [f"class number {i}" for i in range(30)], tmp_path / "cm.png")
    with Image.open(tmp_path / "cm.png") as image:
        assert image.width > 600
