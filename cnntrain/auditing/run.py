"""The audit over a finished K-fold sweep: out-of-fold predictions, then label issues, duplicates and outliers,
then the files (CSVs, the cleaned label file, exclude.txt, audit.html) and one summary line."""

from __future__ import annotations

import os
import time
from pathlib import Path

from cnntrain.auditing import duplicates, label_issues, outliers, tables
from cnntrain.auditing.extra import check_installed
from cnntrain.auditing.folds import Predictions, predict_folds
from cnntrain.auditing.result import AuditResult
from cnntrain.config.schema import DatasetConfig
from cnntrain.errors import ConfigError, UnsafePathError


def audit_folder(folder: Path) -> Path:
    """The audit's folder: created; a link there is refused, so nothing is written through one."""
    if folder.is_symlink():
        raise UnsafePathError(f"{folder} is a symbolic link; the audit writes into no folder through a link")
    if folder.exists() and not folder.is_dir():
        raise UnsafePathError(f"{folder} is not a folder; give the audit a folder (--out)")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def data_folders(data: DatasetConfig) -> list[Path]:
    """The folders a dataset's files are read from (an image folder's root, a label file's folder and image_dir)."""
    folders = []
    if str(data.kind) == "imagefolder":
        folders.append(Path(str(data.root)))
    if str(data.kind) == "labels" and data.file:
        folders.append(Path(str(data.file)).parent)
        if data.image_dir:
            folders.append(Path(str(data.file)).parent / str(data.image_dir))
    return [Path(os.path.abspath(f)) for f in folders]


def check_outside_data(folder: Path, data: DatasetConfig) -> None:
    """The audit never writes into the data: an --out inside the folders it reads is refused (its fold runs
    would also be read back as a class folder of an image folder)."""
    out = Path(os.path.abspath(folder))
    for root in data_folders(data):
        if out == root or root in out.parents:
            raise UnsafePathError(
                f"--out {folder} lies inside {root}, which the dataset is read from; the audit never writes into "
                f"the data: give a folder outside it"
            )


def audit_runs(
    run_dirs: list[Path], out: Path, *, action: str = "drop", max_distance: int = duplicates.PHASH_DISTANCE
) -> AuditResult:
    """Audit the data of the fold runs `run_dirs` (folds 0..K-1 of one sweep) into `out`."""
    if action not in tables.ACTIONS:
        raise ConfigError(f"--fix {action}: expected one of {', '.join(tables.ACTIONS)}")
    if not 0 <= max_distance <= 128:
        raise ConfigError(f"--phash-distance {max_distance}: expected a whole number of bits from 0 to 128 (of 256)")
    check_installed()
    if out.is_symlink():  # checked again as the folder is made; here before any work
        audit_folder(out)
    started = time.perf_counter()
    pred = predict_folds(run_dirs)
    assert pred.data is not None
    check_outside_data(out, pred.data)
    folder = audit_folder(out)
    return write_audit(folder, pred, action, max_distance, started)


def write_audit(folder: Path, pred: Predictions, action: str, max_distance: int, started: float) -> AuditResult:
    from cnntrain.auditing.page import write_page  # the page last: it shows what the tables hold

    issues, quality = label_issues.find_issues(pred.labels, pred.probs)
    pairs = duplicates.find_pairs(pred.keys, pred.images, pred.embeddings, max_distance)
    flagged, scores = outliers.embedding_outliers(pred.own, len(pred.keys))
    odd = outliers.odd_files(pred.keys, pred.images)
    found = sorted(odd + flagged, key=lambda o: (o.reason == "embedding", o.score))
    plan = tables.cleaning(pred, issues, pairs, found, action)
    files = {
        "label_issues": tables.write_label_issues(folder, pred, issues),
        "duplicates": tables.write_duplicates(folder, pred, pairs),
        "outliers": tables.write_outliers(folder, pred, found),
        "exclude": tables.write_exclude(folder, pred, plan),
    }
    cleaned = tables.write_cleaned(folder, pred, plan)
    command = ""
    if cleaned is not None:
        files["cleaned_labels"] = cleaned
        command = train_command(cleaned, pred)
    result = AuditResult(
        folder=folder,
        images=len(pred.keys),
        label_issues=len(issues),
        duplicates=len(pairs),
        leaks=sum(p.leak(pred.splits) for p in pairs),
        outliers=len(found),
        dropped=len(plan.dropped),
        relabelled=len(plan.relabelled),
        seconds=0.0,
        files=files,
        train_command=command,
        image_dir=tables.image_base(pred),
    )
    result.seconds = time.perf_counter() - started
    files["page"] = write_page(folder, pred, issues, pairs, found, result)
    return result


def train_command(cleaned: Path, pred: Predictions) -> str:
    """The command that trains on the cleaned label file (its paths are relative to the images' folder)."""
    base = tables.image_base(pred)
    parts = ["cnntrain", "dataset=labels", f"dataset.file={cleaned.resolve()}", f"dataset.image_dir={base}"]
    if pred.multilabel:
        parts += ["dataset.task=multilabel", f"\"dataset.label_delimiter='{label_issues.LABEL_SET_SEPARATOR}'\""]
    if pred.data is not None and pred.data.allow_outside_paths:
        parts.append("dataset.allow_outside_paths=true")
    return " ".join(parts)
