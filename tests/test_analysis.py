"""Why a model fails: the table math on hand-made tensors, class activation maps where the evidence is known,
the layer they are taken at, and the run's summary.json, pictures and `cnntrain-predict --cam`."""

from __future__ import annotations

import json
import math
import shutil

import numpy
import pytest
import torch
from PIL import Image
from torch import nn

from cnntrain.commands import predict, train
from cnntrain.models.builder import build_model
from cnntrain.models.cam import CAM_METHOD, cam_layers, class_activation_maps, find_cam_layer
from cnntrain.reporting import analysis as analysis_module
from cnntrain.reporting.analysis import (
    Predictions,
    analysis_summary,
    calibration,
    most_confused,
    per_class,
    per_image_scores,
    worst_mistakes,
)
from cnntrain.reporting.metrics import confusion_matrix, macro_f1
from cnntrain.training.checkpoints import load_checkpoint
from cnntrain.training.run import run

from helpers import TINY_RUN, assert_one_line_error, compose_config, run_main

ANALYSIS_PNGS = ("worst_mistakes.png", "reliability.png", "per_class.png")


def table(labels, preds, probability, true_probability=None, loss=None) -> Predictions:
    labels, preds, probability = torch.tensor(labels), torch.tensor(preds), torch.tensor(probability)
    true_probability = probability if true_probability is None else torch.tensor(true_probability)
    loss = -true_probability.double().log() if loss is None else torch.tensor(loss)
    return Predictions.of(labels, preds, probability, true_probability, loss)


# ---------------------------------------------------------------------------------------------- the table math


def test_per_image_scores_from_logits_and_from_log_probabilities_agree():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 3.0]])
    labels, preds = torch.tensor([1, 2]), logits.argmax(1)
    probs = logits.softmax(1)
    for outputs in (logits, logits.log_softmax(1)):
        p, q, loss = per_image_scores(outputs, labels, preds)
        assert torch.allclose(p, probs.max(1).values)
        assert torch.allclose(q, torch.stack([probs[0, 1], probs[1, 2]]))
        assert torch.allclose(loss, nn.functional.cross_entropy(logits, labels, reduction="none"))


def test_the_loss_of_a_hopeless_image_is_finite():
    _, q, loss = per_image_scores(torch.tensor([[200.0, -200.0]]), torch.tensor([1]), torch.tensor([0]))
    assert float(q) == 0.0 and loss.item() == pytest.approx(400.0)


def test_expected_calibration_error_of_a_known_table():
    # two images at confidence 0.95 (one right) and two at 0.55 (both right): bins 10 and 6 of 10
    t = table([0, 1, 1, 0], [0, 0, 1, 0], [0.95, 0.95, 0.55, 0.55])
    cal = calibration(t, 10)
    assert cal["ece"] == pytest.approx(0.5 * abs(0.5 - 0.95) + 0.5 * abs(1.0 - 0.55))
    assert cal["count"] == [0, 0, 0, 0, 0, 2, 0, 0, 0, 2]
    assert cal["confidence"][5] == pytest.approx(0.55) and cal["confidence"][9] == pytest.approx(0.95)
    assert cal["accuracy"][5] == 1.0 and cal["accuracy"][9] == 0.5
    assert cal["confidence"][0] is None and cal["accuracy"][0] is None and cal["bins"] == 10


def test_calibration_bins_hold_lo_to_hi_inclusive_and_zero_goes_to_the_first():
    # 0.5 and 1.0 sit on bin edges: they fall in (0.25, 0.5] and (0.75, 1.0]; confidence 0 in the first bin
    t = table([0, 1, 0, 0, 1], [0, 0, 0, 0, 1], [0.5, 0.5, 1.0, 1.0, 0.0])
    cal = calibration(t, 4)
    assert cal["count"] == [1, 2, 0, 2]
    assert cal["accuracy"] == [1.0, 0.5, None, 1.0]
    assert cal["ece"] == pytest.approx(1 / 5 * 1.0)  # bins 2 and 4 are calibrated; bin 1 is off by 1
    one_bin = calibration(table([0, 1], [0, 0], [0.8, 0.6]), 1)
    assert one_bin["ece"] == pytest.approx(abs(0.5 - 0.7)) and one_bin["count"] == [2]


