"""Named architectures (torchvision and timm) on small generated RGB and grayscale image folders: built to the
data, trained end to end, fine-tuned from a local weights file (frozen, then unfrozen), exported, and the
mistakes a user can make with them, each one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision import models

from cnntrain.commands import export, train
from cnntrain.inference.load import load_run
from cnntrain.models.architectures import Architecture, architectures, saved_weights
from cnntrain.models.builder import build_model

from helpers import assert_one_line_error, compose_config, run_main, run_stopped_in_epoch
from synthetic_images import make_folder

FAST = (
    "trainer.batch_size=16",
    "trainer.eval_batch_size=64",
    "trainer.progress=false",
    "report.plots=false",
    "threads=2",
)


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    """16x16 where the image size is not the point: below 64 pixels the stem keeps full resolution (small_input),
    so a network's cost grows with the pixels; gray stays 28x28, MNIST's size, for the resized-weights run (which
    resizes to 64x64: half as many images)."""
    root = tmp_path_factory.mktemp("images")
    return {
        "rgb": make_folder(root / "rgb", rgb=True, size=16, per_class=12, test_per_class=4),
        "gray": make_folder(root / "gray", rgb=False, size=28, per_class=6, test_per_class=2),
        "small": make_folder(root / "small", rgb=False, size=16, per_class=12, test_per_class=4),
    }


@pytest.fixture(scope="module")
def resnet18_file(tmp_path_factory) -> Path:
    """A resnet18 state dict as torchvision saves its ImageNet weights (1000 classes, RGB), random values."""
    torch.manual_seed(7)
    path = tmp_path_factory.mktemp("weights") / "resnet18-test.pth"
    torch.save(models.resnet18(num_classes=1000).state_dict(), path)
    return path


def train_run(folder: Path, tmp_path: Path, monkeypatch, *overrides: str):
    tmp_path.mkdir(exist_ok=True)
    run_dir = tmp_path / "run"
    result = run_main(
        train.main,
        ["dataset=imagefolder", f"dataset.root={folder}", *FAST, *overrides, f"hydra.run.dir={run_dir}"],
        tmp_path,
        monkeypatch,
    )
    return result, run_dir


def test_a_backbone_with_a_custom_head_builds_with_every_size_inferred():
    layers = [
        {"torchvision": {"arch": "resnet18", "classes": None, "small_input": True}},
        {"linear": 64},
        "relu",
        {"dropout": 0.2},
        {"linear": 3},
    ]
    model, rows = build_model(layers, [1, 28, 28], "mine")
    assert [row.output_shape for row in rows] == [(512,), (64,), (64,), (64,), (3,)]
    assert rows[0].detail == "resnet18, small input, features"
    blocks = {row.name.strip(): row.output_shape for row in rows[0].blocks}
    assert blocks["conv1"] == (64, 28, 28), "a stride-1 stem on a small input"
    assert blocks["layer4"] == (512, 4, 4) and blocks["fc"] == (512,)
    assert len(rows[0].blocks) == 10, "the table shows resnet's top-level blocks, not every module"
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 3)
    (arch,) = architectures(model)
    assert arch.head is None and len(arch.backbone_parameters()) == len(list(arch.parameters()))


def test_a_local_state_dict_loads_every_tensor_and_adapts_stem_and_head(resnet18_file):
    saved = torch.load(resnet18_file)
    model, rows = build_model(
        [{"torchvision": {"arch": "resnet18", "weights": str(resnet18_file), "classes": 3}}], [3, 32, 32]
    )
    own = model[0].net.state_dict()
    assert all(torch.equal(own[key], value) for key, value in saved.items() if not key.startswith("fc."))
    assert own["fc.weight"].shape == (3, 512)
    gray, _ = build_model(
        [{"torchvision": {"arch": "resnet18", "weights": str(resnet18_file), "classes": 3}}], [1, 28, 28]
    )
    assert torch.equal(gray[0].net.conv1.weight, saved["conv1.weight"].sum(dim=1, keepdim=True)), (
        "RGB filters summed for one channel: the same response as the gray image repeated three times"
    )
    with saved_weights():
        rebuilt, _ = build_model(
            [{"torchvision": {"arch": "resnet18", "weights": "/gone.pth", "classes": 3}}], [3, 32, 32]
        )
    assert rebuilt[0].net.state_dict().keys() == own.keys(), "a trained model rebuilds without its weights file"


def test_a_checkpoint_with_a_prefix_and_its_own_head_loads(tmp_path, resnet18_file):
    """A checkpoint holding the state dict under 'model' with DDP's 'module.' prefix and 3 classes."""
    saved = torch.load(resnet18_file)
    saved["fc.weight"], saved["fc.bias"] = torch.randn(3, 512), torch.randn(3)
    path = tmp_path / "finetuned.ckpt"
    torch.save({"epoch": 4, "model": {f"module.{key}": value for key, value in saved.items()}}, path)
    model, _ = build_model([{"torchvision": {"arch": "resnet18", "weights": str(path), "classes": 3}}], [3, 32, 32])
    assert torch.equal(model[0].net.fc.weight, saved["fc.weight"]), "a head of the right size is kept"


