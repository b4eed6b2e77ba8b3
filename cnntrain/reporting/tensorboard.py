"""The optional TensorBoard logger (`logger=tensorboard`): per-epoch scalars, the model, the misclassified grid,
and at the end the run's pictures (report/*) and where its report page is.

metrics.csv is written either way; this adds event files under RUN_DIR/tensorboard/ for
`tensorboard --logdir outputs`. The tensorboard package is an optional extra, imported only here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cnntrain.config.names import SCALARS, STEP_LOSS, TASK_EPOCH_METRICS
from cnntrain.reporting.run_dir import RunDir
from cnntrain.reporting.trackers import table_text


class TensorBoardLogger:
    """A SummaryWriter with the few calls a run makes; steps are epoch numbers."""

    def __init__(self, log_dir: Path, paths: RunDir | None = None) -> None:
        from torch.utils.tensorboard import SummaryWriter  # the optional tensorboard package, needed only here

        self.writer = SummaryWriter(log_dir=str(log_dir))
        self.paths = paths

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
        self.writer.add_text("model/summary", "\n".join("    " + line for line in table_text(table).splitlines()))

    def log_test(self, metrics: dict[str, float], step: int, misclassified: Any) -> None:
        """Test metrics at the last epoch's step; `misclassified()` draws the grid of wrong test images."""
        for key, value in metrics.items():
            self.writer.add_scalar(key, value, step)
        figure = misclassified()
        if figure is not None:
            self.writer.add_figure("test/misclassified", figure, step)

    def close(self) -> None:
        """The run's pictures as images under report/ (TensorBoard keeps no files: the page is named as text)."""
        if self.paths is not None:
            self._log_report(self.paths)
        self.writer.close()

    def _log_report(self, paths: RunDir) -> None:
        import numpy as np
        from PIL import Image  # only when a run closes: Pillow is what decodes the run's own PNGs

        for picture in paths.tracked_pictures:
            if picture.is_file():
                with Image.open(picture) as image:
                    pixels = np.asarray(image.convert("RGB"))
                self.writer.add_image(f"report/{picture.stem}", pixels, dataformats="HWC")
        if paths.report_html.is_file():
            self.writer.add_text("report/page", f"the run's report page: `{paths.report_html.resolve()}`")
