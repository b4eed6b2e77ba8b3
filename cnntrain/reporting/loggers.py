"""The loggers a run writes to, chosen by `logger`: csv (metrics.csv, always) and optionally tensorboard.

A logger gets the model summary once, a row of metrics per epoch, and the test metrics at the end;
the training loop and the report call every open logger the same way.
"""

from __future__ import annotations

from typing import Any, Protocol

from cnntrain.reporting.run_dir import MetricsCSV, RunDir


class Logger(Protocol):
    def log_model(self, table: Any) -> None: ...

    def log_epoch(self, row: dict[str, Any]) -> None: ...

    def log_test(self, metrics: dict[str, float], step: int, misclassified: Any) -> None: ...

    def close(self) -> None: ...


class CSVLogger:
    """metrics.csv, which every run writes: reproduce, resume and the sweep summary read it."""

    def __init__(self, paths: RunDir, history: list[dict[str, Any]]) -> None:
        self.csv = MetricsCSV(paths.metrics_csv, rows=history)

    def log_model(self, table: Any) -> None:
        pass

    def log_epoch(self, row: dict[str, Any]) -> None:
        self.csv.append(row)

    def log_test(self, metrics: dict[str, float], step: int, misclassified: Any) -> None:
        pass

    def close(self) -> None:
        pass


def open_loggers(name: str, paths: RunDir, history: list[dict[str, Any]]) -> list[Logger]:
    """csv, plus tensorboard event files under RUN_DIR/tensorboard when `logger=tensorboard`."""
    loggers: list[Logger] = [CSVLogger(paths, history)]
    if name == "tensorboard":
        from cnntrain.reporting.tensorboard import TensorBoardLogger

        loggers.append(TensorBoardLogger(paths.tensorboard))
    return loggers