@pytest.mark.parametrize(
    ("arch", "shape", "blocks"),
    [("mobilenet_v3_small", [3, 32, 32], 3), ("efficientnet_b0", [1, 28, 28], 3), ("regnet_y_400mf", [3, 32, 32], 4)],
)
def test_other_torchvision_families_fit_small_inputs(arch, shape, blocks):
    model, rows = build_model([{"torchvision": {"arch": arch, "classes": 5}}], shape)
    assert rows[0].output_shape == (5,) and len(rows[0].blocks) == blocks
    assert rows[0].macs > 0


def test_timm_builds_scratch_and_from_a_local_file(tmp_path):
    timm = pytest.importorskip("timm")
    model, rows = build_model([{"timm": {"arch": "resnet18", "classes": 4}}], [1, 28, 28])
    assert rows[0].output_shape == (4,) and model[0].net.conv1.in_channels == 1
    torch.manual_seed(3)
    saved = timm.create_model("resnet18").state_dict()
    torch.save(saved, tmp_path / "timm.pth")
    loaded, _ = build_model(
        [{"timm": {"arch": "resnet18", "weights": str(tmp_path / "timm.pth"), "classes": 4}}], [3, 32, 32]
    )
    assert torch.equal(loaded[0].net.layer3[1].conv2.weight, saved["layer3.1.conv2.weight"])