def test_precision_recall_f1_and_support_of_a_known_matrix():
    matrix = torch.tensor([[3, 1, 0], [0, 2, 2], [0, 0, 0]])  # [true, predicted]
    got = per_class(matrix, ["a", "b", "c"])
    assert got["a"] == {"precision": 1.0, "recall": 0.75, "f1": pytest.approx(6 / 7), "support": 4}
    assert got["b"] == {"precision": pytest.approx(2 / 3), "recall": 0.5, "f1": pytest.approx(4 / 7), "support": 4}
    assert got["c"] == {"precision": 0.0, "recall": None, "f1": 0.0, "support": 0}  # predicted, never present
    assert sum(m["f1"] for m in got.values()) / 3 == pytest.approx(macro_f1(matrix))
    absent = per_class(torch.tensor([[2, 0], [0, 0]]), ["x", "y"])["y"]
    assert absent == {"precision": None, "recall": None, "f1": None, "support": 0}


def test_one_f1_for_a_class_absent_from_the_test_split():
    """The analysis, the page's fallback and the macro-F1 score a class predicted but absent from the test split
    the same (0, counted in the mean); a class neither present nor predicted has no F1 and is left out."""
    from cnntrain.reporting.page import per_class_from_matrix

    rows = [[3, 1, 0, 0], [0, 2, 2, 0], [0, 0, 0, 0], [0, 0, 0, 0]]  # c: predicted, absent; d: neither
    names = ["a", "b", "c", "d"]
    analysed, fallback = per_class(torch.tensor(rows), names), per_class_from_matrix(names, rows)
    assert analysed == fallback
    assert analysed["c"]["f1"] == 0.0 and analysed["d"]["f1"] is None
    seen = [m["f1"] for m in analysed.values() if m["f1"] is not None]
    assert sum(seen) / len(seen) == pytest.approx(macro_f1(torch.tensor(rows)))


def test_most_confused_pairs_are_off_diagonal_most_first_and_capped():
    matrix = torch.tensor([[9, 4, 1], [4, 8, 0], [2, 7, 5]])
    pairs = most_confused(matrix, ["cat", "dog", "fox"])
    assert pairs == [
        {"true": "fox", "predicted": "dog", "count": 7},
        {"true": "cat", "predicted": "dog", "count": 4},
        {"true": "dog", "predicted": "cat", "count": 4},
        {"true": "fox", "predicted": "cat", "count": 2},
        {"true": "cat", "predicted": "fox", "count": 1},
    ]
    assert most_confused(matrix, ["cat", "dog", "fox"], top=2) == pairs[:2]
    assert most_confused(torch.eye(3, dtype=torch.int64) * 5, ["a", "b", "c"]) == []
    big = torch.ones(6, 6, dtype=torch.int64)
    assert len(most_confused(big, list("abcdef"))) == 10


def test_worst_mistakes_are_the_wrong_ones_by_loss_confident_first():
    t = table(
        labels=[0, 1, 1, 0, 2, 2],
        preds=[1, 1, 0, 2, 0, 0],
        probability=[0.9, 0.99, 0.6, 0.97, 0.5, 0.5],
        true_probability=[0.05, 0.99, 0.3, 0.01, 0.2, 0.2],
    )
    assert worst_mistakes(t, 10) == [3, 0, 4, 5, 2]  # image 1 is right; 4 and 5 tie, the lower index first
    assert worst_mistakes(t, 2) == [3, 0]
    assert worst_mistakes(t, 0) == []
    assert worst_mistakes(table([0, 1], [0, 1], [0.9, 0.8]), 5) == []


