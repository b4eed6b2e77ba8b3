"""`cnntrain-bench RUN_DIR` and `Run.benchmark()`: every way to run a finished run's model, measured side by side
on the run's own test split, and the one to ship.

The rows: the eager model in float32 (the reference) and in bf16 autocast where the CPU computes bf16 natively,
`torch.compile` when asked (its compile time said), and each exported format, fp32 and int8, written by
cnntrain.inference.export into a temporary folder (so each file passed the export's own check) and run on its
own runtime. For each: the test accuracy (mAP for a set of labels) and its drop against eager, top-1 agreement
with eager, ECE, batch-1 latency p50/p95 and batch-32 throughput (bench_timing), file size and load time. The
accuracy and agreement come from export_check.compare, the code an export is checked with; bench_table.py turns
the rows into the table and the recommendation, and bench.json is written into the run directory atomically.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cnntrain.errors import ConfigError, DataError, UserError, first_line
from cnntrain.files import write_text
from cnntrain.inference import bench_table, bench_timing, export_check, export_openvino, export_torchscript
from cnntrain.inference.classifier import ImageClassifier
from cnntrain.inference.export import ACCURACY_BUDGET, CALIBRATION, check_options, export_run
from cnntrain.inference.export import FORMATS as EXPORT_SUFFIXES
from cnntrain.inference.load import SavedRun, load_run
from cnntrain.inference.runtime import PROBABILITIES, as_float, as_probabilities, contract_path, load_runner
from cnntrain.reporting.analysis import Predictions, calibration
from cnntrain.reporting.provenance import cpu, versions
from cnntrain.reporting.run_dir import RunDir

# a row's name -> (the export format, or None for the eager model in this process; int8)
FORMATS: dict[str, tuple[str | None, bool]] = {
    "eager": (None, False),
    "eager-bf16": (None, False),
    "pt2": ("pt2", False),
    "torchscript": ("torchscript", False),
    "onnx": ("onnx", False),
    "onnx-int8": ("onnx", True),
    "openvino": ("openvino", False),
    "openvino-int8": ("openvino", True),
}
DEFAULT_FORMATS = ("eager", "eager-bf16", "pt2", "onnx", "onnx-int8", "openvino", "openvino-int8")
RUNS, MAX_RUNS = 100, 100_000  # batch-1 calls timed per format and round
IMAGES, MAX_IMAGES = 2000, 10_000_000  # test images scored per format
OPTIMIZE = ("latency", "throughput")  # what "fastest" means for the recommendation
ECE_BINS = 15  # equal-width confidence bins, as the run's own analysis (configs/train.yaml: calibration_bins)


@dataclass
class Options:
    """What to measure; `check` refuses a bad value in one line before anything is loaded."""

    formats: tuple[str, ...] = DEFAULT_FORMATS
    named: bool = False  # the user named the formats: a missing extra is then an error, not a skipped row
    runs: int = RUNS
    images: int = IMAGES
    accuracy_budget: float = ACCURACY_BUDGET
    compile: bool = False
    optimize: str = "latency"
    threads: int | None = None  # every runtime's threads (torch, ONNX Runtime, OpenVINO); None: each one's default

    def check(self) -> None:
        for key, value, top, what in (
            ("runs", self.runs, MAX_RUNS, "batch-1 calls timed per format"),
            ("images", self.images, MAX_IMAGES, "test images scored per format"),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= top:
                raise ConfigError(f"--{key}={value!r}: must be a whole number from 1 to {top:,} ({what})")
        threads = self.threads
        if threads is not None and (
            isinstance(threads, bool) or not isinstance(threads, int) or not 1 <= threads <= 4096
        ):
            raise ConfigError(
                f"--threads={threads!r}: must be a whole number from 1 to 4,096 (threads of every runtime)"
            )
        budget = self.accuracy_budget
        if isinstance(budget, bool) or not isinstance(budget, (int, float)) or not 0 <= budget <= 100:
            raise ConfigError(
                f"--accuracy-budget={budget!r}: must be a number of points from 0 to 100 (accuracy or mAP a "
                f"format may lose against eager and still be recommended)"
            )
        if self.optimize not in OPTIMIZE:
            raise ConfigError(f"--optimize={self.optimize!r}: expected one of {', '.join(OPTIMIZE)}")
        for name in self.formats:
            if name not in FORMATS:
                raise ConfigError(f"--formats: {name!r} is not a format; expected some of {', '.join(FORMATS)}")
            fmt, int8 = FORMATS[name]
            if fmt is not None and self.named:
                check_options(fmt, int8, CALIBRATION, ACCURACY_BUDGET)  # a missing extra, named in one line


def parse_formats(text: str) -> tuple[str, ...]:
    """--formats onnx,onnx-int8: the names in order, each once; one line for an empty or unknown one."""
    names = tuple(dict.fromkeys(part.strip() for part in text.split(",")))
    bad = [name for name in names if name not in FORMATS]
    if not text.strip() or bad:
        raise ConfigError(
            f"--formats={text!r}: {'no format named' if not text.strip() else f'{bad[0]!r} is not a format'}; "
            f"expected a comma-separated list of {', '.join(FORMATS)}"
        )
    return names


@dataclass
class Row:
    """One way to run the model, measured (or why it was not)."""

    name: str
    precision: str
    status: str = "ok"  # ok, skipped (not on this machine or without its extra), failed (the export refused)
    reason: str = ""
    metric: float | None = None  # test accuracy or mAP, %
    drop_pt: float | None = None  # points below eager float32
    agreement: float | None = None  # top-1 agreement with eager float32, %
    label_agreement: float | None = None  # a set of labels: (image, label) decisions that agree, %
    ece: float | None = None
    p50_ms: float | None = None
    p95_ms: float | None = None
    throughput: float | None = None  # images/s at a batch of bench_timing.BATCH
    size_bytes: int | None = None
    load_seconds: float | None = None
    compile_seconds: float | None = None
    threads: str = ""
    exporter: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def bench_run(
    run_dir: Path,
    options: Options,
    *,
    checkpoint: str = "best",
    overrides: Sequence[str] = (),
    say: Callable[[str], None] = lambda line: None,
) -> dict[str, Any]:
    """Measure every format of the run in `run_dir`, write bench.json there and return its content."""
    options.check()
    target = RunDir(Path(run_dir)).bench_json
    if target.is_dir() and not target.is_symlink():
        raise UserError(f"{target} is a folder; cnntrain-bench writes its figures to that file (remove the folder)")
    torch_threads = torch.get_num_threads()
    if options.threads is not None:
        torch.set_num_threads(options.threads)
    try:
        return _bench(run_dir, options, checkpoint, overrides, say)
    finally:
        torch.set_num_threads(torch_threads)


def _bench(
    run_dir: Path, options: Options, checkpoint: str, overrides: Sequence[str], say: Callable[[str], None]
) -> dict[str, Any]:
    saved, load_seconds = bench_timing.timed(lambda: load_run(Path(run_dir), checkpoint, torch.device("cpu")))
    assert isinstance(saved, SavedRun)
    data = export_check.run_data(saved, overrides)
    images, labels = export_check.first_images(data.test, options.images)
    if not len(images):
        raise DataError(f"the run's test split ({saved.config.dataset.name}) has no images to measure on")
    module = ImageClassifier(saved, export_head=True).cpu()
    eager = export_check.eager_outputs(module, images)
    kind = PROBABILITIES if saved.thresholds is not None else "logits"
    one, batch = as_float(images[:1]), as_float(bench_timing.batch_of(images))
    names = list(options.formats) + (["compile"] if options.compile else [])
    with tempfile.TemporaryDirectory(prefix="cnntrain-bench-") as folder:
        live: list[tuple[Row, bench_timing.Runner]] = []
        rows: list[Row] = []
        for name in names:
            say(f"preparing {name}")
            row, run = _prepare(name, saved, module, Path(folder), options, overrides, say, one, batch)
            if name == "eager":
                row.load_seconds, row.size_bytes = load_seconds, saved.checkpoint_path.stat().st_size
            rows.append(row)
            if run is not None:
                _score(row, run, eager, images, labels, kind, saved.thresholds)
                live.append((row, run))
        timings = {row.name: bench_timing.Timing() for row, _ in live}
        for round_ in range(bench_timing.ROUNDS):
            say(f"timing round {round_ + 1} of {bench_timing.ROUNDS}")
            for row, run in live:
                timings[row.name].keep_best(bench_timing.measure(run, one, batch, options.runs))
    for row, _ in live:
        timing = timings[row.name]
        row.p50_ms, row.p95_ms, row.throughput = timing.p50_ms, timing.p95_ms, timing.throughput
    result = {
        "run_dir": str(saved.run_dir),
        "checkpoint": str(saved.checkpoint_path),
        "epoch": saved.epoch,
        "model": str(saved.config.model.name),
        "split": "test",
        "images": len(images),
        "metric": "map" if kind == PROBABILITIES else "acc",
        "accuracy_budget_pt": float(options.accuracy_budget),
        "optimize": options.optimize,
        "latency_runs": options.runs,
        "throughput_batch": bench_timing.BATCH,
        "rounds": bench_timing.ROUNDS,
        "torch_threads": torch.get_num_threads(),
        "runtime_threads": options.threads,
        "cpu_count": os.cpu_count(),
        "cpu": cpu(),
        "rows": [asdict(row) for row in rows],
        "recommendation": bench_table.recommend(
            [asdict(row) for row in rows],
            float(options.accuracy_budget),
            options.optimize,
            "mAP" if kind == PROBABILITIES else "accuracy",
        ),
        "versions": versions(),
    }
    path = RunDir(saved.run_dir).bench_json
    write_text(path, json.dumps(result, indent=2, allow_nan=False) + "\n", root=saved.run_dir)
    return result


def _prepare(
    name: str,
    saved: SavedRun,
    module: ImageClassifier,
    folder: Path,
    options: Options,
    overrides: Sequence[str],
    say: Callable[[str], None],
    one: np.ndarray,
    batch: np.ndarray,
) -> tuple[Row, bench_timing.Runner | None]:
    """The row and the callable that runs it; no callable for a row skipped or failed (its reason set)."""
    torch_threads = f"torch {torch.get_num_threads()}"
    if name == "eager":
        return Row(name, "float32", threads=torch_threads), bench_timing.torch_runner(module)
    if name == "eager-bf16":
        row = Row(name, "bfloat16 autocast", threads=torch_threads)
        reason = bench_timing.no_native_bf16()
        if reason:
            row.status, row.reason = "skipped", reason
            return row, None
        return row, bench_timing.torch_runner(module, torch.bfloat16)
    if name == "compile":
        row = Row(name, "float32", threads=torch_threads, exporter="torch.compile (inductor)")
        compiled = torch.compile(module)
        run = bench_timing.torch_runner(compiled)
        try:  # the first call of each batch size compiles: batch 1, the throughput batch, the scoring batch
            scoring = np.resize(batch, (64, *batch.shape[1:]))
            _, row.compile_seconds = bench_timing.timed(lambda: [run(one), run(batch), run(scoring)])
        except Exception as err:  # inductor's errors (no C compiler, an op it cannot lower) are its own types
            row.status, row.reason = "failed", f"torch.compile: {first_line(err)}"
            return row, None
        row.load_seconds = row.compile_seconds
        return row, run
    fmt, int8 = FORMATS[name]
    assert fmt is not None
    row = Row(name, "int8" if int8 else "float32", threads=str(options.threads or "runtime default"))
    try:
        check_options(fmt, int8, CALIBRATION, ACCURACY_BUDGET)
    except UserError as err:  # a missing extra where the formats were not named: the row says which
        row.status, row.reason = "skipped", first_line(err)
        return row, None
    path = folder / name / f"model{EXPORT_SUFFIXES[fmt]}"
    try:
        export_run(
            saved,
            fmt,
            path,
            root=folder,
            int8=int8,
            accuracy_budget=float(options.accuracy_budget),
            overrides=overrides,
            say=lambda line: say(f"  {name}: {line}"),
        )
    except UserError as err:  # a layer the format cannot take, a float32 file that disagrees
        row.status, row.reason = "failed", first_line(err)
        return row, None
    run, row.load_seconds = bench_timing.timed(
        lambda: export_torchscript.runner(path) if fmt == "torchscript" else load_runner(path, fmt, options.threads)
    )
    files = [path, *(export_openvino.sidecars(path) if fmt == "openvino" else [])]
    row.size_bytes = sum(file.stat().st_size for file in files)
    contract = json.loads(contract_path(path).read_text(encoding="utf-8"))  # our own, just written
    row.exporter = contract.get("exporter")
    if int8:
        row.extra = {"int8": contract.get("int8", {})}
    return row, run  # type: ignore[return-value]


class _Recording:
    """A runner that keeps what it returned, so one pass gives compare() its check and the bench its ECE."""

    def __init__(self, run: bench_timing.Runner) -> None:
        self.run = run
        self.outputs: list[np.ndarray] = []

    def __call__(self, images: np.ndarray) -> np.ndarray:
        out = np.asarray(self.run(images))
        self.outputs.append(out)
        return out


def _score(
    row: Row,
    run: bench_timing.Runner,
    eager: np.ndarray,
    images: np.ndarray,
    labels: np.ndarray,
    kind: str,
    thresholds: list[float] | None,
) -> None:
    recording = _Recording(run)
    check = export_check.compare(recording, eager, images, labels, kind, thresholds)
    row.metric, row.drop_pt, row.agreement = check.exported, check.drop_pt, 100.0 * check.top1_agreement
    if check.label_agreement is not None:
        row.label_agreement = 100.0 * check.label_agreement
    probabilities = as_probabilities(np.concatenate(recording.outputs), kind)
    row.ece = expected_calibration_error(probabilities, labels, thresholds)


def expected_calibration_error(
    probabilities: np.ndarray, labels: np.ndarray, thresholds: list[float] | None
) -> float | None:
    """ECE as the run's analysis computes it (reporting.analysis.calibration, ECE_BINS bins): of the predicted
    class's probability, or for a set of labels of every (image, label) decision (p where p >= the label's
    threshold, else 1 - p)."""
    p = torch.from_numpy(np.asarray(probabilities, dtype=np.float64))
    if thresholds is None:
        confidence, preds = p.max(dim=1)
        truth = torch.from_numpy(np.asarray(labels)).long()
    else:
        decided = p >= torch.tensor(thresholds, dtype=torch.float64)
        confidence = torch.where(decided, p, 1.0 - p).flatten()
        preds, truth = decided.long().flatten(), torch.from_numpy(np.asarray(labels)).long().flatten()
    # calibration() reads labels, preds and probability; the true-class columns are not used by it
    table = Predictions.of(truth, preds, confidence, confidence, torch.zeros_like(confidence))
    ece = float(calibration(table, ECE_BINS)["ece"])
    return ece if math.isfinite(ece) else None
