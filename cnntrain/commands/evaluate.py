"""`cnntrain-eval RUN_DIR`: test a finished run's checkpoint again, without training.

By default on the run's own test split; `KEY=VALUE` arguments change the dataset config (another root,
another dataset with the same classes). Prints the same tables as the end of training and writes
eval_summary.json into the run directory.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from cnntrain.commands.entry import ArgumentParser, in_process_only, run_command
from cnntrain.config.validate import check_device, validate
from cnntrain.data.loading import describe_data
from cnntrain.errors import CheckpointError, ConfigError, DataError
from cnntrain.reporting.console import Reporter, format_metric
from cnntrain.reporting.label_report import label_evaluation
from cnntrain.reporting.metrics import per_class_accuracy
from cnntrain.reporting.provenance import command_line, versions
from cnntrain.reporting.run_dir import RunDir, write_summary
from cnntrain.reporting.tables import key_value_table, per_class_table
from cnntrain.reporting.text import markup
from cnntrain.training.saved_run import SavedRun, load_run
from cnntrain.training.setup import setup


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


def check_saved_config(saved: SavedRun) -> None:
    """Validate the checkpoint's config alone first: a bad saved value is blamed on the file, not on the overrides."""
    try:
        validate(saved.config)
    except ConfigError as err:
        raise CheckpointError(f"{saved.checkpoint_path}: its 'config' is not valid today ({err}); evaluate a "
                              f"checkpoint written by a run of this version") from None


def evaluate_run(saved: SavedRun, config: DictConfig, batch_size: int, reporter: Reporter) -> dict[str, Any]:
    """Test the saved model on config's dataset, normalised as it was trained; print the tables; return the
    eval summary."""
    started = time.perf_counter()
    found = describe_data(config.dataset)
    if found.classes != saved.classes or found.input_shape != saved.input_shape:
        raise DataError(f"dataset '{config.dataset.name}' has {len(found.classes)} classes of "
                        f"{'x'.join(map(str, found.input_shape))} images, but the model was trained on "
                        f"{len(saved.classes)} classes of {'x'.join(map(str, saved.input_shape))}")
    description = found.with_stats(saved.description.mean, saved.description.std)
    run = setup(config, description, weights=saved.model.state_dict())
    bundle, device = run.data, run.device
    if saved.thresholds is not None:
        run.task.restore({"thresholds": saved.thresholds})
    result, matrix = run.task.test(run.model, bundle, run.loss_fn, batch_size, accel=run.accel,
                                   tta=config.trainer.tta)
    head = {"checkpoint": str(saved.checkpoint_path), "epoch": saved.epoch, "dataset": config.dataset.name}
    if matrix is None:  # a set of labels per image: the multi-label tables and summary
        return {**head, **label_evaluation(result, bundle.classes, reporter, [
            ("checkpoint", f"{saved.checkpoint_path} (epoch {saved.epoch})"),
            ("dataset", f"{config.dataset.name}, {len(bundle.test)} test images")]),
            "device": str(device), "elapsed_seconds": time.perf_counter() - started, "versions": versions(),
            "command": command_line()}
    accuracies = per_class_accuracy(matrix)
    reporter.print(per_class_table(bundle.classes, accuracies, matrix))
    reporter.print(key_value_table("evaluation", [
        ("checkpoint", f"{saved.checkpoint_path} (epoch {saved.epoch})"),
        ("dataset", f"{config.dataset.name}, {len(bundle.test)} test images"),
        ("test/acc", format_metric("acc", result.acc)),
        ("test/loss", format_metric("loss", result.loss)),
    ]))
    return {
        **head, "test": {"loss": result.loss, "acc": result.acc, "images": len(bundle.test)},
        "per_class_accuracy": dict(zip(bundle.classes, accuracies)), "confusion_matrix": matrix.tolist(),
        "classes": list(bundle.classes), "device": str(device), "elapsed_seconds": time.perf_counter() - started,
        "versions": versions(), "command": command_line(),
    }


def _main(argv: list[str]) -> None:
    in_process_only()
    args = parser().parse_intermixed_args(argv)
    if args.batch_size is not None and args.batch_size < 1:
        raise ConfigError(f"--batch-size={args.batch_size}: must be >= 1 (leave it out to use the run's "
                          f"trainer.eval_batch_size)")
    check_device(args.device)
    saved = load_run(args.run_dir, args.checkpoint)
    check_saved_config(saved)
    config = apply_overrides(saved.config, args.overrides)
    config.device = args.device
    batch_size = args.batch_size if args.batch_size is not None else int(config.trainer.eval_batch_size)
    reporter = Reporter()
    summary = evaluate_run(saved, config, batch_size, reporter)
    path = RunDir(args.run_dir).eval_summary_json
    write_summary(path, summary)
    reporter.print(f"wrote {markup(path)}")


def main() -> None:
    """Console-script entry point of cnntrain-eval."""
    run_command(_main)


if __name__ == "__main__":
    main()