def test_analysis_summary_has_the_keys_the_report_page_renders():
    t = table([0, 1, 1], [0, 0, 1], [0.9, 0.7, 0.8], [0.9, 0.3, 0.8])
    matrix = confusion_matrix(t.preds, t.labels, 2)
    got = analysis_summary(t, matrix, ["a", "b"], worst=5, bins=15, cam={"method": "LayerCAM", "layer": "2"})
    assert set(got) == {"per_class", "most_confused", "calibration", "worst_mistakes", "cam"}
    assert got["worst_mistakes"] == [
        {
            "index": 1,
            "true": "b",
            "predicted": "a",
            "probability": pytest.approx(0.7),
            "true_probability": pytest.approx(0.3),
            "loss": pytest.approx(-math.log(0.3)),
        }
    ]
    assert set(got["calibration"]) == {"ece", "bins", "confidence", "accuracy", "count"}
    assert got["most_confused"] == [{"true": "b", "predicted": "a", "count": 1}]
    assert set(got["per_class"]["a"]) == {"precision", "recall", "f1", "support"}
    json.dumps(got)  # plain JSON


# ---------------------------------------------------------------------------------------------- CAMs


class Mask(nn.Module):
    """Keeps one quadrant of a feature map: the only place the model takes evidence from."""

    def __init__(self, size: int, quadrant: int) -> None:
        super().__init__()
        mask = torch.zeros(1, 1, size, size)
        half = size // 2
        top, left = (quadrant // 2) * half, (quadrant % 2) * half
        mask[..., top : top + half, left : left + half] = 1
        self.register_buffer("mask", mask)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.mask


def quadrant_model(quadrant: int, size: int = 16) -> nn.Sequential:
    """conv -> relu -> keep one quadrant -> global average -> linear: class 0 is the quadrant's brightness."""
    torch.manual_seed(0)
    conv = nn.Conv2d(1, 4, 3, padding=1)
    nn.init.constant_(conv.weight, 0.1)
    nn.init.constant_(conv.bias, 0.01)
    head = nn.Linear(4, 2)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[1.0] * 4, [-1.0] * 4]))
        head.bias.zero_()
    return nn.Sequential(conv, nn.ReLU(), Mask(size, quadrant), nn.AdaptiveAvgPool2d(1), nn.Flatten(), head)


