"""Test a finished run's checkpoint again, without training: on its own test split, or on other data with the
same classes (dataset.KEY=VALUE changes). cnntrain-eval and `Run.evaluate()` both come here.

The test pass is the run's own (cnntrain.training.setup, then the task's test), so the numbers are those the
end of training printed for the same weights and data; the task prints its tables and shapes the summary.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from cnntrain.config.saved import destinations_notice, is_destination
from cnntrain.config.validate import validate
from cnntrain.data.loading import describe_data
from cnntrain.errors import CheckpointError, ConfigError, DataError
from cnntrain.files import safe_folder
from cnntrain.inference.load import SavedRun, load_run
from cnntrain.reporting.console import Reporter
from cnntrain.reporting.eval_page import write_eval_page
from cnntrain.reporting.provenance import command_line, versions
from cnntrain.reporting.run_dir import RunDir, write_summary
from cnntrain.reporting.text import markup
from cnntrain.training.setup import setup


def evaluate(
    run_dir: Path,
    overrides: list[str],
    reporter: Reporter,
    *,
    checkpoint: str = "best",
    device: str = "auto",
    batch_size: int | None = None,
) -> dict[str, Any]:
    """Test a run's checkpoint on its data (with dataset KEY=VALUE `overrides`), print the tables, write
    eval_summary.json into the run directory and return it (`batch_size` None: the run's trainer.eval_batch_size)."""
    saved = load_run(run_dir, checkpoint)
    check_saved_config(saved)
    config = apply_overrides(saved.config, overrides)
    given = [key for key in (item.split("=", 1)[0] for item in overrides) if is_destination(key)]
    notice = destinations_notice(list(saved.not_taken), f"the checkpoint {saved.checkpoint_path}", given)
    if notice:  # the same line as a resume's: which saved destinations (dataset.cache_dir, ...) were not taken
        print(notice, file=sys.stderr, flush=True)
    config.device = device
    paths = RunDir(run_dir)
    summary = evaluate_run(saved, config, batch_size or int(config.trainer.eval_batch_size), reporter, paths)
    write_summary(paths.eval_summary_json, summary)
    if summary.get("analysis") is not None and config.report.html:
        summary_page = write_eval_page(paths.root)
        if summary_page is not None:
            reporter.print(f"report: {markup(summary_page)}")
    return summary


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
        raise CheckpointError(
            f"{saved.checkpoint_path}: its 'config' is not valid today ({err}); evaluate a "
            f"checkpoint written by a run of this version"
        ) from None


def evaluate_run(
    saved: SavedRun, config: DictConfig, batch_size: int, reporter: Reporter, paths: RunDir | None = None
) -> dict[str, Any]:
    """Test the saved model on config's dataset, normalised as it was trained; print the tables; return the
    eval summary, with the task's analysis (the run's own) when the run's `paths` are given: its pictures go
    to RUN_DIR/eval/, made only once the test pass has succeeded."""
    started = time.perf_counter()
    found = describe_data(config.dataset)
    if found.classes != saved.classes or found.input_shape != saved.input_shape:
        raise DataError(
            f"dataset '{config.dataset.name}' has {len(found.classes)} classes of "
            f"{'x'.join(map(str, found.input_shape))} images, but the model was trained on "
            f"{len(saved.classes)} classes of {'x'.join(map(str, saved.input_shape))}"
        )
    description = found.with_stats(saved.description.mean, saved.description.std)
    run = setup(config, description, weights=saved.model.state_dict())
    bundle, device = run.data, run.device
    run.task.restore({"thresholds": saved.task.thresholds})
    result, matrix = run.task.test(run.model, bundle, run.loss_fn, batch_size, accel=run.accel, tta=config.trainer.tta)
    head = {"checkpoint": str(saved.checkpoint_path), "epoch": saved.epoch, "dataset": config.dataset.name}
    rows = [
        ("checkpoint", f"{saved.checkpoint_path} (epoch {saved.epoch})"),
        ("dataset", f"{config.dataset.name}, {len(bundle.test)} test images"),
    ]
    summary = {**head, **run.task.eval_summary(result, matrix, bundle.classes, reporter, rows)}
    if paths is not None:
        out = RunDir(safe_folder(paths.eval_dir, paths.root))
        summary["analysis"] = run.task.eval_analysis(config, out, bundle, result, matrix, run.model, reporter)
    return {
        **summary,
        "device": str(device),
        "elapsed_seconds": time.perf_counter() - started,
        "versions": versions(),
        "command": command_line(),
    }
