"""Evaluation: a split's loss and accuracy without gradients, and the test pass that keeps every prediction.

Each rank evaluates its contiguous share of a split; loss and hit counts are summed over the ranks and the
predictions gathered in order, so the result is one process's result for the same weights. The test pass also
keeps the per-image columns the analysis reads (cnntrain.reporting.analysis): no second pass over the data.
"""

from __future__ import annotations

import torch
from torch import nn

from cnntrain.config.names import TOP5_MIN_CLASSES
from cnntrain.data.batches import num_batches
from cnntrain.data.containers import iterate_batches, shard
from cnntrain.data.loading import DataBundle, TensorSplit
from cnntrain.errors import UserError
from cnntrain.models.tta import predict_with_tta
from cnntrain.reporting.analysis import Predictions, per_image_scores
from cnntrain.reporting.console import EpochDisplay
from cnntrain.reporting.metrics import EvalResult, confusion_matrix, top_k_hits
from cnntrain.training.accel import Accel
from cnntrain.training.distributed import SINGLE, Ranks


def default_accel(split: TensorSplit) -> Accel:
    return Accel(split.labels.device)


def forward(
    model: nn.Module,
    loss_fn: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    bundle: DataBundle,
    accel: Accel,
    tta: str = "none",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward one uint8 batch; returns (mean loss, logits) with the run's precision, layout and tta."""
    with accel.autocast():
        logits = predict_with_tta(model, accel.prepare_input(bundle.normalize(images)), tta)
        return loss_fn(logits, labels), logits


def evaluate(
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
    """Mean loss and accuracy over a split, without gradients; optionally every prediction.

    Each rank evaluates its contiguous share of the split; the sums are all-reduced and the predictions
    gathered in order, so the result is the one process's result for the same weights. A streamed split
    (StreamedImages) is read shard by shard: its predictions are gathered with their labels and canonical
    indices and put back in the split's order (result.labels pairs each prediction with its own label)."""
    accel = accel or default_accel(split)
    whole, split = split, shard(split, ranks.rank, ranks.world)
    streamed = split.images.keyed
    batches = (
        split.images.indexed_batches(batch_size) if streamed else iterate_batches(split, batch_size, shuffle=False)
    )
    kept_labels, kept_index = [], []
    model.eval()
    total = torch.zeros((), dtype=torch.float64, device=split.labels.device)
    hits = torch.zeros((), dtype=torch.int64, device=split.labels.device)
    hits5 = torch.zeros((), dtype=torch.int64, device=split.labels.device)
    top5 = keep_preds and len(bundle.classes) >= TOP5_MIN_CLASSES  # top-5 accuracy: test passes, 20+ classes
    preds: list[torch.Tensor] = []
    scores: list[tuple[torch.Tensor, ...]] = []  # per image: p(prediction), p(true class), loss (the analysis table)
    if display is not None:
        display.start_phase(label, num_batches(len(split), batch_size, False))
    with torch.inference_mode():
        for step, (images, labels, *index) in enumerate(batches, 1):
            loss, logits = forward(model, loss_fn, images, labels, bundle, accel, tta)
            total += loss.double() * labels.numel()
            batch_preds = logits.argmax(dim=1)
            hits += (batch_preds == labels).sum()
            if keep_preds:
                preds.append(batch_preds)
                scores.append(per_image_scores(logits, labels, batch_preds))
                if streamed:
                    kept_labels.append(labels)
                    kept_index.append(index[0])
            if top5:
                hits5 += top_k_hits(logits, labels, 5)
            if display is not None:
                display.advance(step)
    total_sum, hit_sum, hit5_sum = ranks.sum([total, hits, hits5], total.device)
    n = max(1, len(whole))
    mine = torch.cat(preds) if preds else torch.zeros(0, dtype=torch.int64, device=whole.labels.device)
    all_preds = all_labels = table = None
    if keep_preds:  # the predictions and the analysis's per-image columns, row i being image i of the split
        columns = [
            mine,
            *(
                [torch.cat(column) for column in zip(*scores)]
                if scores
                else [torch.zeros(0, device=whole.labels.device)] * 3
            ),
        ]  # a rank without images still gathers
        if streamed:
            all_preds, all_labels, *columns = _gather_streamed(whole, columns, kept_labels, kept_index, ranks)
        else:
            all_preds, *columns = (ranks.gather(column, len(whole)) for column in columns)
            all_labels = whole.labels
        table = Predictions.of(all_labels, all_preds, *columns)
    return EvalResult(
        loss=total_sum / n,
        acc=hit_sum / n,
        preds=all_preds,
        acc5=hit5_sum / n if top5 else None,
        labels=all_labels,
        table=table,
    )


def _gather_streamed(
    whole: TensorSplit, columns: list[torch.Tensor], labels: list[torch.Tensor], index: list[torch.Tensor], ranks: Ranks
) -> list[torch.Tensor]:
    """[predictions, labels, *other columns] of every rank, placed at their canonical indices; the labels read must
    be the labels counted (else the shards changed under the run)."""
    empty = torch.zeros(0, dtype=torch.int64, device=columns[0].device)
    counts = [len(whole.images.shard(r, ranks.world)) for r in range(ranks.world)]
    n = len(whole)
    where = ranks.gather(torch.cat(index) if index else empty, n, counts)
    read = torch.cat(labels) if labels else empty
    placed = []
    for column in (columns[0], read, *columns[1:]):
        got = ranks.gather(column, n, counts)
        out = torch.zeros_like(got)
        out[where] = got
        placed.append(out)
    if where.numel() != n or not torch.equal(placed[1].cpu(), whole.labels.cpu()):
        raise UserError(
            "the shards' labels differ from those counted at the start of the run; were the shards "
            "changed while it ran?"
        )
    return placed


def test(
    model: nn.Module,
    bundle: DataBundle,
    loss_fn: nn.Module,
    batch_size: int,
    display: EpochDisplay | None = None,
    accel: Accel | None = None,
    tta: str = "none",
    ranks: Ranks = SINGLE,
) -> tuple[EvalResult, torch.Tensor]:
    """Loss and accuracy on the test split, plus its confusion matrix [true, predicted]."""
    result = evaluate(
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
    )
    matrix = confusion_matrix(result.preds, result.labels, len(bundle.classes))
    return result, matrix


def unwrap(model: nn.Module) -> nn.Module:
    """The module itself, under DistributedDataParallel and torch.compile wrappers if there are any
    (checkpoints hold its plain keys, so they load into any number of ranks)."""
    model = getattr(model, "module", model) if type(model).__name__ == "DistributedDataParallel" else model
    return getattr(model, "_orig_mod", model)
