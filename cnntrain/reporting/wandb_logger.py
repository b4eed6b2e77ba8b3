"""The Weights & Biases logger (`logger=[csv,wandb]`): one W&B run per cnntrain run, offline unless asked.

The mode is `wandb.mode`, else `$WANDB_MODE`, else offline: the run is written under RUN_DIR/wandb/ and one
line after the run says how to upload it (`wandb sync RUN_DIR/wandb/offline-run-...`). A sweep's jobs share a
group named after the sweep directory (see cnntrain.reporting.trackers), each job its own run, finished
before the next job starts. The run id is kept in the run directory's trackers.json: a resumed run continues
the same W&B run. The wandb package is an optional extra, imported only here, and only once a run opens it.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from cnntrain.config.names import MONITORS, STEP_COLUMNS
from cnntrain.config.schema import WandbConfig
from cnntrain.reporting.run_dir import RunDir
from cnntrain.reporting.trackers import (
    artifact_files,
    place_of,
    run_outcome,
    run_tags,
    save_tracker_id,
    table_text,
    tracker_id,
)

TRACKER = "wandb"
DEFAULT_MODE = "offline"
DEFAULT_PROJECT = "cnntrain"
MAX_TAG_LENGTH = 64  # W&B refuses longer tags
EXIT_CODES = {"done": 0, "stopped": 130, "failed": 1}
EPOCH_AXIS, STEP_AXIS = STEP_COLUMNS[1], STEP_COLUMNS[0]  # W&B's x axes: the (fractional) epoch, the global step


class WandbLogger:
    """One W&B run: the config, tags, every optimizer step's loss and learning rate (W&B's step = the global
    optimizer step, each row with its fractional epoch), every epoch's metrics (x axis: epoch), the test
    metrics (also in the run's summary), and at the end the run's pictures and summary.json as files."""

    def __init__(self, settings: WandbConfig, config: dict[str, Any], paths: RunDir) -> None:
        """`config`: the run's resolved config as plain data (the W&B run's config and tags)."""
        import wandb

        self.paths = paths
        place = place_of(paths)
        saved = tracker_id(paths, TRACKER)
        run_id = saved["run_id"] if saved and isinstance(saved.get("run_id"), str) else None  # None: W&B makes one
        tags = [
            f"{key}:{value}"[:MAX_TAG_LENGTH]
            for key, value in run_tags(config, place).items()
            if key not in ("run_dir", "overrides")
        ]
        self.run = wandb.init(
            project=settings.project or os.environ.get("WANDB_PROJECT") or DEFAULT_PROJECT,
            entity=settings.entity,
            mode=settings.mode or os.environ.get("WANDB_MODE") or DEFAULT_MODE,
            dir=str(paths.root),
            id=run_id,
            resume="allow",
            name=place.name,
            group=place.sweep,
            job_type="sweep-job" if place.sweep else "run",
            tags=tags,
            notes=str(place.run_dir),
            config=config,
            allow_val_change=True,
            reinit="finish_previous",
            settings=wandb.Settings(silent=True, console="off"),
        )
        save_tracker_id(paths, TRACKER, {"run_id": self.run.id, "project": self.run.project})
        self.run.define_metric(EPOCH_AXIS)
        for name in MONITORS:
            self.run.define_metric(name, step_metric=EPOCH_AXIS)
        self.with_checkpoint = settings.log_checkpoint
        self.step = 0  # W&B's step only grows: epoch rows and test metrics join the last optimizer step's row

    def log_model(self, table: Any) -> None:
        self._save_text("model.txt", table_text(table))

    def log_steps(self, rows: list[dict[str, float]]) -> None:
        for row in rows:
            self.step = max(self.step, int(row[STEP_AXIS]))
            self.run.log({key: row[key] for key in STEP_COLUMNS if key != STEP_AXIS}, step=self.step)

    def log_epoch(self, row: dict[str, Any]) -> None:
        self.step = max(self.step, int(row[EPOCH_AXIS]))  # a run without step rows: the epoch is the step
        self.run.log(
            {EPOCH_AXIS: row[EPOCH_AXIS], **{name: row[name] for name in MONITORS if name in row}}, step=self.step
        )

    def log_test(self, metrics: dict[str, float], step: int, misclassified: Any) -> None:
        self.run.log(dict(metrics), step=max(self.step, step))
        self.run.summary.update(dict(metrics))

    def close(self) -> None:
        """Save the run's files with the W&B run, finish it, and (offline) say how to upload it."""
        outcome = run_outcome(self.paths)
        for path, folder in artifact_files(self.paths, self.with_checkpoint):
            self._save_file(path, folder)
        offline = self.run.settings.mode in ("offline", "dryrun")
        sync_dir = self.run.settings.sync_dir
        self.run.finish(exit_code=EXIT_CODES[outcome])
        if offline:
            print(f"wandb: offline run in {sync_dir}; upload it with: wandb sync {sync_dir}", flush=True)

    def _save_text(self, name: str, text: str) -> None:
        target = Path(self.run.dir) / name
        target.write_text(text, encoding="utf-8")
        self.run.save(str(target), base_path=self.run.dir, policy="now")

    def _save_file(self, path: Path, folder: str | None) -> None:
        """A copy inside the W&B run's files (a link to a file outside them makes W&B print a warning)."""
        target = Path(self.run.dir) / (folder or "") / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
        self.run.save(str(target), base_path=self.run.dir, policy="now")
