"""Augmentation throughput: what `dataset.augment` costs a cnntrain epoch, next to the model's compute bound and to
the same policy done per image in a DataLoader.

In one process, for the model, batch size and augmentation of a cnntrain config (the policy below when the config
has none), it times the same number of training images three ways and prints images/s and the ratios:

  (a) compute bound  forward + backward + optimizer step on one batch already in memory, no augmentation
  (b) cnntrain       engine.train_epoch with the policy: uint8 device tensors, augmented on the device per batch
  (c) per image      torchvision v2 transforms per sample in a Dataset, through a DataLoader (MixUp/CutMix on
                     each collated batch, as torchvision's docs do it), then the same step

The target is b/a within 1.10 for the recipe nets. Machines here are noisy, so each method runs --rounds times,
interleaved, and the best round counts. Usage (any cnntrain override works):

    python benchmarks/augment_throughput.py model=speedrun-cnn dataset=fashion
    python benchmarks/augment_throughput.py model=fast-cnn3 dataset=fashion --images 20000 --workers 2
    python benchmarks/augment_throughput.py model=fast-cnn3 "dataset.augment=[{random_crop: 2},hflip]"
"""

from __future__ import annotations

import argparse
import copy
import time
from typing import Any

import torch
from torch import nn

from cnntrain.config.compose import compose_train
from cnntrain.config.validate import validate
from cnntrain.data.augment import augment_items, build_augment, get_spec
from cnntrain.data.containers import TensorSplit
from cnntrain.reporting.console import EpochDisplay, Reporter
from cnntrain.training.epoch import train_epoch
from cnntrain.training.evaluation import unwrap
from cnntrain.training.optim import LRSchedule, build_optimizer
from cnntrain.training.setup import setup

# the policy timed when the config has none: the example
POLICY = (
    "dataset.augment=[{random_crop: 2},hflip,{randaugment: {num_ops: 2, magnitude: 9}},{random_erasing: 0.25},"
    "{mixup: 0.2}]"
)


