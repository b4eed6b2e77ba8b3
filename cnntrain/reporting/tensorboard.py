"""The optional TensorBoard logger (`logger=tensorboard`): per-epoch scalars, the model, the misclassified grid.

metrics.csv is written either way; this adds event files under RUN_DIR/tensorboard/ for
`tensorboard --logdir outputs`. The tensorboard package is an optional extra, imported only here.
"""

from __future__ import annotations

import importlib.util
import io
from pathlib import Path
from typing import Any

from rich.console import Console

from cnntrain.config.names import SCALARS, STEP_LOSS, TASK_EPOCH_METRICS
from cnntrain.errors import ConfigError


def check_available() -> None:
    """Fail before training, not after it, when the package is missing."""
    if importlib.util.find_spec("tensorboard") is None:
        raise ConfigError("logger=tensorboard needs the tensorboard package: pip install 'cnntrain[tensorboard]' "
                          "(or use logger=csv)")


class TensorBoardLogger:
    """A SummaryWriter with the few calls a run makes; steps are epoch numbers."""

    def __init__(self, log_dir: Path) -> None:
        check_available()
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(log_dir))

    def log_epoch(self, row: dict[str, Any]) -> None:
        for key in (*SCALARS, *TASK_EPOCH_METRICS):
            if key != "lr" and key in row:  # the learning rate goes per step (log_steps), on the step axis
                self.writer.add_scalar(key, row[key], row["epoch"])
        self.writer.flush()

    def log_steps(self, rows: list[dict[str, float]]) -> None:
        for row in rows:
            self.writer.add_scalar(STEP_LOSS, row[STEP_LOSS], int(row["step"]))
            self.writer.add_scalar("lr", row["lr"], int(row["step"]))

    def log_model(self, table: Any) -> None:
        """The model summary table as monospaced text (TensorBoard renders markdown)."""
        buffer = io.StringIO()
        Console(file=buffer, width=120, no_color=True, force_terminal=False, force_jupyter=False).print(table)
        self.writer.add_text("model/summary", "\n".join("    " + line for line in buffer.getvalue().splitlines()))

    def log_test(self, metrics: dict[str, float], step: int, misclassified: Any) -> None:
        """Test metrics at the last epoch's step; `misclassified()` draws the grid of wrong test images."""
        for key, value in metrics.items():
            self.writer.add_scalar(key, value, step)
        figure = misclassified()
        if figure is not None:
            self.writer.add_figure("test/misclassified", figure, step)

    def close(self) -> None:
        self.writer.close()