@pytest.mark.parametrize(("arch", "last_block"), [("resnet18", "fc"), ("mobilenet_v3_small", "classifier")])
def test_a_named_architecture_trains_one_epoch_end_to_end(arch, last_block, folders, tmp_path, monkeypatch):
    result, run_dir = train_run(
        folders["rgb"], tmp_path, monkeypatch, "model=torchvision", f"model.arch={arch}", "trainer.epochs=1"
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "done" and summary["macs_per_image"] > 1e6
    assert f"model {arch}" in result.stdout and f"  {last_block} " in result.stdout, "the table shows the blocks"


@pytest.mark.slow
def test_fine_tuning_freezes_then_unfreezes_and_exports(folders, resnet18_file, tmp_path, monkeypatch):
    """Epoch 1 trains the head only (backbone tensors, BatchNorm statistics included, stay the file's); epoch 2
    trains everything at backbone_lr x lr. A run stopped in epoch 2 shows the frozen epoch's weights and resumes
    to the uninterrupted run's. The fine-tuned run exports to TorchScript and ONNX."""
    saved = torch.load(resnet18_file)
    common = (
        "model=resnet18",
        f"model.weights={resnet18_file}",
        "model.small_input=true",
        "trainer.finetune.freeze_epochs=1",
        "trainer.finetune.backbone_lr=0.1",
        "optimizer.lr=1e-3",
    )
    result, unfrozen = train_run(folders["small"], tmp_path / "two", monkeypatch, *common, "trainer.epochs=2")
    assert result.returncode == 0, result.stderr
    summary = json.loads((unfrozen / "summary.json").read_text())
    assert summary["params_trainable"] == 512 * 3 + 3 and summary["params_frozen"] == summary["params"] - 1539
    weights = torch.load(unfrozen / "checkpoints" / "last.pt", weights_only=False)
    assert not torch.equal(weights["model"]["0.net.layer1.0.conv1.weight"], saved["layer1.0.conv1.weight"])
    groups = weights["optimizer"]["param_groups"]
    assert [group["lr"] for group in groups] == pytest.approx([1e-3, 1e-4])

    from cnntrain.training.run import resume_run

    cfg = compose_config("dataset=imagefolder", f"dataset.root={folders['small']}", *FAST, *common, "trainer.epochs=2")
    frozen = tmp_path / "resumed"
    run_stopped_in_epoch(cfg, frozen, 2, monkeypatch)
    after_one = torch.load(frozen / "checkpoints" / "last.pt", weights_only=False)["model"]
    backbone = {key: value for key, value in saved.items() if not key.startswith(("fc.", "conv1."))}
    assert all(torch.equal(after_one[f"0.net.{key}"], value) for key, value in backbone.items()), (
        "a frozen backbone keeps every tensor, its BatchNorm running statistics too"
    )
    first = (frozen / "metrics.csv").read_text().splitlines()[1]
    assert (unfrozen / "metrics.csv").read_text().splitlines()[1].split(",")[:5] == first.split(",")[:5]
    resume_run(frozen)
    resumed = torch.load(frozen / "checkpoints" / "last.pt", weights_only=False)["model"]
    assert all(torch.equal(resumed[key], value) for key, value in weights["model"].items()), (
        "resumed after the frozen epoch: bit-identical to the uninterrupted run"
    )

    for fmt in ("torchscript", "onnx"):
        exported = run_main(export.main, [str(unfrozen), "--format", fmt], tmp_path, monkeypatch)
        assert exported.returncode == 0, exported.stderr
    ort = pytest.importorskip("onnxruntime")
    saved_run = load_run(unfrozen)
    images = torch.rand(5, *saved_run.input_shape)
    with torch.inference_mode():
        expected = saved_run.model((images - saved_run.mean) / saved_run.std).numpy()
        scripted = torch.jit.load(str(unfrozen / "export" / "model.pt"))(images).numpy()
    session = ort.InferenceSession(str(unfrozen / "export" / "model.onnx"), providers=["CPUExecutionProvider"])
    [got] = session.run(None, {"images": images.numpy()})
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(scripted, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_named_weights_bring_their_resolution_and_statistics(folders, resnet18_file, tmp_path, monkeypatch):
    """IMAGENET1K_V1 from the torch hub cache (a file the test puts there: no network): the input is resized
    on the device to the weights' size (here overridden to 64) and normalised with ImageNet's mean/std,
    averaged for grayscale; eval and predict rebuild it without reading the weights again."""
    hub = tmp_path / "torch"
    (hub / "hub" / "checkpoints").mkdir(parents=True)
    (hub / "hub" / "checkpoints" / "resnet18-f37072fd.pth").write_bytes(resnet18_file.read_bytes())
    monkeypatch.setenv("TORCH_HOME", str(hub))
    result, run_dir = train_run(
        folders["gray"],
        tmp_path,
        monkeypatch,
        "model=resnet18",
        "model.weights=IMAGENET1K_V1",
        "model.resize=64",
        "trainer.epochs=1",
    )
    assert result.returncode == 0, result.stderr
    checkpoint = torch.load(run_dir / "checkpoints" / "best.pt", weights_only=False)
    assert checkpoint["data"]["mean"] == pytest.approx([(0.485 + 0.456 + 0.406) / 3])
    assert checkpoint["data"]["std"] == pytest.approx([(0.229 + 0.224 + 0.225) / 3])
    with saved_weights():
        _, rows = build_model(checkpoint["config"]["model"]["layers"], [1, 28, 28])
    assert rows[0].blocks[0].output_shape == (64, 32, 32), "resized to 64x64: the usual stride-2 stem"
    (hub / "hub" / "checkpoints" / "resnet18-f37072fd.pth").unlink()
    exported = run_main(export.main, [str(run_dir), "--format", "torchscript"], tmp_path, monkeypatch)
    assert exported.returncode == 0, exported.stderr


def test_offline_without_the_weights_is_one_line(folders, tmp_path, monkeypatch):
    """No cached file and no network (a proxy nothing listens on): one line naming the file and the fix."""
    from cnntrain.training.launch import free_port

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-cache"))
    for key in ("https_proxy", "HTTPS_PROXY"):
        monkeypatch.setenv(key, f"http://127.0.0.1:{free_port()}")
    result, _ = train_run(folders["rgb"], tmp_path, monkeypatch, "model=resnet18", "model.weights=IMAGENET1K_V1")
    cached = tmp_path / "empty-cache" / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    assert_one_line_error(
        result,
        f"weights resnet18 IMAGENET1K_V1 are not in the cache ({cached}) and could not be downloaded",
        "download https://download.pytorch.org/models/resnet18-f37072fd.pth",
        "or set weights: /path/to/resnet18-f37072fd.pth",
        cwd=tmp_path,
    )


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda path: path.write_bytes(b"not a checkpoint"), "cannot be read"),
        (lambda path: torch.save({"a": 1}, path), "holds no state dict (a mapping of names to tensors)"),
        (
            lambda path: torch.save(models.mobilenet_v3_small().state_dict(), path),
            "do not fit resnet18: missing conv1.weight, bn1.weight, bn1.bias ...; unexpected features.0.0.weight",
        ),
    ],
)
def test_a_weights_file_that_does_not_fit_is_one_line(make, expected, folders, tmp_path, monkeypatch):
    path = tmp_path / "weights.pth"
    make(path)
    result, _ = train_run(folders["rgb"], tmp_path, monkeypatch, "model=resnet18", f"model.weights={path}")
    assert_one_line_error(result, str(path), expected, cwd=tmp_path)


def test_a_frozen_backbone_keeps_batchnorm_in_eval_mode():
    model, _ = build_model([{"torchvision": {"arch": "resnet18", "classes": 3}}], [3, 32, 32])
    arch: Architecture = model[0]
    arch.freeze_backbone(True)
    model.train()
    assert not arch.net.bn1.training and not arch.net.layer2[0].bn1.training
    assert all(not p.requires_grad for p in arch.backbone_parameters())
    assert all(p.requires_grad for p in arch.head_parameters())
    arch.freeze_backbone(False)
    assert arch.net.bn1.training and all(p.requires_grad for p in arch.parameters())
