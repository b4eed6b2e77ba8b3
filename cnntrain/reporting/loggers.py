"""The loggers a run writes to, chosen by `logger` (one name or a list): csv (metrics.csv and steps.csv,
always), tensorboard, mlflow and wandb.

A logger gets the model summary once, a row of metrics per epoch and that epoch's optimizer steps (loss and
learning rate per step, read back from the device once per epoch), and the test metrics at the end; the
training loop and the report call every open logger the same way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from cnntrain.config.names import STEP_COLUMNS, epoch_columns
from cnntrain.files import safe_folder
from cnntrain.reporting.run_dir import MetricsCSV, RunDir, read_steps

if TYPE_CHECKING:
    from omegaconf import DictConfig


class Logger(Protocol):
    def log_model(self, table: Any) -> None: ...

    def log_epoch(self, row: dict[str, Any]) -> None: ...

    def log_steps(self, rows: list[dict[str, float]]) -> None:
        """One epoch's optimizer steps, each a row of STEP_COLUMNS (global step, fractional epoch, loss, lr)."""

    def log_test(self, metrics: dict[str, float], step: int, misclassified: Any) -> None: ...

    def close(self) -> None: ...


class CSVLogger:
    """metrics.csv, which every run writes (reproduce, resume and the sweep summary read it), and steps.csv."""

    def __init__(self, paths: RunDir, history: list[dict[str, Any]], task: str | None = None) -> None:
        self.csv = MetricsCSV(paths.metrics_csv, rows=history, columns=epoch_columns(task))
        resumed_at = history[-1]["epoch"] if history else 0
        self.steps = MetricsCSV(paths.steps_csv, rows=read_steps(paths.steps_csv, resumed_at), columns=STEP_COLUMNS)

    def log_model(self, table: Any) -> None:
        pass

    def log_epoch(self, row: dict[str, Any]) -> None:
        self.csv.append(row)

    def log_steps(self, rows: list[dict[str, float]]) -> None:
        self.steps.append(*rows)

    def log_test(self, metrics: dict[str, float], step: int, misclassified: Any) -> None:
        pass

    def close(self) -> None:
        pass


def open_loggers(cfg: DictConfig, paths: RunDir, history: list[dict[str, Any]]) -> list[Logger]:
    """csv (always), then each other logger `cfg.logger` names: tensorboard (event files under RUN_DIR/tensorboard),
    mlflow, wandb. Each of those is guarded: a failure, opening it included, is one warning and costs only that
    logger (cnntrain.reporting.trackers.Guarded). The trackers read their settings, parameters and tags from cfg."""
    from cnntrain.config.validate import chosen_loggers
    from cnntrain.reporting.trackers import Guarded

    names = chosen_loggers(cfg.logger)

    def tensorboard() -> Logger:
        from cnntrain.reporting.tensorboard import TensorBoardLogger

        return TensorBoardLogger(safe_folder(paths.tensorboard, paths.root))

    def mlflow() -> Logger:
        from cnntrain.reporting.mlflow_logger import MLflowLogger

        return MLflowLogger(cfg, paths)

    def wandb() -> Logger:
        from cnntrain.reporting.wandb_logger import WandbLogger

        return WandbLogger(cfg, paths)

    openers = {"tensorboard": tensorboard, "mlflow": mlflow, "wandb": wandb}
    loggers: list[Logger] = [CSVLogger(paths, history, cfg.dataset.get("task"))]
    loggers.extend(Guarded(name, openers[name]) for name in names if name in openers)
    return loggers
