"""The Hydra callback at the end of a multirun, registered as hydra.callbacks.sweep_summary in configs/train.yaml
(the only callback cnntrain's guard lets a composition hold: cnntrain.config.guard).

Hydra calls it once all jobs are done, whatever the sweeper or launcher; it reads the sweep's folder and the
report.* switches from the config and leaves the rest to cnntrain.reporting.sweep_summary.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from cnntrain.reporting.sweep_summary import report_sweep


class SweepSummary(Callback):
    """After a multirun: the summary table, sweep_summary.csv, its picture and the sweep's report.html."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        report_sweep(
            Path(config.hydra.sweep.dir),
            plots=bool(OmegaConf.select(config, "report.plots", default=True)),  # false: no matplotlib
            html=bool(OmegaConf.select(config, "report.html", default=True)),
        )