def sync(device: torch.device) -> None:
    """Wait for queued GPU work, so a clock read after it measures the work itself."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def per_image_transforms(value: Any, size: tuple[int, int], num_classes: int) -> tuple[Any, Any]:
    """The v2 transforms of a `dataset.augment` value: (per-sample Compose, per-batch mixing or None)."""
    from torchvision.transforms import v2

    per_sample, mixing = [], []
    for name, given in augment_items(value):
        a = {**get_spec(name).arguments, **given}
        if name in ("translate", "random_crop"):
            per_sample.append(v2.RandomCrop(size, padding=a.get("pixels", a.get("padding"))))
        elif name == "hflip":
            per_sample.append(v2.RandomHorizontalFlip(a["p"]))
        elif name == "random_resized_crop":
            per_sample.append(v2.RandomResizedCrop(size, scale=tuple(a["scale"]), ratio=tuple(a["ratio"])))
        elif name == "randaugment":
            per_sample.append(v2.RandAugment(a["num_ops"], a["magnitude"], a["num_magnitude_bins"]))
        elif name == "trivialaugment":
            per_sample.append(v2.TrivialAugmentWide(a["num_magnitude_bins"]))
        elif name == "autoaugment":
            per_sample.append(v2.AutoAugment(v2.AutoAugmentPolicy(a["policy"])))
        elif name == "random_erasing":
            per_sample.append(v2.RandomErasing(a["p"], tuple(a["scale"]), tuple(a["ratio"]), a["value"]))
        elif name in ("mixup", "cutmix"):
            kind = v2.MixUp if name == "mixup" else v2.CutMix
            mixing.append(kind(alpha=a["alpha"], num_classes=num_classes))
    batch = None if not mixing else mixing[0] if len(mixing) == 1 else v2.RandomChoice(mixing)
    return v2.Compose(per_sample), batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overrides", nargs="*", help="cnntrain config overrides, e.g. model=fast-cnn3")
    parser.add_argument("--images", type=int, default=0, help="training images per timing (default: whole split)")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds; the best of each counts")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers for the per-image pipeline")
    args = parser.parse_args()

    cfg = validate(compose_train(args.overrides))
    if cfg.dataset.augment is None:  # neither the overrides nor the config (an experiment) name a policy
        cfg = validate(compose_train([*args.overrides, POLICY]))
    run = setup(cfg)  # the data, model, precision and loss a cnntrain run of this config would use
    device, bundle, accel, loss_fn = run.device, run.data, run.accel, run.loss_fn
    n_images = min(args.images or len(bundle.train), len(bundle.train))
    bundle.train = TensorSplit(bundle.train.images[:n_images], bundle.train.labels[:n_images])
    batch_size = cfg.trainer.batch_size
    num_classes = int(cfg.dataset.num_classes)
    augment = build_augment(cfg.dataset.augment, num_classes, bundle.input_shape)
    template = unwrap(run.model)

    def fresh() -> tuple[nn.Module, torch.optim.Optimizer]:
        model = accel.prepare_model(copy.deepcopy(template))
        return model, build_optimizer(model.parameters(), cfg.optimizer)

    def step(model: nn.Module, optimizer: torch.optim.Optimizer, images: torch.Tensor, targets: torch.Tensor) -> None:
        with accel.autocast():
            loss = loss_fn(model(accel.prepare_input(images)), targets)
        optimizer.zero_grad(set_to_none=True)
        accel.backward_and_step(loss, optimizer)

    def compute_bound() -> tuple[int, float]:
        model, optimizer = fresh()
        model.train()
        images = bundle.normalize(bundle.train.images[:batch_size])
        labels = bundle.train.labels[:batch_size]
        for _ in range(3):
            step(model, optimizer, images, labels)
        steps = -(-n_images // batch_size)
        sync(device)
        start = time.perf_counter()
        for _ in range(steps):
            step(model, optimizer, images, labels)
        sync(device)
        return steps * batch_size, time.perf_counter() - start

    quiet = Reporter(console=None)
    quiet.console.quiet = True

    def cnntrain_epoch() -> tuple[int, float]:
        model, optimizer = fresh()
        display = EpochDisplay(quiet, 1, progress=False, title="")
        generator = torch.Generator().manual_seed(cfg.seed)
        warm = TensorSplit(bundle.train.images[: 3 * batch_size], bundle.train.labels[: 3 * batch_size])
        full, bundle.train = bundle.train, warm
        train_epoch(
            model,
            bundle,
            optimizer,
            LRSchedule(None, "none"),
            loss_fn,
            batch_size,
            generator,
            0,
            display,
            accel=accel,
            augment=augment,
        )
        bundle.train = full
        sync(device)
        start = time.perf_counter()
        train_epoch(
            model,
            bundle,
            optimizer,
            LRSchedule(None, "none"),
            loss_fn,
            batch_size,
            generator,
            1,
            display,
            accel=accel,
            augment=augment,
        )
        return n_images, time.perf_counter() - start

    sample_transform, batch_transform = per_image_transforms(
        cfg.dataset.augment, tuple(bundle.input_shape[1:]), num_classes
    )
    cpu_images, cpu_labels = bundle.train.images[:].cpu(), bundle.train.labels.cpu()

    class PerImage(torch.utils.data.Dataset):
        """uint8 images augmented one at a time by v2, as a per-sample transform in a Dataset does."""

        def __len__(self) -> int:
            return n_images

        def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
            return sample_transform(cpu_images[i]), cpu_labels[i]

    def per_image_pipeline() -> tuple[int, float]:
        loader = torch.utils.data.DataLoader(PerImage(), batch_size=batch_size, shuffle=True, num_workers=args.workers)
        model, optimizer = fresh()
        model.train()
        start = time.perf_counter()
        for images, labels in loader:
            images, labels = images.to(device), labels.to(device)
            targets = labels
            if batch_transform is not None:
                images, targets = batch_transform(images.float(), labels)  # v2's MixUp/CutMix mix floats
            step(model, optimizer, bundle.normalize(images), targets)
        sync(device)
        return n_images, time.perf_counter() - start

    methods = {
        "(a) compute bound": compute_bound,
        "(b) cnntrain epoch": cnntrain_epoch,
        "(c) per-image v2 DataLoader": per_image_pipeline,
    }
    best: dict[str, float] = {}
    for _ in range(args.rounds):
        for name, method in methods.items():
            images, seconds = method()
            best[name] = max(best.get(name, 0.0), images / seconds)

    print(
        f"model {cfg.model.name}, batch {batch_size}, {n_images} images, device {device}, "
        f"{torch.get_num_threads()} threads, precision {cfg.trainer.precision}, "
        f"channels_last {cfg.trainer.channels_last}, best of {args.rounds} rounds"
    )
    print(f"  augment: {', '.join(augment.names)}")
    for name, rate in best.items():
        print(f"  {name:<30} {rate:>9.0f} images/s   {n_images / rate:>7.2f} s per {n_images} images")
    a, b, c = best.values()
    print(f"  ratio b/a (cnntrain time / compute-bound time) = {a / b:.3f}   (target: within 1.10)")
    print(f"  ratio c/a (per-image time / compute-bound time) = {a / c:.3f}")


if __name__ == "__main__":
    main()
