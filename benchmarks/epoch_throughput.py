"""Epoch throughput: how close a cnntrain epoch comes to the model's pure compute bound.

In one process, for the model and batch size of a cnntrain config, it times the same number of
training images three ways and prints images/s and the ratios:

  (a) compute bound  forward + backward + optimizer step on one batch already in memory, repeated
  (b) cnntrain       engine.train_epoch on the real data path (uint8 device tensors, indexed batches,
                     normalised on the fly, loss/accuracy accumulated on the device)
  (c) tutorial       torchvision dataset with ToTensor + Normalize, through a DataLoader, same step

b/a near 1.0 means the data path costs nothing next to the model; c/a shows what the usual
pipeline costs. Machines here are noisy, so each method runs --rounds times, interleaved, and the
best round counts. Usage (any cnntrain override works):

    python benchmarks/epoch_throughput.py model=lenet trainer.batch_size=128
    python benchmarks/epoch_throughput.py model=cnn3 trainer.batch_size=256 trainer.channels_last=true
    python benchmarks/epoch_throughput.py model=cnn2 --images 20000 --rounds 3 --workers 2
    python benchmarks/epoch_throughput.py model=resnet18 model.small_input=true dataset=imagefolder \
        dataset.root=FOLDER_OF_32x32_RGB trainer.batch_size=128 --images 1280
"""

from __future__ import annotations

import argparse
import copy
import time

import torch
from torch import nn

from cnntrain.config.compose import compose_train
from cnntrain.config.validate import validate
from cnntrain.data.containers import TensorSplit
from cnntrain.reporting.console import EpochDisplay, Reporter
from cnntrain.training.epoch import train_epoch
from cnntrain.training.evaluation import unwrap
from cnntrain.training.optim import LRSchedule, build_optimizer
from cnntrain.training.setup import setup


def sync(device: torch.device) -> None:
    """Wait for queued GPU work, so a clock read after it measures the work itself."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overrides", nargs="*", help="cnntrain config overrides, e.g. model=cnn3")
    parser.add_argument("--images", type=int, default=0, help="training images per timing (default: whole split)")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds; the best of each counts")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers for the tutorial pipeline")
    args = parser.parse_args()

    cfg = validate(compose_train(args.overrides))
    run = setup(cfg)  # the data, model, precision and loss a cnntrain run of this config would use
    device, bundle, accel, loss_fn = run.device, run.data, run.accel, run.loss_fn
    n_images = min(args.images or len(bundle.train), len(bundle.train))
    bundle.train = TensorSplit(bundle.train.images[:n_images], bundle.train.labels[:n_images])
    batch_size = cfg.trainer.batch_size
    template = unwrap(run.model)

    def fresh() -> tuple[nn.Module, torch.optim.Optimizer]:
        model = accel.prepare_model(copy.deepcopy(template))
        return model, build_optimizer(model.parameters(), cfg.optimizer)

    def step(model: nn.Module, optimizer: torch.optim.Optimizer, images: torch.Tensor, labels: torch.Tensor) -> None:
        with accel.autocast():
            loss = loss_fn(model(accel.prepare_input(images)), labels)
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
            model, bundle, optimizer, LRSchedule(None, "none"), loss_fn, batch_size, generator, 0, display, accel=accel
        )
        bundle.train = full
        sync(device)
        start = time.perf_counter()
        train_epoch(
            model, bundle, optimizer, LRSchedule(None, "none"), loss_fn, batch_size, generator, 1, display, accel=accel
        )
        return n_images, time.perf_counter() - start

    def tutorial_pipeline() -> tuple[int, float]:
        import torchvision
        from torch.utils.data import DataLoader, Subset
        from torchvision import transforms

        transform = transforms.Compose(
            [transforms.ToTensor(), transforms.Normalize(list(cfg.dataset.mean), list(cfg.dataset.std))]
        )
        if cfg.dataset.get("kind") == "imagefolder":  # the usual torchvision folder reader, decoding per item
            full = torchvision.datasets.ImageFolder(f"{cfg.dataset.root}/train", transform=transform)
        else:
            dataset_class = getattr(torchvision.datasets, cfg.dataset.torchvision_class)
            full = dataset_class(cfg.dataset.root, train=True, download=False, transform=transform)
        dataset = Subset(full, range(n_images))
        loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=args.workers)
        model, optimizer = fresh()
        model.train()
        start = time.perf_counter()
        for images, labels in loader:
            step(model, optimizer, images.to(device), labels.to(device))
        sync(device)
        return n_images, time.perf_counter() - start

    methods = {
        "(a) compute bound": compute_bound,
        "(b) cnntrain epoch": cnntrain_epoch,
        "(c) tutorial DataLoader": tutorial_pipeline,
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
    for name, rate in best.items():
        print(f"  {name:<26} {rate:>9.0f} images/s   {n_images / rate:>7.2f} s per {n_images} images")
    a, b, c = best.values()
    print(f"  ratio b/a (cnntrain time / compute-bound time) = {a / b:.3f}")
    print(f"  ratio c/a (tutorial time / compute-bound time) = {a / c:.3f}")


if __name__ == "__main__":
    main()
