"""The loggers a run writes to, chosen by `logger` (one name or a list): csv (metrics.csv and steps.csv,
always), tensorboard, mlflow and wandb.

A logger gets the model summary once, a row of metrics per epoch and that epoch's optimizer steps (loss and
learning rate per step, read back from the device once per epoch), and the test metrics at the end; the
training loop and the report call every open logger the same way.
"""

from __future__ import annotations

import importlib.util
from typing import Any, Protocol

from cnntrain.config.names import STEP_COLUMNS, epoch_columns
from cnntrain.config.schema import MLflowConfig, WandbConfig
from cnntrain.errors import ConfigError
from cnntrain.files import safe_folder
from cnntrain.reporting.mlflow_logger import MLflowLogger
from cnntrain.reporting.run_dir import MetricsCSV, RunDir, read_steps
from cnntrain.reporting.tensorboard import TensorBoardLogger
from cnntrain.reporting.trackers import Guarded
from cnntrain.reporting.wandb_logger import WandbLogger

INSTEAD = {
    "tensorboard": "or use logger=csv",
    "mlflow": "or leave mlflow out of logger",
    "wandb": "or leave wandb out of logger",
}
"""The loggers that need a package of their own (an optional extra named as the logger), and the way out."""


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


def open_loggers(
    names: list[str],
    paths: RunDir,
    history: list[dict[str, Any]],
    *,
    task: str | None,
    config: dict[str, Any],
    mlflow: MLflowConfig,
    wandb: WandbConfig,
) -> list[Logger]:
    """csv (always), then each other logger `names` lists (the validated `logger`): tensorboard (event files under
    RUN_DIR/tensorboard), mlflow, wandb. Each of those is guarded: a failure, opening it included, is one warning
    and costs only that logger (cnntrain.reporting.trackers.Guarded). The trackers get their own section and the
    run's resolved `config` as plain data, which they record as its parameters."""

    def tensorboard() -> Logger:
        check_available("tensorboard")
        return TensorBoardLogger(safe_folder(paths.tensorboard, paths.root), paths)

    openers = {
        "tensorboard": tensorboard,
        "mlflow": lambda: MLflowLogger(mlflow, config, paths),
        "wandb": lambda: WandbLogger(wandb, config, paths),
    }
    loggers: list[Logger] = [CSVLogger(paths, history, task)]
    loggers.extend(Guarded(name, openers[name]) for name in names if name in openers)
    return loggers


def check_available(name: str) -> None:
    """Fail before training, not after it, when the package a chosen logger needs is missing."""
    if importlib.util.find_spec(name) is None:
        raise ConfigError(f"logger={name} needs the {name} package: pip install 'cnntrain[{name}]' ({INSTEAD[name]})")
