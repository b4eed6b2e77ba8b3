"""summary.json's shape, checked once where it is read (run_dir.read_summary): every reader (the report page,
cnntrain-compare, -reproduce, the sweep table, the trackers, the Python API) then meets the types a run writes.

A run directory may come from someone else: a list where a mapping belongs, text where a number belongs, or a
confusion matrix of 5,000 x 5,000 built to cost gigabytes in the report's "most confused" pass, is one line
naming the file and the key, not a traceback or a process that runs out of memory. Keys a run does not write
pass unchecked (a newer cnntrain's summary still opens); a key it writes must hold its type or null.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cnntrain.errors import UserError
from cnntrain.files import kind_of

MAX_MATRIX_CLASSES = 2_000  # a confusion matrix's side (ImageNet has 1,000 classes): 4,000,000 cells at most
NUMBER, TEXT, FLAG, MAPPING, LIST = "a number", "a string", "a boolean", "a mapping", "a list"

TOP: dict[str, str] = {
    **dict.fromkeys(
        ("model", "dataset", "status", "error", "task", "precision", "tta", "sampler", "device", "device_name"), TEXT
    ),
    **dict.fromkeys(
        (
            "epochs_run",
            "params",
            "params_trainable",
            "params_frozen",
            "macs_per_image",
            "train_seconds",
            "elapsed_seconds",
            "seed",
            "threads",
        ),
        NUMBER,
    ),
    **dict.fromkeys(("stopped_early", "channels_last", "compile"), FLAG),
    **dict.fromkeys(
        (
            "data",
            "test",
            "test_last",
            "best",
            "final_epoch",
            "stopped",
            "per_class_accuracy",
            "sizes",
            "timing",
            "optimization",
            "analysis",
            "parallel",
            "train_class_counts",
            "cpu",
            "deterministic",
            "platform",
            "git",
            "versions",
            "per_label",
        ),
        MAPPING,
    ),
    **dict.fromkeys(("classes", "model_summary", "command", "confusion_matrix"), LIST),
}
NESTED: dict[str, dict[str, str]] = {  # the mappings whose entries readers use as numbers or text
    "test": {"loss": NUMBER, "acc": NUMBER, "balanced_acc": NUMBER, "macro_f1": NUMBER, "weights": TEXT},
    "test_last": {"loss": NUMBER, "acc": NUMBER, "balanced_acc": NUMBER, "macro_f1": NUMBER},
    "best": {"monitor": TEXT, "mode": TEXT, "value": NUMBER, "epoch": NUMBER},
    "timing": dict.fromkeys(("startup_seconds", "train_seconds", "eval_seconds", "elapsed_seconds"), NUMBER),
    "sizes": dict.fromkeys(("train", "val", "test"), NUMBER),
    "analysis": {"per_class": MAPPING, "most_confused": LIST, "calibration": MAPPING, "worst_mistakes": LIST},
    "data": {"kind": TEXT, "layout": TEXT, "skipped_images": NUMBER},
}
_TESTS = {
    NUMBER: lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    TEXT: lambda v: isinstance(v, str),
    FLAG: lambda v: isinstance(v, bool),
    MAPPING: lambda v: isinstance(v, dict),
    LIST: lambda v: isinstance(v, list),
}


def check_summary(summary: dict[str, Any], path: Path, fix: str) -> dict[str, Any]:
    """`summary` itself when every key a run writes holds its type (or null); a UserError naming `path`, the
    key and what it should hold otherwise."""
    for key, kind in TOP.items():
        _check(summary.get(key), key, kind, path, fix)
    for key, entries in NESTED.items():
        inner = summary.get(key)
        for name, kind in entries.items() if isinstance(inner, dict) else ():
            _check(inner.get(name), f"{key}.{name}", kind, path, fix)
    _check_matrix(summary.get("confusion_matrix"), path, fix)
    classes = summary.get("classes")
    if isinstance(classes, list) and len(classes) > MAX_MATRIX_CLASSES * 50:
        raise UserError(f"{path}: 'classes' holds {len(classes):,} names, far more than a run writes; refused; {fix}")
    return summary


def _check(value: Any, key: str, kind: str, path: Path, fix: str) -> None:
    if value is not None and not _TESTS[kind](value):
        raise UserError(f"{path}: '{key}' is {kind_of(value)}, not {kind} as a run writes it; {fix}")


def _check_matrix(matrix: Any, path: Path, fix: str) -> None:
    """A confusion matrix: at most MAX_MATRIX_CLASSES rows of as many numbers each."""
    if matrix is None:
        return
    if len(matrix) > MAX_MATRIX_CLASSES:
        raise UserError(
            f"{path}: 'confusion_matrix' has {len(matrix):,} rows, more than the {MAX_MATRIX_CLASSES:,} "
            f"classes cnntrain reports on; refused; {fix}"
        )
    for number, row in enumerate(matrix):
        if not isinstance(row, list) or len(row) > MAX_MATRIX_CLASSES:
            shown = f"{len(row):,} cells" if isinstance(row, list) else kind_of(row)
            raise UserError(
                f"{path}: 'confusion_matrix' row {number} is {shown}, not a row of at most "
                f"{MAX_MATRIX_CLASSES:,} numbers; {fix}"
            )
        if not all(_TESTS[NUMBER](cell) for cell in row):
            raise UserError(f"{path}: 'confusion_matrix' row {number} holds something other than numbers; {fix}")
