"""cnntrain-eval, cnntrain-predict and cnntrain-export on a finished run, as users run them."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cnntrain.commands import evaluate, predict
from cnntrain.data.loading import load_data
from cnntrain.inference.export import metadata, metadata_path
from cnntrain.inference.load import load_run
from cnntrain.models.tta import predict_with_tta
from cnntrain.training import evaluation as engine
from cnntrain.training.run import run
from cnntrain.training.single_label import make_loss

from helpers import assert_one_line_error, run_main


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, one_epoch_run) -> Path:
    """A copy of the session's one-epoch run (eval writes eval_summary.json into it)."""
    return shutil.copytree(one_epoch_run, tmp_path_factory.mktemp("finished") / "run")


def command(name: str, *args: str, data_root: Path | None = None) -> subprocess.CompletedProcess:
    script = Path(sys.executable).parent / name
    environ = {k: v for k, v in os.environ.items() if k != "CNNTRAIN_DEBUG"}
    if data_root is not None:
        environ["CNNTRAIN_DATA_ROOT"] = str(data_root)
    return subprocess.run([str(script), *args], capture_output=True, text=True, env=environ, timeout=300)


def test_eval_reproduces_the_training_test_metrics(run_dir, synthetic_data_root):
    result = command("cnntrain-eval", str(run_dir), "--device", "cpu", data_root=synthetic_data_root)
    assert result.returncode == 0, result.stderr
    assert "per-class test accuracy" in result.stdout and "test/acc" in result.stdout
    trained = json.loads((run_dir / "summary.json").read_text())
    evaluated = json.loads((run_dir / "eval_summary.json").read_text())
    assert evaluated["test"]["acc"] == pytest.approx(trained["test"]["acc"])
    assert evaluated["test"]["loss"] == pytest.approx(trained["test"]["loss"], rel=1e-5)
    assert evaluated["confusion_matrix"] == trained["confusion_matrix"]
    assert evaluated["checkpoint"].endswith("best.pt")


def test_tta_run_is_validated_tested_and_evaluated_with_mirrored_images(tmp_path, synthetic_data_root):
    from helpers import TINY_RUN, compose_config

    cfg = compose_config(
        *TINY_RUN,
        "trainer.epochs=1",
        "trainer.progress=false",
        "report.plots=false",
        "trainer.tta=hflip",
        data_root=synthetic_data_root,
    )
    run(cfg, tmp_path)
    trained = json.loads((tmp_path / "summary.json").read_text())
    assert trained["tta"] == "hflip"
    saved = load_run(tmp_path)
    bundle = load_data(saved.config.dataset, seed=saved.config.seed)
    loss_fn = make_loss(saved.config)
    with_tta, _ = engine.test(saved.model, bundle, loss_fn, 256, tta="hflip")
    without, _ = engine.test(saved.model, bundle, loss_fn, 256)
    assert trained["test"]["loss"] == pytest.approx(with_tta.loss, rel=1e-5)
    assert with_tta.loss != pytest.approx(without.loss, rel=1e-3), "the summary must come from the mirrored pass"
    val_loss = float(next(csv.DictReader((tmp_path / "metrics.csv").open()))["val/loss"])
    assert val_loss == pytest.approx(
        engine.evaluate(saved.model, bundle.val, bundle, loss_fn, 256, tta="hflip").loss, rel=1e-5
    )
    result = command("cnntrain-eval", str(tmp_path), "--device", "cpu", data_root=synthetic_data_root)
    assert result.returncode == 0, result.stderr
    evaluated = json.loads((tmp_path / "eval_summary.json").read_text())
    assert evaluated["test"]["loss"] == pytest.approx(with_tta.loss, rel=1e-5)
    png = write_test_images(tmp_path, bundle, 2)[1]
    predicted = json.loads(command("cnntrain-predict", str(tmp_path), str(png), "--json").stdout)[0]["top"][0]
    with torch.inference_mode():
        expected = predict_with_tta(saved.model, saved.normalize(bundle.test.images[1:2]), "hflip").exp()[0]
    assert predicted["probability"] == pytest.approx(float(expected.max()), abs=1e-4)
    assert "trainer.tta=hflip" in metadata(saved, "onnx", tmp_path / "model.onnx")["test_time_augmentation"]


def test_eval_on_another_dataset_root_and_last_checkpoint(run_dir, make_data_root):
    other = make_data_root("MNIST", n_train=200, n_test=50, seed=5)
    result = command("cnntrain-eval", str(run_dir), "--checkpoint", "last", f"dataset.root={other}")
    assert result.returncode == 0, result.stderr
    evaluated = json.loads((run_dir / "eval_summary.json").read_text())
    assert evaluated["test"]["images"] == 50 and evaluated["checkpoint"].endswith("last.pt")


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["/no/such/run"], ["run directory not found: /no/such/run"]),
        (["RUN", "--checkpoint", "middle"], ["checkpoint not found", "middle"]),
        (["RUN", "model.name=other"], ["model.name=other", "only dataset.KEY=VALUE"]),
        (["RUN", "--device", "tpu"], ["device=tpu"]),
    ],
)
def test_eval_mistakes_are_one_line(run_dir, tmp_path, monkeypatch, args, fragments):
    """In this process (cnntrain-eval's own `main`); the next test runs the console script."""
    args = [str(run_dir) if a == "RUN" else a for a in args]
    assert_one_line_error(run_main(evaluate.main, args, tmp_path, monkeypatch), *fragments)


