"""The multi-label task: several labels per image, a sigmoid per label.

It owns what differs from one class per image (cnntrain.training.single_label): the loss (BCE with logits;
trainer.class_weights as per-label positive weights; label smoothing towards 1/2), the targets (float multi-hot
[N, K], mixed as they are by mixup/cutmix), the prediction rule (a label is predicted when its probability reaches
its threshold), how test-time augmentation merges the views (the mean logits), the metrics
(cnntrain.reporting.label_metrics), which need every score of a split: a data-parallel run gathers the scores from
the ranks and computes them once, so they are exact; the report writer (cnntrain.reporting.label_report), the
export head (a sigmoid per label) and cnntrain-predict's label sets. The loop, the run and the inference code ask
the task (cnntrain.training.tasks) and never which kind it is.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import nn

from cnntrain.config.names import BALANCED, TASK_MULTILABEL, THRESHOLD_TUNE, VAL_MAP, label_set_monitor
from cnntrain.config.validate import check_class_weights
from cnntrain.data.balance import check_every_class
from cnntrain.data.batches import batch_share, num_batches
from cnntrain.data.containers import iterate_batches, shard
from cnntrain.data.loading import DataBundle, TensorSplit
from cnntrain.data.multilabel_splits import label_counts
from cnntrain.errors import ConfigError
from cnntrain.models.builder import last_layer_name
from cnntrain.models.tta import predict_with_tta
from cnntrain.reporting.console import EpochDisplay, Reporter
from cnntrain.reporting.label_metrics import exact_matches, mean_average_precision, tune_thresholds
from cnntrain.reporting.label_report import label_analysis, label_evaluation, label_results, report_multilabel
from cnntrain.reporting.metrics import EvalResult
from cnntrain.reporting.run_dir import RunDir
from cnntrain.training.accel import Accel
from cnntrain.training.distributed import SINGLE, Ranks

PROBABILITY_ENDS = ("softmax", "log_softmax", "sigmoid")


class LabelSetLoss(nn.Module):
    """Mean binary cross-entropy over every (image, label) pair, on logits; `pos_weight` scales each label's
    positive term, smoothing moves targets to t(1 - s) + s/2."""

    def __init__(self, pos_weight: torch.Tensor | None = None, smoothing: float = 0.0) -> None:
        super().__init__()
        self.smoothing = smoothing
        self.register_buffer("pos_weight", pos_weight)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        targets = targets.to(logits.dtype)
        if self.smoothing:
            targets = targets * (1 - self.smoothing) + self.smoothing / 2
        return F.binary_cross_entropy_with_logits(logits, targets, pos_weight=self.pos_weight)


class MultiLabel:
    """Label sets: BCE on logits, per-label thresholds, mAP as the default monitor."""

    name = TASK_MULTILABEL
    write_report = staticmethod(report_multilabel)  # the end of a run: cnntrain.reporting.label_report

    def __init__(self, threshold: Any = 0.5, num_classes: int = 0) -> None:
        self.tune = threshold == THRESHOLD_TUNE
        fixed = 0.5 if self.tune else float(threshold)
        self.thresholds: list[float] = [fixed] * num_classes

    # -- setup ---------------------------------------------------------------------------------------------------

    def check_config(self, cfg: DictConfig) -> None:
        """One line for each single-label setting that has no meaning here."""
        loss = cfg.trainer.loss
        if loss not in ("auto", "bce"):
            raise ConfigError(
                f"trainer.loss={loss} takes one class per image, and dataset {cfg.dataset.name} gives a "
                f"set of labels per image (multi-label): use trainer.loss=auto (binary cross-entropy "
                f"per label)"
            )
        end = last_layer_name(cfg.model.layers)
        if end in PROBABILITY_ENDS:
            raise ConfigError(
                f"model '{cfg.model.name}' ends in {end}, and a multi-label model must end in logits "
                f"(one per label; the loss applies the sigmoid): remove its last layer ({end})"
            )
        check_class_weights(cfg.trainer.class_weights, cfg.dataset.get("num_classes"))

    def loss(self, cfg: DictConfig, data: DataBundle, device: torch.device) -> nn.Module:
        """BCE with logits; class_weights: per-label positive weights (balanced: negatives / positives)."""
        self.check_config(cfg)
        setting = cfg.trainer.class_weights
        weights = None
        if setting == BALANCED:
            counts = label_counts(data.train.labels)
            check_every_class(counts, data.classes, [f"trainer.class_weights={BALANCED}"])
            weights = [(len(data.train) - int(c)) / int(c) for c in counts.tolist()]
        elif setting is not None:
            weights = [float(w) for w in setting]
        pos_weight = None if weights is None else torch.tensor(weights, dtype=torch.float32, device=device)
        return LabelSetLoss(pos_weight, float(cfg.trainer.label_smoothing))

    def monitors(self, cfg: DictConfig) -> tuple[str, str]:
        """The checkpoint's (monitor, mode): val/map unless another monitor than the default val/acc was set."""
        return label_set_monitor(cfg.trainer.checkpoint.monitor, cfg.trainer.checkpoint.mode)

    # -- training ------------------------------------------------------------------------------------------------

    def hits(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Images whose whole set is right at probability 0.5 (a mixed target's labels: those over half)."""
        return ((logits >= 0) == (targets > 0.5)).all(dim=1).sum()

    # -- evaluation ----------------------------------------------------------------------------------------------

    def evaluate(
        self,
        model: nn.Module,
        split: TensorSplit,
        bundle: DataBundle,
        loss_fn: nn.Module,
        batch_size: int,
        *,
        keep_preds: bool = False,
        display: EpochDisplay | None = None,
        label: str = "validate",
        accel: Accel | None = None,
        tta: str = "none",
        ranks: Ranks = SINGLE,
    ) -> EvalResult:
        """Loss, exact-match accuracy and mAP over a split, from every image's scores gathered over the ranks.
        On the validation split with threshold=tune the thresholds are tuned here (best F1 per label)."""
        scores, loss = self.scores(model, split, bundle, loss_fn, batch_size, display, label, accel, tta, ranks)
        labels = split.labels.cpu()
        if self.tune and not keep_preds:
            self.thresholds = tune_thresholds(scores, labels)
        n = max(1, len(split))
        result = EvalResult(
            loss=loss,
            acc=exact_matches(scores, labels, self.thresholds) / n,
            epoch_metrics={VAL_MAP: _number(mean_average_precision(scores, labels))},
            thresholds=list(self.thresholds),
        )
        if keep_preds:
            limits = torch.tensor(self.thresholds, dtype=scores.dtype)
            result.scores, result.labels, result.preds = scores, labels, (scores >= limits).to(torch.int64)
        return result

    def test(
        self,
        model: nn.Module,
        bundle: DataBundle,
        loss_fn: nn.Module,
        batch_size: int,
        display: EpochDisplay | None = None,
        accel: Accel | None = None,
        tta: str = "none",
        ranks: Ranks = SINGLE,
    ) -> tuple[EvalResult, None]:
        """The test split with every score kept (no confusion matrix: an image has several true labels)."""
        return self.evaluate(
            model,
            bundle.test,
            bundle,
            loss_fn,
            batch_size,
            keep_preds=True,
            display=display,
            label="test",
            accel=accel,
            tta=tta,
            ranks=ranks,
        ), None

    def scores(
        self,
        model: nn.Module,
        split: TensorSplit,
        bundle: DataBundle,
        loss_fn: nn.Module,
        batch_size: int,
        display: EpochDisplay | None = None,
        label: str = "validate",
        accel: Accel | None = None,
        tta: str = "none",
        ranks: Ranks = SINGLE,
    ) -> tuple[torch.Tensor, float]:
        """(sigmoid scores [N, K] float32 on the CPU in the split's order, mean loss): this rank's share scored,
        the shares gathered (a streamed split's with their canonical indices, and put back in order)."""
        accel = accel or Accel(split.labels.device)
        whole, mine = split, shard(split, ranks.rank, ranks.world)
        streamed = mine.images.keyed
        batches = (
            mine.images.indexed_batches(batch_size)
            if streamed
            else ((images, targets, None) for images, targets in iterate_batches(mine, batch_size, shuffle=False))
        )
        n, k = len(whole), int(whole.labels.shape[1])
        total = torch.zeros((), dtype=torch.float64, device=whole.labels.device)
        kept: list[torch.Tensor] = []
        kept_index: list[torch.Tensor] = []
        model.eval()
        if display is not None:
            display.start_phase(label, num_batches(len(mine), batch_size, False))
        with torch.inference_mode():
            for step, (images, targets, index) in enumerate(batches, 1):
                with accel.autocast():
                    inputs = accel.prepare_input(bundle.normalize(images))
                    logits = predict_with_tta(model, inputs, tta, self.merge_views)
                    total += loss_fn(logits, targets).double() * targets.shape[0]
                kept.append(torch.sigmoid(logits.float()).flatten())
                if index is not None:
                    kept_index.append(index)
                if display is not None:
                    display.advance(step)
        (loss_sum,) = ranks.sum([total], total.device)
        local = torch.cat(kept) if kept else torch.zeros(0, device=whole.labels.device)
        if not streamed:
            counts = [hi - lo for lo, hi in (batch_share(n, r, ranks.world) for r in range(ranks.world))]
            return ranks.gather(local, n * k, [c * k for c in counts]).reshape(n, k).cpu(), loss_sum / max(1, n)
        counts = [len(whole.images.shard(r, ranks.world)) for r in range(ranks.world)]
        empty = torch.zeros(0, dtype=torch.int64, device=local.device)
        where = ranks.gather(torch.cat(kept_index) if kept_index else empty, n, counts).cpu()
        scores = ranks.gather(local, n * k, [c * k for c in counts]).reshape(n, k).cpu()
        placed = torch.zeros_like(scores)
        placed[where] = scores
        return placed, loss_sum / max(1, n)

    def restore(self, checkpoint: dict[str, Any]) -> None:
        """The thresholds saved with a checkpoint's weights (tuned on its epoch's validation split)."""
        saved = checkpoint.get("thresholds")
        if isinstance(saved, list) and len(saved) == len(self.thresholds):
            self.thresholds = [float(t) for t in saved]

    @staticmethod
    def merge_views(mean_logits: torch.Tensor) -> torch.Tensor:
        """TTA: the views' mean logits are the outputs (each label's sigmoid is taken after)."""
        return mean_logits

    def eval_summary(
        self,
        result: EvalResult,
        matrix: torch.Tensor | None,
        classes: list[str],
        reporter: Reporter,
        head: list[tuple[str, str]],
    ) -> dict[str, Any]:
        """cnntrain-eval: the multi-label tables and summary (no confusion matrix: `matrix` is None)."""
        return label_evaluation(result, classes, reporter, head)

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
        """cnntrain-eval's analysis: the run's own (label_report.label_analysis), its pictures in `paths`."""
        if not cfg.report.analysis:
            return None
        return label_analysis(cfg, paths, data, result, label_results(result, data.classes)[1])

    # -- a finished run's model ----------------------------------------------------------------------------------

    def probabilities(self, outputs: torch.Tensor) -> torch.Tensor:
        """Each label's probability (a sigmoid per label, in float32)."""
        return torch.sigmoid(outputs.float())

    def export_head(self) -> nn.Module:
        """An exported model ends in a sigmoid per label: its outputs are each label's probability."""
        return nn.Sigmoid()

    def predictions(self, probabilities: torch.Tensor, classes: list[str], top_k: int) -> list[Any]:
        """cnntrain-predict's answer per image: the labels at or above their thresholds (most likely first) with
        their probabilities, and the top-k labels whether predicted or not."""
        thresholds = self.thresholds or [0.5] * len(classes)
        records = []
        for row in probabilities.cpu():
            order = torch.argsort(row, descending=True, stable=True).tolist()
            label = lambda k, row=row: {
                "label": classes[k],
                "probability": float(row[k]),
                "threshold": thresholds[k],
                "predicted": float(row[k]) >= thresholds[k],
            }
            records.append(
                {
                    "labels": [label(k) for k in order if float(row[k]) >= thresholds[k]],
                    "top": [label(k) for k in order[:top_k]],
                }
            )
        return records

    def export_output(self, classes: list[str], log_probs: bool) -> dict[str, Any]:
        """The exported file's outputs, for its JSON contract: each label's probability and its threshold."""
        return {
            "name": "outputs",
            "kind": "probabilities",
            "task": TASK_MULTILABEL,
            "labels": classes,
            "thresholds": dict(zip(classes, self.thresholds)),
            "decision": "a label is predicted when its probability is >= its threshold; any number of labels, "
            "none included",
        }

    def export_tta_note(self) -> str:
        """How to repeat the run's trainer.tta=hflip with the exported (one-pass) file."""
        return (
            "the run's metrics averaged each image's logits with its mirror's (trainer.tta=hflip); this file "
            "is one pass: run it on the image and on its left-right mirror and average the logits of the "
            "probabilities, log(p / (1 - p))"
        )


def _number(value: float | None) -> float:
    return float("nan") if value is None else value
