"""The single-label task: one class per image, a softmax over the classes.

It owns what differs from a set of labels per image (cnntrain.training.multi_label): the loss (cross-entropy on
logits or NLL on log-probabilities, with class weights), the decision rule (argmax), how test-time augmentation
merges the two views (log-probabilities of their mean), the test pass with its confusion matrix, the report
writer, the tables of cnntrain-eval, the export head and cnntrain-predict's output. The loop, the run and the
inference code ask the task (cnntrain.training.tasks) and never which kind it is.
"""

from __future__ import annotations

from typing import Any

import torch
from omegaconf import DictConfig
from torch import nn

from cnntrain.config.names import TASK_SINGLE, VAL_MAP
from cnntrain.data.augment import dominant_class, mixes
from cnntrain.data.balance import train_class_weights
from cnntrain.data.loading import DataBundle
from cnntrain.errors import ConfigError
from cnntrain.models.builder import ends_with_log_softmax
from cnntrain.models.tta import log_probabilities
from cnntrain.reporting.console import Reporter, format_metric
from cnntrain.reporting.metrics import EvalResult, per_class_accuracy
from cnntrain.reporting.report import Tested, analyse, report
from cnntrain.reporting.run_dir import RunDir
from cnntrain.reporting.tables import key_value_table, most_confused_table, per_class_table
from cnntrain.training import evaluation
from cnntrain.training.weighted_loss import ClassWeightedLoss