@pytest.mark.parametrize("quadrant", [0, 1, 2, 3])
def test_the_cam_peak_is_in_the_quadrant_the_class_depends_on(quadrant):
    model = quadrant_model(quadrant)
    images = torch.rand(6, 1, 16, 16, generator=torch.Generator().manual_seed(quadrant))  # bright everywhere
    half = 8
    top, left = (quadrant // 2) * half, (quadrant % 2) * half
    for name in (None, "2"):  # the automatic layer (the mask's output) and the ReLU's
        layer = find_cam_layer(model, (1, 16, 16), name)
        cams = class_activation_maps(model, layer, images, torch.zeros(6, dtype=torch.int64))
        assert cams.shape == (6, 16, 16) and float(cams.max()) == pytest.approx(1.0)
        inside = torch.zeros(16, 16, dtype=torch.bool)
        inside[top : top + half, left : left + half] = True
        for cam in cams:
            row, col = divmod(int(cam.argmax()), 16)
            assert inside[row, col], (name, quadrant, row, col)
            assert float(cam[inside].mean()) > 3 * float(cam[~inside].mean()) + 0.05


def test_a_cam_leaves_the_model_as_it_was():
    model, _ = build_model(
        [{"conv_block": {"out_channels": 8, "batchnorm": True}}, {"conv_block": 8}, "flatten", {"linear": 3}],
        [1, 12, 12],
    )
    model.train()
    model[0][0].weight.requires_grad_(False)  # a frozen part stays frozen, the rest trainable
    before = {k: v.clone() for k, v in model.state_dict().items()}
    flags = {name: p.requires_grad for name, p in model.named_parameters()}
    modes = {name: m.training for name, m in model.named_modules()}
    layer = find_cam_layer(model, (1, 12, 12))
    cams = class_activation_maps(model, layer, torch.randn(4, 1, 12, 12), torch.tensor([0, 1, 2, 0]))
    assert cams.shape == (4, 12, 12) and bool((cams >= 0).all() and (cams <= 1).all())
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "weights or BatchNorm statistics changed"
    assert {name: p.requires_grad for name, p in model.named_parameters()} == flags
    assert {name: m.training for name, m in model.named_modules()} == modes
    assert all(p.grad is None for p in model.parameters())
    frozen_all, _ = build_model([{"conv_block": 4}, "flatten", {"linear": 2}], [1, 8, 8])
    frozen_all.requires_grad_(False)  # a fully frozen model still has a graph to the layer
    cams = class_activation_maps(
        frozen_all, find_cam_layer(frozen_all, (1, 8, 8)), torch.randn(2, 1, 8, 8), torch.tensor([0, 1])
    )
    assert cams.shape == (2, 8, 8) and not any(p.requires_grad for p in frozen_all.parameters())


@pytest.mark.parametrize(
    ("overrides", "shape", "expected"),
    [
        (["model=cnn2"], [1, 28, 28], "2 (conv_block, 64x7x7)"),
        (["model=lenet"], [1, 28, 28], "6 (maxpool2d, 50x4x4)"),
        (["model=cnn3"], [1, 28, 28], "3 (conv_block, 128x4x4)"),
        (["model=cnn3"], [3, 32, 32], "3 (conv_block, 128x5x5)"),
        (["model=resnet18"], [3, 32, 32], "1.8 (layer4, 512x4x4)"),
        (["model=timm", "model.arch=resnet10t"], [3, 32, 32], "1.8 (layer4, 512x2x2)"),
        (["model=timm", "model.arch=convnext_atto"], [3, 32, 32], "1.2 (stages, 320x3x3)"),
    ],
    ids=["cnn2", "lenet", "cnn3", "cnn3-rgb", "resnet18", "timm-resnet10t", "timm-convnext_atto"],
)
def test_the_cam_layer_is_found_for_each_kind_of_model(overrides, shape, expected):
    if "model=timm" in overrides:
        pytest.importorskip("timm")
    cfg = compose_config(*overrides)
    model, rows = build_model(cfg.model.layers, shape, count_macs=False)
    layer = find_cam_layer(model, tuple(shape), None, [row.name for row in rows])
    assert layer is not None and layer.label == expected
    cams = class_activation_maps(model, layer, torch.randn(2, *shape), torch.tensor([0, 3]))
    assert cams.shape == (2, *shape[1:]) and bool(torch.isfinite(cams).all())


def test_a_cam_layer_is_named_by_number_or_by_a_unique_name():
    cfg = compose_config("model=resnet18")
    model, rows = build_model(cfg.model.layers, [3, 32, 32], count_macs=False)
    names = [row.name for row in rows]
    assert find_cam_layer(model, (3, 32, 32), "1.7", names).name == "layer3"
    assert find_cam_layer(model, (3, 32, 32), "layer2", names).index == "1.6"
    cnn2, rows = build_model(compose_config("model=cnn2").model.layers, [1, 28, 28], count_macs=False)
    with pytest.raises(Exception, match="several layers are called 'conv_block'; give its number"):
        find_cam_layer(cnn2, (1, 28, 28), "conv_block", [row.name for row in rows])
    with pytest.raises(
        Exception,
        match=r"no such layer.*candidates \(the model summary's #\): 1 \(conv_block, "
        r"32x14x14\), 2 \(conv_block, 64x7x7\)$",
    ):
        find_cam_layer(cnn2, (1, 28, 28), "3", [row.name for row in rows])
    mlp, _ = build_model(["flatten", {"linear": 4}], [1, 8, 8])
    assert cam_layers(mlp, (1, 8, 8)) == [] and find_cam_layer(mlp, (1, 8, 8)) is None


# ---------------------------------------------------------------------------------------------- runs


def only_run_dir(tmp_path):
    (summary,) = tmp_path.glob("outputs/*/*/summary.json")
    return summary.parent


def test_a_run_writes_the_analysis_its_pictures_and_the_console_table(tmp_path, monkeypatch, synthetic_data_root):
    result = run_main(
        train.main,
        [*TINY_RUN, "trainer.epochs=1", "report.plots=true", "trainer.progress=false"],
        tmp_path,
        monkeypatch,
        CNNTRAIN_DATA_ROOT=str(synthetic_data_root),
    )
    assert result.returncode == 0, result.stderr
    run_dir = only_run_dir(tmp_path)
    summary = json.loads((run_dir / "summary.json").read_text())
    found = summary["analysis"]
    assert set(found) == {"per_class", "most_confused", "calibration", "worst_mistakes", "cam"}
    test_images = summary["sizes"]["test"]
    assert list(found["per_class"]) == summary["classes"]
    assert sum(m["support"] for m in found["per_class"].values()) == test_images
    assert sum(found["calibration"]["count"]) == test_images and found["calibration"]["bins"] == 15
    assert 0 <= found["calibration"]["ece"] <= 1
    wrong = test_images - round(summary["test"]["acc"] * test_images)
    assert 0 < wrong, "the one-epoch tiny run is expected to make mistakes"
    worst = found["worst_mistakes"]
    assert len(worst) == min(24, wrong)
    assert [m["loss"] for m in worst] == sorted((m["loss"] for m in worst), reverse=True)
    assert all(m["true"] != m["predicted"] and m["probability"] >= m["true_probability"] for m in worst)
    matrix = torch.tensor(summary["confusion_matrix"])
    assert found["most_confused"] == most_confused(matrix, summary["classes"])
    assert found["most_confused"][0]["count"] >= 1
    assert found["cam"] == {"method": CAM_METHOD, "layer": "2 (conv_block, 64x7x7)"}
    for name in ANALYSIS_PNGS:
        with Image.open(run_dir / name) as image:
            assert image.format == "PNG" and image.width > 300 and image.height > 200, name
    with Image.open(run_dir / "worst_mistakes.png") as image:
        pixels = torch.from_numpy(numpy.array(image.convert("RGB"))).reshape(-1, 3).to(torch.int64)
    hot = ((pixels[:, 0] > 150) & (pixels[:, 2] < 100)).sum()  # the map's red over a gray digit: coloured, not gray
    assert hot > 500, "worst_mistakes.png shows no class activation map"
    assert "most confused" in result.stdout
    first = found["most_confused"][0]
    assert any(
        first["true"] in line and first["predicted"] in line and str(first["count"]) in line
        for line in result.stdout.splitlines()
    )


def test_the_cams_of_an_ema_run_use_the_ema_weights(tmp_path, tiny_config, monkeypatch):
    import cnntrain.models.cam as cam

    seen, tables = {}, []
    real_cams, real_summary = cam.class_activation_maps, analysis_module.analysis_summary

    def spy_cams(model, layer, inputs, classes):
        seen["weights"] = {k: v.detach().clone() for k, v in model.state_dict().items()}
        seen["count"] = inputs.shape[0]
        return real_cams(model, layer, inputs, classes)

    def spy_summary(table, *args, **kwargs):
        tables.append(table)
        return real_summary(table, *args, **kwargs)

    monkeypatch.setattr(cam, "class_activation_maps", spy_cams)
    monkeypatch.setattr("cnntrain.reporting.report.analysis_summary", spy_summary)
    run(
        tiny_config(
            "trainer.epochs=2", "trainer.ema.decay=0.9", "report.plots=true", "report.worst=5", "report.cam_layer=1"
        ),
        tmp_path,
    )
    best = load_checkpoint(tmp_path / "checkpoints" / "best.pt")
    assert seen["count"] == 5
    assert all(torch.equal(seen["weights"][k], best["model"][k]) for k in best["model"])
    assert any(not torch.equal(best["model"][k], best["train_weights"][k]) for k in best["model"])
    summary = json.loads((tmp_path / "summary.json").read_text())
    (t,) = tables  # the table is the test pass's: its mean loss is the test loss, its predictions the accuracy
    assert float(t.loss.mean()) == pytest.approx(summary["test"]["loss"], rel=1e-5)
    assert float((t.preds == t.labels).double().mean()) == pytest.approx(summary["test"]["acc"])
    assert len(summary["analysis"]["worst_mistakes"]) == 5
    assert summary["analysis"]["cam"]["layer"] == "1 (conv_block, 32x14x14)"  # report.cam_layer chose it


def test_without_plots_the_numbers_are_still_written(tmp_path, tiny_config):
    run(tiny_config("trainer.epochs=1", "report.plots=false", "report.calibration_bins=4", "report.worst=3"), tmp_path)
    found = json.loads((tmp_path / "summary.json").read_text())["analysis"]
    assert found["cam"] is None and len(found["worst_mistakes"]) == 3
    assert len(found["calibration"]["count"]) == 4 and found["per_class"]
    assert not any((tmp_path / name).exists() for name in ANALYSIS_PNGS)


def test_worst_zero_draws_no_worst_mistakes_picture(tmp_path, tiny_config):
    """report.worst=0 asks for no worst mistakes: no picture of none, the other two pictures still drawn."""
    run(tiny_config("trainer.epochs=1", "report.plots=true", "report.worst=0"), tmp_path)
    assert json.loads((tmp_path / "summary.json").read_text())["analysis"]["worst_mistakes"] == []
    assert not (tmp_path / "worst_mistakes.png").exists()
    assert (tmp_path / "reliability.png").is_file() and (tmp_path / "per_class.png").is_file()


@pytest.mark.parametrize(("switch", "pictures"), [("report.analysis=false", ()), ("report.cam=false", ANALYSIS_PNGS)])
def test_the_analysis_and_the_cams_can_be_switched_off(tmp_path, tiny_config, monkeypatch, switch, pictures):
    import cnntrain.models.cam as cam

    monkeypatch.setattr(cam, "class_activation_maps", lambda *a: pytest.fail("a CAM was computed"))
    run(tiny_config("trainer.epochs=1", "report.plots=true", switch), tmp_path)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert sorted(name for name in ANALYSIS_PNGS if (tmp_path / name).exists()) == sorted(pictures)
    assert (tmp_path / "curves.png").is_file()
    if switch == "report.analysis=false":
        assert summary["analysis"] is None
    else:
        assert summary["analysis"]["cam"] is None and summary["analysis"]["worst_mistakes"]


# ---------------------------------------------------------------------------------------------- predict --cam


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, one_epoch_run):
    """A copy of the session's one-epoch run (predict --cam may write beside it)."""
    return shutil.copytree(one_epoch_run, tmp_path_factory.mktemp("finished") / "run")


