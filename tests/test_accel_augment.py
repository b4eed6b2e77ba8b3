"""Precision, layout and on-device augmentation: each path runs on the CPU too."""

from __future__ import annotations

import json

import pytest
import torch

from cnntrain.data.augment import Augment, build_augment
from cnntrain.data.augment_ops import random_hflip, random_translate
from cnntrain.errors import DeviceError
from cnntrain.models.tta import predict_with_tta
from cnntrain.training.accel import Accel
from cnntrain.training.run import run


def one_pixel_images(batch: int = 64, size: int = 12) -> torch.Tensor:
    images = torch.zeros(batch, 1, size, size, dtype=torch.uint8)
    images[:, 0, size // 2, size // 2] = 255
    return images


def test_translate_moves_each_image_within_bounds():
    images = one_pixel_images()
    shifted = random_translate(images, 2, torch.Generator().manual_seed(0))
    assert shifted.shape == images.shape and shifted.dtype == torch.uint8
    positions = (shifted[:, 0] == 255).nonzero()[:, 1:]
    assert len(positions) == 64, "a 2-pixel shift keeps a centre pixel inside a 12x12 image"
    offsets = positions - 6
    assert offsets.abs().max() <= 2
    assert len({tuple(o) for o in offsets.tolist()}) > 10, "images get different shifts"


def test_translate_fills_with_zeros():
    images = torch.full((8, 1, 5, 5), 7, dtype=torch.uint8)
    shifted = random_translate(images, 5, torch.Generator().manual_seed(1))
    assert shifted.sum() < images.sum()


def test_hflip_mirrors_about_half():
    images = torch.arange(4, dtype=torch.uint8).repeat(200, 1, 4, 1)
    flipped = random_hflip(images, torch.Generator().manual_seed(0))
    mirrored = (flipped[:, 0, 0] == torch.tensor([3, 2, 1, 0], dtype=torch.uint8)).all(dim=1)
    untouched = (flipped == images).flatten(1).all(dim=1)
    assert bool((mirrored ^ untouched).all())
    assert 60 < int(mirrored.sum()) < 140


def test_augment_is_reproducible_and_off_by_default():
    images = torch.randint(0, 255, (16, 1, 28, 28), dtype=torch.uint8)
    labels = torch.zeros(16, dtype=torch.int64)
    augment = build_augment({"translate": 3, "hflip": True})
    a, _ = augment(images, labels, torch.Generator().manual_seed(5))
    b, _ = augment(images, labels, torch.Generator().manual_seed(5))
    assert torch.equal(a, b) and not torch.equal(a, images)
    assert not Augment().enabled


def test_fp16_needs_cuda():
    with pytest.raises(DeviceError, match="trainer.precision=fp16 needs a CUDA device"):
        Accel(torch.device("cpu"), "fp16")


def test_bf16_autocast_runs_on_cpu():
    accel = Accel(torch.device("cpu"), "bf16", channels_last=True)
    model = accel.prepare_model(
        torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.Flatten(), torch.nn.Linear(4 * 26 * 26, 10))
    )
    with accel.autocast():
        out = model(accel.prepare_input(torch.randn(2, 1, 28, 28)))
    assert out.dtype == torch.bfloat16
    assert model[0].weight.is_contiguous(memory_format=torch.channels_last)


def test_grad_scaler_path_steps_the_optimizer():
    """The fp16 path (scaled backward, unscale, step, update) exercised with the CPU scaler."""
    accel = Accel(torch.device("cpu"))
    accel.scaler = torch.amp.GradScaler("cpu")
    model = torch.nn.Linear(3, 1)
    before = model.weight.detach().clone()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    accel.backward_and_step(model(torch.ones(4, 3)).sum(), optimizer)
    assert not torch.equal(before, model.weight)


def test_run_with_channels_last_and_augmentation(tmp_path, tiny_config):
    run(
        tiny_config(
            "trainer.epochs=1",
            "trainer.channels_last=true",
            "dataset.augment.translate=2",
            "dataset.augment.hflip=true",
        ),
        tmp_path,
    )
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["channels_last"] is True and summary["test"]["acc"] > 0.3
    assert set(summary["timing"]) == {"startup_seconds", "train_seconds", "eval_seconds", "elapsed_seconds"}
    assert summary["timing"]["train_seconds"] > 0 and summary["timing"]["eval_seconds"] > 0


def mirror_sensitive_net(log_softmax: bool) -> torch.nn.Module:
    torch.manual_seed(0)
    layers = [torch.nn.Conv2d(1, 4, 3), torch.nn.Flatten(), torch.nn.Linear(4 * 10 * 10, 5)]
    return torch.nn.Sequential(*layers, *([torch.nn.LogSoftmax(dim=1)] if log_softmax else [])).eval()


def test_tta_hflip_averages_the_image_and_its_mirror():
    net = mirror_sensitive_net(log_softmax=False)
    images = torch.randn(6, 1, 12, 12)
    with torch.no_grad():
        assert torch.equal(predict_with_tta(net, images, "none"), net(images))
        plain, mirrored = net(images).softmax(1), net(images.flip(3)).softmax(1)
        assert not torch.allclose(plain, mirrored, atol=1e-3), "the test net must tell an image from its mirror"
        geometric_mean = (plain * mirrored).sqrt()
        expected = geometric_mean / geometric_mean.sum(1, keepdim=True)
        averaged = predict_with_tta(net, images, "hflip")
        assert torch.allclose(averaged.exp(), expected, atol=1e-6)
        assert torch.allclose(predict_with_tta(net, images.flip(3), "hflip"), averaged, atol=1e-6)


def test_tta_gives_the_same_probabilities_for_logit_and_log_softmax_models():
    images = torch.randn(6, 1, 12, 12)
    with torch.no_grad():
        from_logits = predict_with_tta(mirror_sensitive_net(log_softmax=False), images, "hflip")
        from_log_probs = predict_with_tta(mirror_sensitive_net(log_softmax=True), images, "hflip")
    assert torch.allclose(from_logits, from_log_probs, atol=1e-6)