class SingleLabel:
    """One class per image: softmax cross-entropy (or NLL), argmax predictions, accuracy and the confusion matrix."""

    name = TASK_SINGLE
    thresholds: list[float] = []
    write_report = staticmethod(report)  # the end of a run: cnntrain.reporting.report
    merge_views = staticmethod(log_probabilities)  # TTA: log-probabilities of the views' mean

    # -- setup ---------------------------------------------------------------------------------------------------

    def check_config(self, cfg: DictConfig) -> None:
        make_loss(cfg)
        self.monitors(cfg)

    def loss(self, cfg: DictConfig, data: DataBundle, device: torch.device) -> nn.Module:
        return make_loss(cfg, train_class_weights(cfg.trainer, data.train.labels, data.classes), device)

    def monitors(self, cfg: DictConfig) -> tuple[str, str]:
        watched = (cfg.trainer.checkpoint.monitor, cfg.trainer.early_stopping.monitor, cfg.scheduler.get("monitor"))
        if VAL_MAP in watched:
            raise ConfigError(
                f"val/map is measured in multi-label runs only, and dataset {cfg.dataset.name} gives "
                f"one class per image: monitor val/acc or val/loss"
            )
        return cfg.trainer.checkpoint.monitor, cfg.trainer.checkpoint.mode

    # -- training and evaluation ---------------------------------------------------------------------------------

    def hits(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return (logits.argmax(dim=1) == dominant_class(targets)).sum()

    def evaluate(self, *args: Any, **kwargs: Any) -> Any:
        return evaluation.evaluate(*args, **kwargs)

    def test(self, *args: Any, **kwargs: Any) -> Any:
        return evaluation.test(*args, **kwargs)

    def restore(self, checkpoint: dict[str, Any]) -> None:
        """Nothing beyond the weights."""

    def eval_summary(
        self,
        result: EvalResult,
        matrix: torch.Tensor | None,
        classes: list[str],
        reporter: Reporter,
        head: list[tuple[str, str]],
    ) -> dict[str, Any]:
        """cnntrain-eval: print the per-class and result tables (after the `head` rows), return the summary's keys."""
        assert matrix is not None
        accuracies = per_class_accuracy(matrix)
        reporter.print(per_class_table(classes, accuracies, matrix))
        reporter.print(
            key_value_table(
                "evaluation",
                [
                    *head,
                    ("test/acc", format_metric("acc", result.acc)),
                    ("test/loss", format_metric("loss", result.loss)),
                ],
            )
        )
        return {
            "test": {"loss": result.loss, "acc": result.acc, "images": len(result.labels)},
            "per_class_accuracy": dict(zip(classes, accuracies)),
            "confusion_matrix": matrix.tolist(),
            "classes": list(classes),
        }

    def eval_analysis(
        self,
        cfg: DictConfig,
        paths: RunDir,
        data: DataBundle,
        result: EvalResult,
        matrix: torch.Tensor | None,
        model: nn.Module,
        reporter: Reporter,
    ) -> dict[str, Any] | None:
        """cnntrain-eval's analysis: the run's own (reporting.report.analyse) over this test pass, its pictures in
        `paths`, the most confused pairs printed as at the end of a run; None with report.analysis=false."""
        if not cfg.report.analysis or result.table is None or matrix is None:
            return None
        analysis = analyse(cfg, paths, data, Tested(best=result, last=result, matrix=matrix, model=model))
        if analysis["most_confused"]:
            reporter.print(most_confused_table(analysis["most_confused"]))
        return analysis

    # -- a finished run's model ----------------------------------------------------------------------------------

    def probabilities(self, outputs: torch.Tensor) -> torch.Tensor:
        """Each class's probability, from logits or log-probabilities alike."""
        return outputs.softmax(dim=1)

    def export_head(self) -> nn.Module:
        """What an exported model puts after the network: nothing (its outputs are logits or log-probabilities)."""
        return nn.Identity()

    def predictions(self, probabilities: torch.Tensor, classes: list[str], top_k: int) -> list[Any]:
        """cnntrain-predict's answer per image: the top-k (class, probability) pairs, most likely first."""
        values, indices = probabilities.topk(min(top_k, probabilities.shape[1]), dim=1)
        return [
            [(classes[i], float(p)) for p, i in zip(row_p.tolist(), row_i.tolist())]
            for row_p, row_i in zip(values.cpu(), indices.cpu())
        ]

    def export_output(self, classes: list[str], log_probs: bool) -> dict[str, Any]:
        """The exported file's outputs, for its JSON contract."""
        return {"name": "outputs", "kind": "log_probabilities" if log_probs else "logits", "classes": classes}

    def export_tta_note(self) -> str:
        """How to repeat the run's trainer.tta=hflip with the exported (one-pass) file."""
        return (
            "the run's metrics averaged each prediction with the mirrored image's (trainer.tta=hflip); this "
            "file is one pass: run it on the image and on its left-right mirror and average the log-softmax "
            "outputs"
        )


SINGLE_LABEL = SingleLabel()


def make_loss(cfg: DictConfig, weights: list[float] | None = None, device: torch.device | None = None) -> nn.Module:
    """cross_entropy on logits, or NLL for models that end in log_softmax (auto picks by the last layer),
    weighted by class when `weights` are given (see cnntrain.training.weighted_loss).

    NLL on logits trains without an error but not as meant, NLL has no label smoothing and takes no mixed
    (mixup/cutmix) targets: all three are refused.
    """
    kind, smoothing = cfg.trainer.loss, cfg.trainer.label_smoothing
    log_probs = ends_with_log_softmax(cfg.model.layers)
    if kind == "auto":
        kind = "nll" if log_probs else "cross_entropy"
    if kind == "nll" and not log_probs:
        raise ConfigError(
            f"trainer.loss=nll needs a model that ends in log_softmax, and model '{cfg.model.name}' "
            f"ends in logits; use trainer.loss=cross_entropy (or auto)"
        )
    if kind == "nll" and mixes(cfg.dataset.augment):
        raise ConfigError(
            f"dataset.augment has mixup/cutmix and model '{cfg.model.name}' ends in log_softmax, so "
            f"its loss is nll: NLLLoss takes class indices, not mixed targets; use "
            f"trainer.loss=cross_entropy and a model that ends in logits"
        )
    if kind == "nll" and smoothing > 0:
        raise ConfigError(
            f"trainer.label_smoothing={smoothing} works with the cross_entropy loss only; model "
            f"'{cfg.model.name}' ends in log_softmax, so its loss is nll: set trainer.label_smoothing=0"
        )
    if weights is not None:
        return ClassWeightedLoss(kind, torch.tensor(weights, dtype=torch.float32, device=device), smoothing)
    if kind == "nll":
        return nn.NLLLoss()
    return nn.CrossEntropyLoss(label_smoothing=smoothing)
