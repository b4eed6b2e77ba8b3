"""dataset.augment as an ordered list: each op acts per image, reproducibly; mixup/cutmix give soft targets; the
old mapping form draws today's numbers; a run writes augment_preview.png and resumes bit-identically."""

from __future__ import annotations

import pytest
import torch

from cnntrain.data.augment import augment_items, build_augment
from cnntrain.data.augment_ops import random_hflip, random_translate
from cnntrain.data.mixing import cutmix, mixup
from cnntrain.training.run import resume_run, run

from helpers import run_stopped_in_epoch

IMAGE_OPS = [
    "translate",
    {"random_crop": 4},
    "hflip",
    "random_resized_crop",
    "randaugment",
    "trivialaugment",
    "autoaugment",
    {"random_erasing": 1.0},
]


def batch(n: int = 32, channels: int = 1, size: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(7)
    images = torch.randint(0, 256, (n, channels, size, size), dtype=torch.uint8, generator=generator)
    return images, torch.arange(n) % 10


@pytest.mark.parametrize("spec", [*IMAGE_OPS, "mixup", "cutmix"], ids=str)
def test_each_op_changes_images_and_keeps_shape_dtype_device(spec):
    images, labels = batch()
    out, targets = build_augment([spec], 10, (1, 16, 16))(images, labels, torch.Generator().manual_seed(0))
    assert out.shape == images.shape and out.dtype == torch.uint8 and out.device == images.device
    assert not torch.equal(out, images)
    assert len(targets) == len(labels)


@pytest.mark.parametrize("spec", [s for s in IMAGE_OPS if s != "hflip"], ids=str)
def test_each_image_gets_its_own_draw(spec):
    """One image repeated: a per-image op turns the copies into many different images."""
    images = batch(1)[0].repeat(32, 1, 1, 1)
    out, _ = build_augment([spec], 10)(images, torch.zeros(32, dtype=torch.int64), torch.Generator().manual_seed(3))
    assert len({bytes(image.numpy()) for image in out}) > 8


@pytest.mark.parametrize("spec", [*IMAGE_OPS, "mixup", "cutmix"], ids=str)
def test_the_same_seed_gives_the_same_batch(spec):
    images, labels = batch()
    augment = build_augment([spec, "hflip"], 10)
    a = augment(images, labels, torch.Generator().manual_seed(5))
    b = augment(images, labels, torch.Generator().manual_seed(5))
    c = augment(images, labels, torch.Generator().manual_seed(6))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and not torch.equal(a[0], c[0])


def test_the_old_mapping_form_draws_exactly_todays_numbers():
    """{translate: N, hflip: true} is [translate: N, hflip]: the same calls on the same generator as before."""
    images, labels = batch(20)
    assert augment_items({"translate": 2, "hflip": True}) == [("translate", {"pixels": 2}), ("hflip", {})]
    assert augment_items({"translate": 0, "hflip": False}) == [] and not build_augment(None).enabled
    generator = torch.Generator().manual_seed(9)
    today = random_hflip(random_translate(images, 2, generator, 40, slice(10, 30)), generator, 40, slice(10, 30))
    ours, targets = build_augment({"translate": 2, "hflip": True})(
        images, labels, torch.Generator().manual_seed(9), 40, 10
    )
    assert torch.equal(ours, today) and torch.equal(targets, labels)
    assert torch.equal(generator.get_state(), _state_after({"translate": 2, "hflip": True}, images, labels))


def test_old_dotted_overrides_mean_the_old_mapping():
    from cnntrain.config.compose import legacy_augment_overrides

    from helpers import compose_config

    assert legacy_augment_overrides(["seed=1", "dataset.augment.translate=2", "dataset.augment.hflip=true"]) == [
        "seed=1",
        "dataset.augment={translate: 2, hflip: true}",
    ]
    cfg = compose_config("dataset.augment.translate=2", "dataset.augment.hflip=true")
    assert augment_items(cfg.dataset.augment) == [("translate", {"pixels": 2}), ("hflip", {})]


def _state_after(value, images, labels) -> torch.Tensor:
    generator = torch.Generator().manual_seed(9)
    build_augment(value)(images, labels, generator, 40, 10)
    return generator.get_state()


def test_mixup_targets_sum_to_one_and_mix_two_labels_with_the_drawn_lambda():
    images, labels = batch(16)
    onehot = torch.nn.functional.one_hot(labels, 10).float()
    mixed, targets = mixup(images, onehot, 0.4, torch.Generator().manual_seed(1))
    assert torch.allclose(targets.sum(1), torch.ones(16))
    assert ((targets > 0).sum(1) == 2).all(), "neighbours have different labels: two classes each"
    lam = targets[torch.arange(16), labels]
    assert torch.allclose(targets[torch.arange(16), labels.roll(1)], 1 - lam)
    expected = lam[:, None, None, None] * images.float() + (1 - lam[:, None, None, None]) * images.roll(1, 0).float()
    assert (mixed.float() - expected).abs().max() <= 0.5 + 1e-4


def test_cutmix_lambda_is_the_pasted_area_fraction():
    """Each image a different flat grey: the pixels of the previous image's grey are the pasted box."""
    labels = torch.arange(16) % 10
    images = (torch.arange(16, dtype=torch.uint8) * 15 + 5)[:, None, None, None].repeat(1, 1, 16, 16)
    onehot = torch.nn.functional.one_hot(labels, 10).float()
    mixed, targets = cutmix(images, onehot, 1.0, torch.Generator().manual_seed(2))
    assert torch.allclose(targets.sum(1), torch.ones(16))
    pasted = (mixed == images.roll(1, 0)).flatten(1).float().mean(1)
    assert torch.allclose(targets[torch.arange(16), labels.roll(1)], pasted, atol=1e-6)
    assert (pasted > 0).sum() > 8


def test_both_mixing_ops_pick_one_per_batch():
    images, labels = batch(16)
    augment = build_augment(["mixup", "cutmix"], 10)
    kinds = set()
    for seed in range(12):
        out, _ = augment(images, labels, torch.Generator().manual_seed(seed))
        kinds.add("cutmix" if bool(((out == images) | (out == images.roll(1, 0))).all()) else "mixup")
    assert kinds == {"mixup", "cutmix"}


def test_soft_targets_train_with_label_smoothing():
    logits = torch.randn(4, 10, requires_grad=True)
    targets = torch.nn.functional.one_hot(torch.arange(4), 10).float() * 0.7 + 0.03
    loss = torch.nn.CrossEntropyLoss(label_smoothing=0.1)(logits, targets)
    loss.backward()
    assert torch.isfinite(loss) and logits.grad is not None


@pytest.mark.slow
def test_a_run_with_mixup_writes_the_preview_and_resumes_bit_identically(tmp_path, small_config, monkeypatch):
    """As tests/test_resume.py: a run stopped in epoch 2 and resumed equals the run that was never stopped."""
    from test_resume import without_seconds
    from test_run import read_summary

    policy = "dataset.augment=[{random_crop: 2},hflip,{random_erasing: 0.25},{mixup: 0.2},cutmix]"
    cfg = small_config("trainer.epochs=2", policy, "report.plots=true")
    run(cfg, tmp_path / "reference")
    assert (tmp_path / "reference" / "augment_preview.png").stat().st_size > 1000
    run_stopped_in_epoch(cfg, tmp_path / "stopped", 2, monkeypatch)
    resume_run(tmp_path / "stopped")
    rows = without_seconds(tmp_path / "stopped")
    assert rows == without_seconds(tmp_path / "reference") and 0 < float(rows[-1]["train/acc"]) <= 1
    assert read_summary(tmp_path / "stopped")["test"] == read_summary(tmp_path / "reference")["test"]


def test_report_plots_false_skips_the_preview(tmp_path, tiny_config):
    run(tiny_config("trainer.epochs=1", "report.plots=false", "dataset.augment=[hflip]"), tmp_path)
    assert not (tmp_path / "augment_preview.png").exists()
