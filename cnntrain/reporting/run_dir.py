"""A run directory: every path inside it (RunDir), and the files cnntrain writes there besides Hydra's .hydra/.

metrics.csv grows by one row per epoch; summary.json and every other file are written atomically
(temp file + rename), so a reader never sees half of one. No other module spells a file name of a run.
"""

from __future__ import annotations

import csv
import io
import json
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnntrain.config.names import CHECKPOINT_NAMES, EPOCH_COLUMNS, STEP_COLUMNS
from cnntrain.disk import disk_errors
from cnntrain.errors import OutputError, UserError, first_line
from cnntrain.files import kind_of, open_append, write_text
from cnntrain.reading import MAX_RUN_FILE_BYTES, check_fields, json_value, read_bytes, text_lines
from cnntrain.reporting.provenance import command_line
from cnntrain.reporting.summary_schema import check_summary


@dataclass(frozen=True)
class RunDir:
    """The layout of one run directory (Hydra's .hydra/ plus cnntrain's files)."""

    root: Path

    @property
    def hydra(self) -> Path:
        return self.root / ".hydra"

    @property
    def config_yaml(self) -> Path:
        return self.hydra / "config.yaml"

    @property
    def overrides_yaml(self) -> Path:
        return self.hydra / "overrides.yaml"

    @property
    def hydra_yaml(self) -> Path:
        return self.hydra / "hydra.yaml"

    @property
    def train_log(self) -> Path:
        return self.root / "train.log"

    @property
    def metrics_csv(self) -> Path:
        return self.root / "metrics.csv"

    @property
    def steps_csv(self) -> Path:
        return self.root / "steps.csv"

    @property
    def summary_json(self) -> Path:
        return self.root / "summary.json"

    @property
    def eval_summary_json(self) -> Path:
        return self.root / "eval_summary.json"

    @property
    def eval_dir(self) -> Path:
        """cnntrain-eval's analysis pictures and its report.html (as the run's own, named alike, in a folder)."""
        return self.root / "eval"

    @property
    def bad_images(self) -> Path:
        """The image files a run left out because they do not decode (dataset.skip_bad_images): file<TAB>reason."""
        return self.root / "bad_images.txt"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    def checkpoint(self, name: str) -> Path:
        """checkpoints/best.pt or checkpoints/last.pt."""
        assert name in CHECKPOINT_NAMES, name
        return self.checkpoints / f"{name}.pt"

    @property
    def best(self) -> Path:
        return self.checkpoint("best")

    @property
    def last(self) -> Path:
        return self.checkpoint("last")

    @property
    def tensorboard(self) -> Path:
        return self.root / "tensorboard"

    @property
    def tracker_ids(self) -> Path:
        """The MLflow and W&B run ids of this run, so a resume continues the same tracked runs."""
        return self.root / "trackers.json"

    @property
    def bench_json(self) -> Path:
        """cnntrain-bench's figures: every format measured, and the one to ship."""
        return self.root / "bench.json"

    def export(self, suffix: str) -> Path:
        return self.root / "export" / f"model{suffix}"

    @property
    def plots(self) -> tuple[Path, Path, Path]:
        """curves.png, confusion_matrix.png, misclassified.png."""
        return self.root / "curves.png", self.root / "confusion_matrix.png", self.root / "misclassified.png"

    @property
    def worst_mistakes_png(self) -> Path:
        """The worst test mistakes with their class activation maps (report.analysis, report.cam)."""
        return self.root / "worst_mistakes.png"

    @property
    def reliability_png(self) -> Path:
        """The reliability diagram: accuracy against confidence, with the expected calibration error."""
        return self.root / "reliability.png"

    @property
    def per_class_png(self) -> Path:
        """Precision, recall and F1 of each class, worst F1 first."""
        return self.root / "per_class.png"

    @property
    def analysis_plots(self) -> tuple[Path, Path, Path]:
        """worst_mistakes.png, reliability.png, per_class.png: why the model fails (report.analysis)."""
        return self.worst_mistakes_png, self.reliability_png, self.per_class_png

    @property
    def pr_curves_png(self) -> Path:
        """A multi-label run's precision-recall curves of its worst labels."""
        return self.root / "pr_curves.png"

    @property
    def tracked_pictures(self) -> tuple[Path, ...]:
        """Every picture a run may draw for its reader, the analysis's and the multi-label ones included: what the
        trackers get (those that exist)."""
        return (*self.plots, *self.analysis_plots, self.pr_curves_png)

    @property
    def augment_preview(self) -> Path:
        """The first training images as the model sees them after dataset.augment, drawn as training starts."""
        return self.root / "augment_preview.png"

    @property
    def report_html(self) -> Path:
        """The run's page: every table and picture above in one self-contained file (cnntrain.reporting.page)."""
        return self.root / "report.html"

    def rank_log(self, rank: int) -> Path:
        """What rank `rank` (> 0) of a data-parallel run printed: rank 0 writes train.log."""
        return self.root / f"rank-{rank}.log"

    def temp_files(self) -> list[Path]:
        """Temp files of writes that were killed before their rename (none through a linked checkpoints/)."""
        linked = self.checkpoints.is_symlink()
        return [*self.root.glob(".*.tmp"), *([] if linked else self.checkpoints.glob(".*.tmp"))]


SWEEP_SUMMARY_CSV = "sweep_summary.csv"  # in a sweep's directory, beside the job directories
SWEEP_SUMMARY_PNG = "sweep_summary.png"  # its picture: the monitored metric against each swept key
SWEEP_REPORT_HTML = "report.html"  # the sweep's page: its table and picture, a link to each job's page
SWEEP_FOLDS_CSV = "sweep_folds.csv"  # cross-validation sweeps: mean and std over each configuration's folds