def test_eval_of_a_folder_without_checkpoints(tmp_path):
    assert_one_line_error(command("cnntrain-eval", str(tmp_path)), "has no checkpoints/best.pt")


def write_test_images(folder: Path, bundle, count: int) -> list[Path]:
    """Real test images saved as RGB files: odd ones lossless PNG at 28x28, even ones 56x56 JPEG to be resized."""
    paths = []
    for i in range(count):
        gray = bundle.test.images[i, 0].numpy()
        image = Image.fromarray(np.stack([gray] * 3, axis=-1), "RGB")
        if i % 2 == 0:
            image = image.resize((56, 56), Image.Resampling.NEAREST)
        path = folder / f"img{i}.{'png' if i % 2 else 'jpg'}"
        image.save(path, quality=95)
        paths.append(path)
    return paths


def test_predict_json_matches_the_model_on_the_same_pixels(run_dir, tmp_path):
    saved = load_run(run_dir)
    bundle = load_data(saved.config.dataset, seed=saved.config.seed)
    paths = write_test_images(tmp_path, bundle, 4)
    result = command("cnntrain-predict", str(run_dir), *map(str, paths), "--json", "--top-k", "2")
    assert result.returncode == 0, result.stderr
    records = json.loads(result.stdout)
    assert [r["image"] for r in records] == list(map(str, paths))
    assert all(len(r["top"]) == 2 and r["top"][0]["probability"] >= r["top"][1]["probability"] for r in records)
    png = records[1]  # lossless, and RGB with R=G=B converts back to the exact gray values
    with torch.inference_mode():
        expected = saved.model(saved.normalize(bundle.test.images[1:2])).softmax(dim=1)[0]
    assert png["top"][0]["class"] == saved.classes[int(expected.argmax())]
    assert png["top"][0]["probability"] == pytest.approx(float(expected.max()), abs=1e-4)


def test_predict_prints_a_table_per_image(run_dir, tmp_path):
    bundle = load_data(load_run(run_dir).config.dataset, seed=0)
    [path] = write_test_images(tmp_path, bundle, 1)
    result = command("cnntrain-predict", str(run_dir), str(path))
    assert result.returncode == 0, result.stderr
    assert str(path.name) in result.stdout and "probability" in result.stdout and result.stdout.count("%") == 3


def test_predict_unreadable_image_is_one_line(run_dir, tmp_path, monkeypatch):
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    assert_one_line_error(command("cnntrain-predict", str(run_dir), str(bad)), "cannot read image", "notes.png")
    gone = run_main(predict.main, [str(run_dir), str(tmp_path / "gone.png")], tmp_path, monkeypatch)
    assert_one_line_error(gone, "image not found")
    assert_one_line_error(
        run_main(predict.main, [str(run_dir), str(bad), "--top-k", "0"], tmp_path, monkeypatch), "--top-k=0"
    )


def test_export_torchscript_bakes_in_the_normalisation(run_dir, tmp_path):
    out = tmp_path / "model.pt"
    result = command("cnntrain-export", str(run_dir), "--format", "torchscript", "--output", str(out))
    assert result.returncode == 0, result.stderr
    saved = load_run(run_dir)
    images = torch.randint(0, 256, (5, *saved.input_shape), dtype=torch.uint8)
    with torch.inference_mode():
        expected = saved.model(saved.normalize(images))
        exported = torch.jit.load(str(out))
        assert torch.allclose(exported(images), expected, atol=1e-5)
        assert torch.allclose(exported(images.float() / 255), expected, atol=1e-5)
    meta = json.loads(metadata_path(out).read_text())
    assert meta["normalization"]["baked_in"] is True
    assert meta["normalization"]["mean"] == pytest.approx([float(v) for v in saved.config.dataset.mean])
    assert meta["output"]["classes"] == saved.classes and meta["input"]["shape"][1:] == [1, 28, 28]
    assert meta["test_time_augmentation"] == "none"


def test_export_onnx_agrees_with_onnxruntime(run_dir):
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    result = command("cnntrain-export", str(run_dir), "--format", "onnx")
    assert result.returncode == 0, result.stderr
    path = run_dir / "export" / "model.onnx"
    saved = load_run(run_dir)
    images = torch.rand(7, *saved.input_shape)
    with torch.inference_mode():
        expected = saved.model((images - saved.mean) / saved.std).numpy()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    [got] = session.run(None, {"images": images.numpy()})
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
    assert json.loads(metadata_path(path).read_text())["format"] == "onnx"


def test_export_unknown_format_is_one_line(run_dir):
    assert_one_line_error(command("cnntrain-export", str(run_dir), "--format", "tflite"), "tflite")
