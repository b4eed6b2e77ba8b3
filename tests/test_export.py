"""cnntrain-export's formats (ONNX through the dynamo exporter, OpenVINO IR, torch.export .pt2, TorchScript), int8,
the check against eager written into each JSON, and cnntrain-predict from an exported file without torch.

Two tiny runs are trained once per module (a single-label one on the synthetic IDX data, a multi-label one on
generated label sets); every export, quantization and runtime here is the real one (torch, ONNX Runtime, OpenVINO,
NNCF). The option and path errors need no trained run and are fast.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnntrain.commands import evaluate, export, predict, train

from helpers import TINY_RUN, assert_one_line_error, run_main
from synthetic_labelsets import SHAPES, write_sets

needs_onnx = pytest.mark.skipif(
    importlib.util.find_spec("onnxscript") is None or importlib.util.find_spec("onnxruntime") is None,
    reason="the onnx extra (onnx, onnxscript, onnxruntime) is not installed",
)
needs_openvino = pytest.mark.skipif(
    importlib.util.find_spec("openvino") is None or importlib.util.find_spec("nncf") is None,
    reason="the openvino extra (openvino, nncf) is not installed",
)
SUFFIX = {"torchscript": ".pt", "pt2": ".pt2", "onnx": ".onnx", "openvino": ".xml"}
MULTILABEL = (
    "dataset=labels",
    "model=cnn2",
    "trainer.epochs=3",
    "trainer.batch_size=16",
    "trainer.progress=false",
    "report.plots=false",
    "device=cpu",
    "dataset.task=multilabel",
    "trainer.threshold=tune",
    "trainer.early_stopping.enabled=false",
)


@pytest.fixture(scope="module")
def single_run(synthetic_data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("single") / "run"
    with pytest.MonkeyPatch.context() as mp:
        argv = [*TINY_RUN, "trainer.progress=false", "device=cpu", f"hydra.run.dir='{run_dir}'"]
        result = run_main(train.main, argv, run_dir.parent, mp, CNNTRAIN_DATA_ROOT=str(synthetic_data_root))
    assert result.returncode == 0, result.stderr
    return run_dir


@pytest.fixture(scope="module")
def label_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("labels")
    file = write_sets(folder / "data", "delimited", count=96)
    run_dir = folder / "run"
    with pytest.MonkeyPatch.context() as mp:
        result = run_main(train.main, [*MULTILABEL, f"dataset.file={file}", f"hydra.run.dir='{run_dir}'"], folder, mp)
    assert result.returncode == 0, result.stderr
    return run_dir


def odd_images(folder: Path, channels: int = 3) -> list[Path]:
    """PNGs of sizes the model does not take (wider, taller, smaller), so every resize path runs."""
    rng = np.random.default_rng(7)
    paths = []
    for i, (w, h) in enumerate([(37, 19), (13, 50), (28, 28), (101, 64)]):
        shape = (h, w) if channels == 1 else (h, w, 3)
        paths.append(folder / f"odd{i}.png")
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(paths[-1])
    return paths


def exported(
    run_dir: Path, fmt: str, tmp: Path, monkeypatch, *extra: str, env: Path | None = None
) -> tuple[Path, dict]:
    out = tmp / f"{fmt}{'-int8' if '--int8' in extra else ''}" / f"model{SUFFIX[fmt]}"
    out.parent.mkdir(exist_ok=True)
    environ = {"CNNTRAIN_DATA_ROOT": str(env)} if env else {}
    result = run_main(
        export.main, [str(run_dir), "--format", fmt, "--output", str(out), *extra], tmp, monkeypatch, **environ
    )
    assert result.returncode == 0, result.stderr
    assert f"wrote {out}" in result.stdout
    return out, json.loads(out.with_name(out.name + ".json").read_text())


def predicted(source: Path, images: list[Path], tmp: Path, monkeypatch) -> list[dict]:
    result = run_main(predict.main, [str(source), *map(str, images), "--json", "--top-k", "3"], tmp, monkeypatch)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def assert_same_answers(ours: list[dict], theirs: list[dict]) -> None:
    """The same records, classes in the same order, probabilities equal to float32 rounding."""
    assert [r["image"] for r in ours] == [r["image"] for r in theirs]
    for a, b in zip(ours, theirs):
        for key in ("top", "labels"):
            if key in a:
                names = [item.get("class", item.get("label")) for item in a[key]]
                assert names == [item.get("class", item.get("label")) for item in b[key]], (a, b)
                assert [x["probability"] for x in a[key]] == pytest.approx([x["probability"] for x in b[key]], abs=1e-5)


# ---- decoding without torch: the very pixels the run's own path gives ----


@pytest.mark.parametrize("resize", ["stretch", "crop", "pad"])
@pytest.mark.parametrize("channels", [1, 3])
def test_torch_free_decoding_gives_the_runs_pixels(tmp_path, resize, channels):
    from cnntrain.inference import classifier, runtime

    paths = odd_images(tmp_path, channels=3 if channels == 1 else 1)  # a colour change too
    ours = runtime.load_images(paths, (channels, 24, 20), resize)
    theirs = classifier.load_images(paths, (channels, 24, 20), resize).numpy()
    assert ours.dtype == np.uint8 and ours.shape == (len(paths), channels, 24, 20)
    assert np.array_equal(ours, theirs)
    assert np.array_equal(runtime.as_float(ours), (theirs.astype(np.float32) / 255.0))


# ---- every format on a single-label and a multi-label run ----


@pytest.mark.slow
@needs_onnx
@needs_openvino
def test_every_format_is_checked_and_predicts_as_the_run_does(single_run, synthetic_data_root, tmp_path, monkeypatch):
    images = odd_images(tmp_path)
    from_run = predicted(single_run, images, tmp_path, monkeypatch)
    for fmt in ("onnx", "openvino", "pt2", "torchscript"):
        out, contract = exported(single_run, fmt, tmp_path, monkeypatch, env=synthetic_data_root)
        check = contract["check"]
        assert check["split"] == "test" and check["images"] == 300 and check["metric"] == "acc"
        assert check["top1_agreement"] == 1.0 and check["max_probability_difference"] <= 1e-3, fmt
        assert check["exported"] == check["eager"] and contract["precision"] == "float32"
        assert contract["output"]["classes"] == [str(i) for i in range(10)]
        if fmt == "onnx":
            assert contract["exporter"] == "dynamo" and contract["opset"] >= 18
        if fmt == "openvino":
            assert contract["files"] == ["model.xml", "model.bin"] and out.with_suffix(".bin").is_file()
        if fmt != "torchscript":
            assert_same_answers(predicted(out, images, tmp_path, monkeypatch), from_run)
    assert sorted(p.name for p in (tmp_path / "onnx").iterdir()) == ["model.onnx", "model.onnx.json"]


@pytest.mark.slow
@needs_onnx
@needs_openvino
def test_a_multi_label_export_carries_its_sigmoid_and_thresholds(label_run, tmp_path, monkeypatch):
    images = sorted((label_run.parent / "data" / "img").glob("*.png"))[:6]
    from_run = predicted(label_run, images, tmp_path, monkeypatch)
    thresholds = json.loads((label_run / "summary.json").read_text())["thresholds"]
    for fmt in ("onnx", "openvino"):
        out, contract = exported(label_run, fmt, tmp_path, monkeypatch)
        assert contract["output"]["kind"] == "probabilities" and contract["output"]["labels"] == list(SHAPES)
        assert contract["output"]["thresholds"] == pytest.approx(thresholds)
        check = contract["check"]
        assert check["metric"] == "map" and check["label_agreement"] == 1.0 and check["top1_agreement"] == 1.0
        answers = predicted(out, images, tmp_path, monkeypatch)
        assert_same_answers(answers, from_run)
        assert [[x["label"] for x in r["labels"]] for r in answers] == [
            [x["label"] for x in r["labels"]] for r in from_run
        ]


@pytest.mark.slow
@needs_onnx
@needs_openvino
def test_int8_is_calibrated_on_the_training_split_and_measured(single_run, synthetic_data_root, tmp_path, monkeypatch):
    for fmt in ("onnx", "openvino"):
        out = tmp_path / f"q{SUFFIX[fmt]}"
        argv = [
            str(single_run),
            "--format",
            fmt,
            "--int8",
            "--calibration",
            "5000",
            "--accuracy-budget",
            "0",
            "--output",
            str(out),
        ]
        if fmt == "onnx":  # where the data is: the environment the run saw, or an override as cnntrain-eval takes
            result = run_main(export.main, argv, tmp_path, monkeypatch, CNNTRAIN_DATA_ROOT=str(synthetic_data_root))
        else:
            monkeypatch.delenv("CNNTRAIN_DATA_ROOT", raising=False)
            result = run_main(export.main, [*argv, f"data_root={synthetic_data_root}"], tmp_path, monkeypatch)
        assert result.returncode == 0, result.stderr
        train_images = json.loads((single_run / "summary.json").read_text())["sizes"]["train"]
        assert f"--calibration 5000: the training split has {train_images} images" in result.stdout
        contract = json.loads(out.with_name(out.name + ".json").read_text())
        int8, check = contract["int8"], contract["check"]
        assert contract["precision"] == "int8" and int8["calibration_images"] == train_images
        assert check["top1_agreement"] >= 0.95 and abs(check["drop_pt"]) <= 3.0, check  # tiny model, 300 images
        assert int8["within_budget"] == (check["drop_pt"] <= 0)
        flagged = [line for line in result.stdout.splitlines() if line.startswith("warning: the int8")]
        assert len(flagged) == (0 if int8["within_budget"] else 1)
    onnx = pytest.importorskip("onnx")
    ops = {node.op_type for node in onnx.load(str(tmp_path / "q.onnx")).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops, "a QDQ model, not a float one renamed"


@pytest.mark.slow
@needs_onnx
@needs_openvino
def test_predict_from_onnx_or_openvino_imports_no_torch(single_run, synthetic_data_root, tmp_path, monkeypatch):
    images = odd_images(tmp_path)[:2]
    for fmt in ("onnx", "openvino"):
        out, _ = exported(single_run, fmt, tmp_path, monkeypatch, env=synthetic_data_root)
        script = (
            "import sys, atexit\n"
            "atexit.register(lambda: print('torch imported:', 'torch' in sys.modules, file=sys.stderr))\n"
            "from cnntrain.commands.predict import main\n"
            f"sys.argv = ['cnntrain-predict', {str(out)!r}, {str(images[0])!r}, {str(images[1])!r}, '--json']\n"
            "main()\n"
        )
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert "torch imported: False" in done.stderr  # a torch import would also skip atexit (os._exit)
        assert [r["image"] for r in json.loads(done.stdout)] == [str(p) for p in images]


# ---- errors: one line each ----


@pytest.mark.parametrize(
    ("argv", "fragments"),
    [
        (["--format", "pt2", "--int8"], ["--int8 with format pt2", "onnx and openvino"]),
        (["--format", "torchscript", "--int8"], ["--int8 with format torchscript"]),
        (["--format", "onnx", "--int8", "--calibration", "0"], ["--calibration=0", ">= 1"]),
        (["--format", "onnx", "--int8", "--accuracy-budget", "-1"], ["--accuracy-budget=-1.0", ">= 0"]),
        (["--format", "onnx", "--accuracy-budget", "nan"], ["--accuracy-budget=nan"]),
        (["--format", "tflite"], ["invalid choice: 'tflite'"]),
    ],
)
def test_bad_export_options_are_one_line(tmp_path, monkeypatch, argv, fragments):
    result = run_main(export.main, [str(tmp_path), *argv], tmp_path, monkeypatch)
    assert_one_line_error(result, *fragments)


def test_an_output_that_is_a_folder_or_a_link_is_refused(tmp_path, monkeypatch):
    (tmp_path / "dir.onnx").mkdir()
    result = run_main(
        export.main, [str(tmp_path), "--format", "onnx", "--output", str(tmp_path / "dir.onnx")], tmp_path, monkeypatch
    )
    assert_one_line_error(result, "dir.onnx is a folder", "--output names the model file")
    (tmp_path / "elsewhere.xml").write_text("")
    (tmp_path / "link.bin").symlink_to(tmp_path / "elsewhere.xml")  # an IR's .bin too
    result = run_main(
        export.main,
        [str(tmp_path), "--format", "openvino", "--output", str(tmp_path / "link.xml")],
        tmp_path,
        monkeypatch,
    )
    assert_one_line_error(result, "link.bin is a symbolic link")
    (tmp_path / "run" / "export").mkdir(parents=True)
    (tmp_path / "run" / "export" / "model.pt2").symlink_to(tmp_path / "elsewhere.xml")
    result = run_main(export.main, [str(tmp_path / "run"), "--format", "pt2"], tmp_path, monkeypatch)
    assert_one_line_error(result, "model.pt2 is a symbolic link")


def test_a_run_without_a_checkpoint_is_one_line(tmp_path, monkeypatch):
    result = run_main(export.main, [str(tmp_path), "--format", "onnx"], tmp_path, monkeypatch)
    assert_one_line_error(result, "has no checkpoints/best.pt")
    assert not (tmp_path / "export").exists()


def test_a_missing_extra_is_named(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "nncf", None)  # as if it were not installed: find_spec and import both fail
    result = run_main(export.main, [str(tmp_path), "--format", "openvino", "--int8"], tmp_path, monkeypatch)
    assert_one_line_error(result, "needs nncf", "pip install 'cnntrain[openvino]'")
    monkeypatch.setitem(sys.modules, "onnxscript", None)
    result = run_main(export.main, [str(tmp_path), "--format", "onnx"], tmp_path, monkeypatch)
    assert_one_line_error(result, "needs onnxscript", "pip install 'cnntrain[onnx]'")


def contract_for(model: Path, **changes) -> None:
    contract = {
        "file": model.name,
        "format": "onnx",
        "input": {"shape": ["batch", 1, 8, 8], "resize": {"mode": "stretch"}},
        "output": {"kind": "logits", "classes": ["a", "b"]},
    }
    contract.update(changes)
    model.with_name(model.name + ".json").write_text(json.dumps(contract))


@needs_onnx
def test_predict_from_a_file_says_what_is_wrong_in_one_line(tmp_path, monkeypatch):
    image = odd_images(tmp_path)[0]
    model = tmp_path / "model.onnx"
    cases = [
        (lambda: None, ["model file not found"]),
        (lambda: model.write_bytes(b"not onnx"), ["model.onnx.json is missing"]),
        (lambda: contract_for(model, file="other.onnx"), ["describes 'other.onnx', not 'model.onnx'"]),
        (lambda: contract_for(model, format="openvino"), ["describes a 'openvino' export"]),
        (lambda: contract_for(model, input={"shape": [1]}), ["not a contract cnntrain-export wrote"]),
        (lambda: model.with_name("model.onnx.json").write_text("[1, 2"), ["not a contract cnntrain-export wrote"]),
        (lambda: contract_for(model), ["model.onnx: onnx cannot read it"]),
    ]
    for make, fragments in cases:
        make()
        result = run_main(predict.main, [str(model), str(image)], tmp_path, monkeypatch)
        assert_one_line_error(result, *fragments)
    result = run_main(predict.main, [str(model), str(image), "--cam"], tmp_path, monkeypatch)
    assert_one_line_error(result, "--cam is for predicting from a run directory")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    result = run_main(predict.main, [str(model), str(image)], tmp_path, monkeypatch)
    assert_one_line_error(result, "needs onnxruntime", "pip install 'cnntrain[onnx]'")


@pytest.mark.slow
@needs_onnx
def test_eval_of_an_exported_file_on_the_test_split(single_run, label_run, synthetic_data_root, tmp_path, monkeypatch):
    out, contract = exported(single_run, "onnx", tmp_path, monkeypatch, env=synthetic_data_root)
    argv = [str(single_run), "--model", str(out)]
    result = run_main(evaluate.main, argv, tmp_path, monkeypatch, CNNTRAIN_DATA_ROOT=str(synthetic_data_root))
    assert result.returncode == 0, result.stderr
    assert f"(onnx, float32) on 300 test images: accuracy {contract['check']['exported']:.2f}%" in result.stdout
    assert "top-1 agreement 100.00%" in result.stdout
    (tmp_path / "labels").mkdir()
    other, _ = exported(label_run, "onnx", tmp_path / "labels", monkeypatch)
    result = run_main(evaluate.main, [str(single_run), "--model", str(other)], tmp_path, monkeypatch)
    assert_one_line_error(result, "takes 1x16x16 images into 3 classes", "evaluate a file exported from this run")
    result = run_main(evaluate.main, [*argv, "--batch-size", "8"], tmp_path, monkeypatch)
    assert_one_line_error(result, "--batch-size is for the checkpoint")