def test_predict_cam_writes_an_overlay_per_image(finished_run, tmp_path, monkeypatch):
    first, second = tmp_path / "a" / "digit.png", tmp_path / "b" / "digit.png"
    for path, value in ((first, 40), (second, 200)):
        path.parent.mkdir()
        picture = Image.new("L", (28, 28), value)
        picture.paste(255, (4, 4, 12, 12))
        picture.save(path)
    before = first.read_bytes()
    result = run_main(
        predict.main, [str(finished_run), str(first), str(second), "--cam", "--json"], tmp_path, monkeypatch
    )
    assert result.returncode == 0, result.stderr
    records = json.loads(result.stdout)
    assert [r["cam"] for r in records] == ["predict_cam/digit.cam.png", "predict_cam/digit-2.cam.png"]
    for record in records:
        with Image.open(tmp_path / record["cam"]) as image:
            assert image.mode == "RGB" and image.size == (224, 224)
            colours = image.getcolors(maxcolors=1 << 16)
            assert colours is not None and len(colours) > 10, "an overlay is more than a flat picture"
    assert first.read_bytes() == before
    shown = run_main(predict.main, [str(finished_run), str(first), "--cam", "--cam-dir", "maps"], tmp_path, monkeypatch)
    assert shown.returncode == 0 and "cam: maps/digit.cam.png" in shown.stdout
    assert (tmp_path / "maps" / "digit.cam.png").is_file()