class MetricsCSV:
    """metrics.csv (one row per epoch) or steps.csv (one row per optimizer step, written once per epoch),
    flushed as it is written so a crash keeps finished epochs.

    It starts as the header plus `rows` (a resumed run's rows up to its checkpoint), written atomically:
    rows from epochs after the checkpoint are dropped, never duplicated.
    """

    def __init__(
        self, path: Path, rows: list[dict[str, Any]] | None = None, columns: tuple[str, ...] = EPOCH_COLUMNS
    ) -> None:
        self.path = path
        self.columns = columns
        buffer = io.StringIO(newline="")
        writer = csv.writer(buffer)
        writer.writerow(columns)
        writer.writerows(self._cells(row) for row in rows or [])
        write_text(path, buffer.getvalue())

    def append(self, *rows: dict[str, Any]) -> None:
        with disk_errors(self.path), open_append(self.path) as f:
            csv.writer(f).writerows(self._cells(row) for row in rows)

    def _cells(self, row: dict[str, Any]) -> list[Any]:
        return [row.get(name, "") for name in self.columns]


def read_steps(path: Path, through_epoch: float | None = None) -> list[dict[str, float]]:
    """steps.csv's rows as numbers (through a resumed checkpoint's epoch, when given); none when the file is
    missing (runs from before steps were recorded) or unreadable, since the curves can do without them."""
    try:
        lines = text_lines(path, MAX_RUN_FILE_BYTES, "steps file", encoding="utf-8", newline="")
        with closing(lines):
            rows = [
                {key: int(value) if key == "step" else float(value) for key, value in row.items()}
                for row in csv.DictReader(lines)
            ]
    except (OSError, ValueError, TypeError, csv.Error, UserError):  # UserError: not a regular file, too large
        return []
    if rows and set(STEP_COLUMNS) - set(rows[0]):
        return []
    return [row for row in rows if through_epoch is None or row["epoch"] <= through_epoch + 1e-9]


def read_metrics(path: Path) -> list[dict[str, str]]:
    """metrics.csv's rows, each with every column: a missing, torn or hand-broken file is one UserError naming it."""
    if not path.is_file():
        raise UserError(f"{path} not found; restore it from a copy of the run")
    try:
        text = text_lines(path, MAX_RUN_FILE_BYTES, "metrics file", encoding="utf-8", newline="")
        with closing(text):
            lines = list(enumerate(csv.reader(text), 1))
    except UserError as err:
        raise UserError(f"{first_line(err)}; restore it from a copy of the run") from None
    except (OSError, ValueError, csv.Error) as err:
        raise UserError(f"cannot read {path}: {first_line(err)}; restore it from a copy of the run") from None
    header = lines[0][1] if lines else []
    missing = [name for name in EPOCH_COLUMNS if name not in header]
    if missing:
        raise UserError(
            f"{path} lacks the column{'s' if len(missing) > 1 else ''} {', '.join(missing)}; its header "
            f"must be {','.join(EPOCH_COLUMNS)} (restore it from a copy of the run)"
        )
    check_fields(header, "metrics file", path, 1)
    rows = [(number, cells) for number, cells in lines[1:] if cells]
    for number, cells in rows:
        if len(cells) != len(header):
            raise UserError(
                f"{path} line {number} has {len(cells)} cells, not the header's {len(header)}; restore "
                f"the file from a copy of the run"
            )
    return [dict(zip(header, cells)) for _, cells in rows]


def write_bad_images(path: Path, skipped: list[tuple[Path, str]]) -> None:
    """bad_images.txt: one `file<TAB>reason` line per image left out."""
    write_text(path, "".join(f"{file}\t{reason}\n" for file, reason in skipped))


def write_summary(path: Path, summary: dict[str, Any]) -> None:
    write_text(path, json.dumps(summary, indent=2, sort_keys=False) + "\n")


MAX_SUMMARY_BYTES = MAX_RUN_FILE_BYTES  # 64,000,000: the confusion matrix of 1,000 classes is a few MB


def read_summary(path: Path, fix: str = "restore it from a copy of the run") -> dict[str, Any]:
    """summary.json as a dict, {} when the run has not written one yet; a torn or hand-broken file is one
    UserError naming it and ending with `fix`."""
    if not path.exists():
        return {}
    try:
        summary = json_value(read_bytes(path, MAX_SUMMARY_BYTES, "summary file"), "summary file", str(path))
    except UserError as err:  # not a regular file, too large, nested too deeply
        raise UserError(f"{first_line(err)}; {fix}") from None
    except json.JSONDecodeError as err:
        raise UserError(f"{path} line {err.lineno}: not valid JSON ({err.msg}); {fix}") from None
    except RecursionError:
        raise UserError(f"{path}: nested too deeply to be a summary a run writes; refused; {fix}") from None
    except (OSError, ValueError) as err:
        raise UserError(f"cannot read {path}: {first_line(err)}; {fix}") from None
    if not isinstance(summary, dict):
        raise UserError(f"{path} holds {kind_of(summary)}, not the JSON object a run writes; {fix}")
    return check_summary(summary, path, fix)


def write_failure(path: Path, error: str, elapsed_seconds: float) -> None:
    """The summary.json of a sweep job that failed, so the sweep summary can list it."""
    try:
        write_summary(
            path, {"status": "failed", "error": error, "elapsed_seconds": elapsed_seconds, "command": command_line()}
        )
    except OutputError:
        pass  # the disk that refused the run's files refuses this one too: the error already says so
