"""The label column of a Hugging Face dataset: its classes and each split's labels, read without any image.

A ClassLabel column gives class indices (-1: no label), a column of whole numbers or strings its sorted values, and
a Sequence (List) of ClassLabel column label sets, read as multi-hot rows (multi-label data; the ClassLabel's names
are the labels, and an empty list is an image with no label)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from cnntrain.config.names import TASK_MULTILABEL
from cnntrain.data.sources.huggingface_scan import HFScan
from cnntrain.errors import DataError

KIND = "Sequence(ClassLabel)"


def label_set_feature(feature: Any, datasets: Any) -> Any | None:
    """The ClassLabel inside a Sequence/List feature, or None when `feature` is not one."""
    inner = getattr(feature, "feature", None)
    if type(feature).__name__ in ("Sequence", "List", "LargeList") and isinstance(inner, datasets.ClassLabel):
        return inner
    return None


def multi_hot(rows: list[Any], classes: list[str], where: str) -> torch.Tensor:
    """int64 [N, K] multi-hot rows of lists of class indices; an index outside the names is one line."""
    hot = torch.zeros(len(rows), len(classes), dtype=torch.int64)
    for i, labels in enumerate(rows):
        for label in labels or []:
            if not isinstance(label, int) or not 0 <= label < len(classes):
                raise DataError(
                    f"{where}, row {i}: label {label!r} is not an index 0..{len(classes) - 1} of its "
                    f"ClassLabel ({', '.join(classes)})"
                )
            hot[i, label] = 1
    return hot


def find_classes(scan: HFScan, feature: Any, datasets: Any) -> None:
    """Class names from the ClassLabel feature, or the train split's sorted values (other splits must use them)."""
    inner = label_set_feature(feature, datasets)
    if inner is not None:  # label sets: the names are the labels; any set, the empty one included, is valid
        scan.classes, scan.task, scan.label_kind = [str(n) for n in inner.names], TASK_MULTILABEL, KIND
        return
    if isinstance(feature, datasets.ClassLabel):
        scan.classes = [str(n) for n in feature.names]
        train = raw_labels(scan, "train")
        if train is None or bool((train < 0).any()):
            raise DataError(
                f"split '{scan.split_names['train']}' of {scan.name} has rows without a label (-1) in "
                f"column '{scan.label_column}'"
            )
        seen = np.unique(train)
    else:
        seen = np.unique(np.asarray(_column(scan, "train")))
        scan.values = {value.item() if hasattr(value, "item") else value: i for i, value in enumerate(seen)}
        scan.classes = [str(v) for v in scan.values]
        for role in ("val", "test"):
            if role in scan.tables:
                unknown = sorted({v for v in _column(scan, role) if v not in scan.values}, key=str)
                if unknown:
                    raise DataError(
                        f"split '{scan.split_names[role]}' of {scan.name} has label(s) "
                        f"{', '.join(map(str, unknown[:5]))} that train lacks; train labels: "
                        f"{', '.join(scan.classes)}"
                    )
    if len(scan.classes) < 2 or len(seen) < 2:
        shown = ", ".join(str(scan.classes[int(i)] if scan.values is None else i) for i in seen)
        raise DataError(
            f"label column '{scan.label_column}' of {scan.name} has {len(seen)} class(es) in split "
            f"'{scan.split_names['train']}' ({shown}); a classifier needs at least 2"
        )


def _column(scan: HFScan, role: str) -> list[Any]:
    """One split's label column as Python values, without touching the images."""
    table = scan.tables[role].with_format("arrow", columns=[scan.label_column])[:]
    return table.column(scan.label_column).to_pylist()


def raw_labels(scan: HFScan, role: str) -> np.ndarray | None:
    """A ClassLabel split's int labels; None when every row is -1 (the split has no labels)."""
    values = np.asarray(_column(scan, role), dtype=np.int64)
    if values.size and bool((values < 0).all()):
        return None
    return values


def read_labels(scan: HFScan, role: str) -> torch.Tensor:
    """One split's int64 class indices (the label column only: cheap, no image is read); multi-hot [N, K] rows of
    a Sequence(ClassLabel) column."""
    if scan.task == TASK_MULTILABEL:
        return multi_hot(_column(scan, role), scan.classes, f"split '{scan.split_names[role]}' of {scan.name}")
    if scan.values is None:
        values = raw_labels(scan, role)
        if values is None or bool((values < 0).any()):
            row = 0 if values is None else int(np.flatnonzero(values < 0)[0])
            raise DataError(
                f"split '{scan.split_names[role]}' of {scan.name}, row {row}: no label (-1) in column "
                f"'{scan.label_column}'"
            )
        return torch.from_numpy(values)
    return torch.tensor([scan.values[v] for v in _column(scan, role)], dtype=torch.int64)
