"""`cnntrain-eval RUN_DIR`: test a finished run's checkpoint again, without training.

By default on the run's own test split; `KEY=VALUE` arguments change the dataset config (another root,
another dataset with the same classes). Prints the same tables as the end of training and writes
eval_summary.json into the run directory.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from cnntrain.config import check_device, validate
from cnntrain.console import Reporter, format_metric
from cnntrain.data import ensure_available, load_data
from cnntrain.device import resolve_device
from cnntrain.engine import test
from cnntrain.entry import ArgumentParser, run_command
from cnntrain.errors import ConfigError, DataError
from cnntrain.metrics import per_class_accuracy
from cnntrain.run_files import command_line, versions, write_summary
from cnntrain.saved_run import SavedRun, load_run
from cnntrain.train import make_loss, per_class_table, test_table

SUMMARY_NAME = "eval_summary.json"


def parser() -> ArgumentParser:
    p = ArgumentParser(prog="cnntrain-eval", description="Evaluate a finished run on the test split.")
    p.add_argument("run_dir", type=Path, help="a run directory written by cnntrain")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                   help="dataset config changes, e.g. dataset.root=/data or data_root=/data")
    p.add_argument("--checkpoint", default="best", help="best (default), last, or a path to a .pt file")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N | mps")
    p.add_argument("--batch-size", type=int, default=None, help="evaluation batch size (default: the run's)")
    return p


def apply_overrides(config: DictConfig, overrides: list[str]) -> DictConfig:
    """The run's config with KEY=VALUE changes; only data settings may change (the model is fixed)."""
    for item in overrides:
        key = item.split("=", 1)[0]
        if "=" not in item or not (key == "data_root" or key.startswith("dataset.")):
            raise ConfigError(f"override '{item}': only dataset.KEY=VALUE and data_root=VALUE are allowed here")
    try:
        merged = OmegaConf.merge(config, OmegaConf.from_dotlist(overrides))
    except OmegaConfBaseException as err:
        raise ConfigError(f"bad override: {str(err).splitlines()[0]}") from None
    return validate(merged)


def evaluate_run(saved: SavedRun, config: DictConfig, device: torch.device, batch_size: int,
                 reporter: Reporter) -> dict[str, Any]:
    """Test the saved model on config's dataset; print the tables; return the eval summary."""
    started = time.perf_counter()
    ensure_available(config.dataset)
    bundle = load_data(config.dataset, seed=config.seed, device=device)
    if list(bundle.classes) != saved.classes or tuple(bundle.input_shape) != saved.input_shape:
        raise DataError(f"dataset '{config.dataset.name}' has {len(bundle.classes)} classes of "
                        f"{'x'.join(map(str, bundle.input_shape))} images, but the model was trained on "
                        f"{len(saved.classes)} classes of {'x'.join(map(str, saved.input_shape))}")
    bundle.mean, bundle.std = saved.mean.to(device), saved.std.to(device)
    result, matrix = test(saved.model, bundle, make_loss(config), batch_size, tta=config.trainer.tta)
    accuracies = per_class_accuracy(matrix)
    reporter.print(per_class_table(bundle.classes, accuracies, matrix))
    reporter.print(test_table("evaluation", [
        ("checkpoint", f"{saved.checkpoint_path} (epoch {saved.epoch})"),
        ("dataset", f"{config.dataset.name}, {len(bundle.test)} test images"),
        ("test/acc", format_metric("acc", result.acc)),
        ("test/loss", format_metric("loss", result.loss)),
    ]))
    return {
        "checkpoint": str(saved.checkpoint_path), "epoch": saved.epoch, "dataset": config.dataset.name,
        "test": {"loss": result.loss, "acc": result.acc, "images": len(bundle.test)},
        "per_class_accuracy": dict(zip(bundle.classes, accuracies)), "confusion_matrix": matrix.tolist(),
        "classes": list(bundle.classes), "device": str(device), "elapsed_seconds": time.perf_counter() - started,
        "versions": versions(), "command": command_line(),
    }


def _main(argv: list[str]) -> None:
    args = parser().parse_intermixed_args(argv)
    check_device(args.device)
    device = resolve_device(args.device)
    saved = load_run(args.run_dir, args.checkpoint, device)
    config = apply_overrides(saved.config, args.overrides)
    batch_size = args.batch_size or int(config.trainer.eval_batch_size)
    if batch_size < 1:
        raise ConfigError(f"--batch-size={batch_size}: must be >= 1")
    reporter = Reporter()
    summary = evaluate_run(saved, config, device, batch_size, reporter)
    write_summary(args.run_dir / SUMMARY_NAME, summary)
    reporter.print(f"wrote {args.run_dir / SUMMARY_NAME}")


def main() -> None:
    """Console-script entry point of cnntrain-eval."""
    run_command(_main)


if __name__ == "__main__":
    main()
