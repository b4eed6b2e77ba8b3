"""Fine-tuning a pretrained network: the backbone frozen for the first epochs (or for good) and trained at its
own learning rate.

The backbone is every parameter of the model's named networks (torchvision/timm layers) except their new
head; everything else (that head, or a custom head after a backbone layer) is the head. A frozen backbone
gets no gradients and keeps its BatchNorm statistics (eval mode), so the first epochs fit the head to
features that stay the pretrained ones. Which epochs are frozen follows from the epoch number alone, so a
resumed run freezes and unfreezes exactly as the uninterrupted one.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from cnntrain.models.architectures import architectures


def freeze_for_epoch(model: nn.Module, finetune: Any, epoch: int) -> None:
    """Freeze the backbone for epochs 1..freeze_epochs (all epochs with head_only), train it after."""
    frozen = finetune.head_only or epoch <= finetune.freeze_epochs
    for arch in architectures(model):
        if arch.frozen != frozen:
            arch.freeze_backbone(frozen)


def backbone_parameters(model: nn.Module) -> list[nn.Parameter]:
    return [p for arch in architectures(model) for p in arch.backbone_parameters()]


def model_size(model: nn.Module, rows: list[Any]) -> dict[str, int]:
    """summary.json's size of the model: every parameter, those the first epoch trains and those it leaves
    frozen, and the multiply-adds per image (from the summary rows)."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {
        "params": total,
        "params_trainable": trainable,
        "params_frozen": total - trainable,
        "macs_per_image": sum(row.macs for row in rows),
    }


def frozen_note(size: dict[str, int], finetune: Any) -> str:
    """The line under the model summary that says what the first epochs leave untrained."""
    epochs = finetune.freeze_epochs
    when = (
        "in every epoch (head_only)"
        if finetune.head_only
        else f"in epoch{'s 1-' if epochs > 1 else ' '}{epochs}, trained after"
    )
    return (
        f"trainable {size['params_trainable']:,} / frozen {size['params_frozen']:,} parameters: the backbone "
        f"is frozen {when}"
    )
