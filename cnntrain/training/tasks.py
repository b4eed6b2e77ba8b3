"""The task a run learns, chosen once from the data's description: one class per image (SingleLabel,
cnntrain.training.single_label) or a set of labels per image (MultiLabel, cnntrain.training.multi_label).

A task owns everything that depends on the label kind: the loss with its class weights, the decision rule, how
test-time augmentation merges the views, the evaluation and test passes, the report writer, cnntrain-eval's
tables, the export head and cnntrain-predict's output. The loop, the run and the inference code ask the task and
never which kind they have; `task_for` is the one place that reads dataset.task.
"""

from __future__ import annotations

from typing import Any, Protocol

import torch
from omegaconf import DictConfig
from torch import nn

from cnntrain.config.names import TASK_MULTILABEL
from cnntrain.data.loading import DataBundle
from cnntrain.reporting.console import Reporter
from cnntrain.reporting.metrics import EvalResult
from cnntrain.reporting.run_dir import RunDir
from cnntrain.training.multi_label import MultiLabel
from cnntrain.training.single_label import SINGLE_LABEL


class Task(Protocol):
    name: str
    thresholds: list[float]
    write_report: Any  # the end of a run (cnntrain.reporting.report or .label_report), called with its arguments
    merge_views: Any  # test-time augmentation: the views' mean outputs -> the outputs the loss and metrics take

    def check_config(self, cfg: DictConfig) -> None: ...
    def loss(self, cfg: DictConfig, data: DataBundle, device: torch.device) -> nn.Module: ...
    def monitors(self, cfg: DictConfig) -> tuple[str, str]: ...
    def hits(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor: ...
    def evaluate(self, *args: Any, **kwargs: Any) -> Any: ...
    def test(self, *args: Any, **kwargs: Any) -> Any: ...
    def restore(self, checkpoint: dict[str, Any]) -> None: ...
    def eval_summary(
        self,
        result: EvalResult,
        matrix: torch.Tensor | None,
        classes: list[str],
        reporter: Reporter,
        head: list[tuple[str, str]],
    ) -> dict[str, Any]: ...
    def eval_analysis(
        self,
        cfg: DictConfig,
        paths: RunDir,
        data: DataBundle,
        result: EvalResult,
        matrix: torch.Tensor | None,
        model: nn.Module,
        reporter: Reporter,
    ) -> dict[str, Any] | None: ...
    def probabilities(self, outputs: torch.Tensor) -> torch.Tensor: ...
    def export_head(self) -> nn.Module: ...
    def predictions(self, probabilities: torch.Tensor, classes: list[str], top_k: int) -> list[Any]: ...
    def export_output(self, classes: list[str], log_probs: bool) -> dict[str, Any]: ...
    def export_tta_note(self) -> str: ...


def task_for(task: str | None, cfg: DictConfig | None = None, num_classes: int = 0) -> Task:
    """The task of a dataset.task value (null and single: one class per image); a multi-label task takes
    trainer.threshold from `cfg`."""
    if task == TASK_MULTILABEL:
        threshold = cfg.trainer.get("threshold", 0.5) if cfg is not None else 0.5
        return MultiLabel(threshold, num_classes)
    return SINGLE_LABEL