def test_predict_cam_never_replaces_an_input_or_follows_a_link(finished_run, tmp_path, monkeypatch):
    image = tmp_path / "x.png"
    Image.new("L", (28, 28), 90).save(image)
    clash = tmp_path / "x.cam.png"
    Image.new("L", (28, 28), 10).save(clash)
    kept = clash.read_bytes()
    result = run_main(
        predict.main,
        [str(finished_run), str(image), str(clash), "--cam", "--cam-dir", str(tmp_path)],
        tmp_path,
        monkeypatch,
    )
    assert_one_line_error(result, "x.cam.png is one of the input images; choose another --cam-dir")
    assert clash.read_bytes() == kept
    (tmp_path / "links").mkdir()
    target = tmp_path / "elsewhere.png"
    (tmp_path / "links" / "x.cam.png").symlink_to(target)
    result = run_main(
        predict.main, [str(finished_run), str(image), "--cam", "--cam-dir", "links"], tmp_path, monkeypatch
    )
    assert_one_line_error(result, "links/x.cam.png is a symbolic link")
    assert not target.exists()


def test_the_maps_under_hflip_are_of_what_was_predicted():
    """trainer.tta=hflip predicts from the image and its mirror: the map is the mean of both views' maps (the
    mirror's flipped back), so a model that sees a mirrored input the same way gives the plain map, and a map is
    symmetric when its input is."""
    from cnntrain.models.cam import cam_available, find_cam_layer, predicted_maps

    if not cam_available():
        pytest.skip("torchcam is not installed (Python < 3.11)")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 3))
    layer = find_cam_layer(model, (1, 8, 8), None, None)
    inputs = torch.rand(2, 1, 8, 8)
    classes = torch.tensor([0, 2])
    plain, merged = (
        predicted_maps(model, layer, inputs, classes, "none"),
        predicted_maps(model, layer, inputs, classes, "hflip"),
    )
    mirrored = predicted_maps(model, layer, inputs.flip(-1), classes, "none").flip(-1)
    mean = (plain + mirrored) / 2
    assert torch.allclose(merged, mean / mean.flatten(1).amax(1)[:, None, None], atol=1e-6)
    assert float(merged.amax()) == pytest.approx(1.0) and float(merged.amin()) >= 0
    symmetric = torch.cat([inputs[:, :, :, :4], inputs[:, :, :, :4].flip(-1)], dim=-1)
    both = predicted_maps(model, layer, symmetric, classes, "hflip")
    assert torch.allclose(both, both.flip(-1), atol=1e-6)


def test_a_hflip_run_draws_its_worst_mistakes_with_the_merged_maps(tmp_path, tiny_config, monkeypatch):
    """End to end: under trainer.tta=hflip the run's worst mistakes take predicted_maps with the run's TTA."""
    import cnntrain.models.cam as cam

    seen = []
    real = cam.predicted_maps

    def spy(model, layer, inputs, classes, tta):
        seen.append(tta)
        return real(model, layer, inputs, classes, tta)

    monkeypatch.setattr("cnntrain.reporting.report.predicted_maps", spy)
    run(tiny_config("trainer.epochs=1", "trainer.tta=hflip", "report.plots=true", "report.worst=3"), tmp_path)
    analysis = json.loads((tmp_path / "summary.json").read_text())["analysis"]
    if analysis["cam"] is None:
        pytest.skip("torchcam is not installed (Python < 3.11)")
    assert seen == ["hflip"] and (tmp_path / "worst_mistakes.png").is_file()
