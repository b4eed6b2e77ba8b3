"""What the audit writes besides its page: label_issues.csv, duplicates.csv, outliers.csv, the cleaned label
file (cleaned_labels.csv, which `dataset=labels` trains on directly) and exclude.txt (the images the cleaned
file leaves out, one path a line, for `dataset.exclude=` on the original source). All written atomically into the
audit folder; nothing of the data is touched."""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass, field
from pathlib import Path

from cnntrain.auditing.duplicates import Pair
from cnntrain.auditing.folds import Predictions
from cnntrain.auditing.label_issues import LABEL_SET_SEPARATOR, LabelIssue
from cnntrain.auditing.outliers import Outlier
from cnntrain.files import write_text

ACTIONS = ("drop", "relabel")  # what the cleaned file does with a flagged label


@dataclass
class Cleaning:
    """Which images the cleaned file leaves out or relabels, and why."""

    dropped: dict[int, str] = field(default_factory=dict)  # index -> reason
    relabelled: dict[int, list[int]] = field(default_factory=dict)  # index -> the new class / label set


def names(classes: list[str], labels: list[int]) -> str:
    return LABEL_SET_SEPARATOR.join(classes[i] for i in labels)


def given_labels(pred: Predictions, i: int) -> list[int]:
    row = pred.labels[i]
    return row.nonzero().flatten().tolist() if pred.multilabel else [int(row)]


def _csv(header: list[str], rows: list[list[object]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


def write_label_issues(folder: Path, pred: Predictions, issues: list[LabelIssue]) -> Path:
    rows = [
        [
            rank,
            pred.keys[x.index].key,
            pred.splits[x.index],
            pred.fold_of[x.index],
            names(pred.classes, x.given),
            names(pred.classes, x.suggested),
            f"{x.quality:.6f}",
            f"{x.confidence:.6f}",
        ]
        for rank, x in enumerate(issues, 1)
    ]
    header = ["rank", "key", "split", "fold", "given", "suggested", "label_quality", "suggested_probability"]
    return _write(folder, "label_issues.csv", _csv(header, rows))


def write_duplicates(folder: Path, pred: Predictions, pairs: list[Pair]) -> Path:
    rows = [
        [
            p.kind,
            "yes" if p.leak(pred.splits) else "no",
            pred.keys[p.a].key,
            pred.splits[p.a],
            pred.keys[p.b].key,
            pred.splits[p.b],
            p.distance,
            f"{p.cosine:.6f}",
        ]
        for p in pairs
    ]
    header = ["kind", "leak", "key_a", "split_a", "key_b", "split_b", "phash_distance", "embedding_cosine"]
    return _write(folder, "duplicates.csv", _csv(header, rows))


def write_outliers(folder: Path, pred: Predictions, outliers: list[Outlier]) -> Path:
    rows = [[o.reason, pred.keys[o.index].key, pred.splits[o.index], f"{o.score:.6f}", o.detail] for o in outliers]
    return _write(folder, "outliers.csv", _csv(["reason", "key", "split", "score", "detail"], rows))


def cleaning(
    pred: Predictions, issues: list[LabelIssue], pairs: list[Pair], outliers: list[Outlier], action: str
) -> Cleaning:
    """Flagged labels dropped (or relabelled with the suggestion); of each exact copy or cross-split near copy, the
    one outside the test split (else the later one) dropped; nearly constant images dropped. Embedding outliers
    and near copies within a split are listed, not acted on: they are often right and rare."""
    out = Cleaning()
    for x in issues:
        if action == "relabel" and (x.suggested or pred.multilabel):
            out.relabelled[x.index] = x.suggested
        else:
            out.dropped[x.index] = "label issue"
    for p in pairs:
        if p.kind == "exact" or p.leak(pred.splits):
            victim = p.a if pred.splits[p.b] == "test" and pred.splits[p.a] != "test" else p.b
            if p.a not in out.dropped and p.b not in out.dropped:  # one copy gone already: keep the other
                out.dropped[victim] = "leak" if p.leak(pred.splits) else "duplicate"
    for o in outliers:
        if o.reason == "constant":
            out.dropped.setdefault(o.index, "nearly constant image")
    for i in out.dropped:
        out.relabelled.pop(i, None)
    return out


def image_base(pred: Predictions) -> Path | None:
    """The folder every audited file lies in (the cleaned file's dataset.image_dir); None without files."""
    paths = [k.path for k in pred.keys]
    if not paths or any(p is None for p in paths):
        return None
    return Path(os.path.commonpath([os.path.dirname(os.path.abspath(p)) for p in paths if p is not None]))


def write_cleaned(folder: Path, pred: Predictions, plan: Cleaning) -> Path | None:
    """cleaned_labels.csv (path relative to image_base, label, split); None for a dataset without files."""
    base = image_base(pred)
    if base is None:
        return None
    rows = []
    for i, key in enumerate(pred.keys):
        if i in plan.dropped:
            continue
        labels = plan.relabelled.get(i, given_labels(pred, i))
        assert key.path is not None
        rows.append([os.path.relpath(os.path.abspath(key.path), base), names(pred.classes, labels), pred.splits[i]])
    return _write(folder, "cleaned_labels.csv", _csv(["path", "label", "split"], rows))


def write_exclude(folder: Path, pred: Predictions, plan: Cleaning) -> Path:
    """exclude.txt: what the cleaned file leaves out, one key a line (absolute paths for files)."""
    lines = [
        os.path.abspath(pred.keys[i].path) if pred.keys[i].path is not None else pred.keys[i].key
        for i in sorted(plan.dropped)
    ]
    return _write(folder, "exclude.txt", "".join(f"{line}\n" for line in lines))


def _write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    write_text(path, text, root=folder)
    return path
