"""A finished run and a finished sweep as Python objects: their files read back, their model put to work.

`Run` is a view over one run directory (RunDir): the summary, the per-epoch metrics and the config are read
from its files when asked for; `model`, `predict`, `evaluate` and `export` call the functions that
cnntrain-predict, cnntrain-eval and cnntrain-export call (cnntrain.inference) on its checkpoint, and `serve` what
cnntrain-serve runs (cnntrain.serving). `Sweep` is a
view over a sweep directory. Both show themselves in a notebook with the report page's pieces
(cnntrain.reporting.page). Torch is imported only by the methods that need a model.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cnntrain.config.compose import override_value
from cnntrain.config.saved import run_config_data
from cnntrain.errors import ConfigError, UserError
from cnntrain.reporting.html import esc
from cnntrain.reporting.run_dir import SWEEP_SUMMARY_CSV, RunDir, read_metrics, read_summary

if TYPE_CHECKING:  # names for the annotations only: torch and omegaconf are imported when a method needs them
    from omegaconf import DictConfig
    from torch import nn

    from cnntrain.inference.load import SavedRun


ImagesOrPaths = Any  # a path, a list of paths, or images: uint8 0..255 or float 0..1, [N,C,H,W], [N,H,W], [C,H,W]


class Run:
    """One run directory written by cnntrain (by `cnntrain ...`, `cnntrain.train` or a sweep's job)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        root = Path(path).expanduser()
        if not root.is_dir():
            raise UserError(f"run directory not found: {root}")
        if (root / SWEEP_SUMMARY_CSV).is_file() or not (
            RunDir(root).hydra.is_dir() or RunDir(root).summary_json.is_file()
        ):
            what = (
                "a sweep directory (open it with cnntrain.Sweep(path))"
                if (root / SWEEP_SUMMARY_CSV).is_file()
                else "not a run directory: it has neither .hydra/ nor summary.json"
            )
            raise UserError(f"{root} is {what}")
        self.dir = root.resolve()

    def __fspath__(self) -> str:
        """The run directory: a Run is accepted wherever a path is (resume=run, Path(run), os.fspath(run))."""
        return str(self.dir)

    def __repr__(self) -> str:
        summary = self._summary_or_none()
        status = (summary or {}).get("status", "running or stopped")
        acc = _dig(summary, "test", "acc")
        result = f", test/acc {100 * acc:.2f}%" if isinstance(acc, (int, float)) else ""
        return f"Run('{self.dir}', {status}{result})"

    @property
    def summary(self) -> dict[str, Any]:
        """summary.json as a dict (test metrics, best epoch, sizes, timing, versions); {} until the run ends."""
        return read_summary(RunDir(self.dir).summary_json)

    @property
    def metrics(self) -> list[dict[str, float | int | None]]:
        """metrics.csv: one dict per epoch (epoch, train/loss, train/acc, val/loss, val/acc, lr, seconds)."""
        path = RunDir(self.dir).metrics_csv
        if not path.is_file():
            return []
        return [{key: _number(value) for key, value in row.items()} for row in read_metrics(path)]

    def metrics_frame(self) -> Any:
        """The per-epoch metrics as a pandas DataFrame indexed by epoch (pandas is not a dependency of cnntrain)."""
        try:
            import pandas  # an optional dependency
        except ImportError:
            raise UserError(
                "Run.metrics_frame() needs pandas (pip install pandas); Run.metrics has the same rows as dicts"
            ) from None
        return pandas.DataFrame(self.metrics).set_index("epoch")

    @property
    def config(self) -> DictConfig:
        """The run's composed config (.hydra/config.yaml) as a DictConfig. It is read as data: references between
        its own keys still resolve, but a resolver such as ${oc.env:...} is kept as the text it was."""
        from omegaconf import OmegaConf  # omegaconf: only when the config is asked for

        return OmegaConf.create(run_config_data(RunDir(self.dir).config_yaml))

    def model(self, checkpoint: str = "best", device: str = "cpu") -> nn.Module:
        """The trained model (checkpoint: best, last or a .pt path) in eval mode, taking images as uint8 0..255
        or float 0..1, [N,C,H,W] or [N,H,W], and normalising them as training did; it returns the network's outputs
        (logits, or log-probabilities for a model that ends in log_softmax). `.classes` names them;
        `.probabilities(images)` and `.predictions(images, top_k)` add the run's test-time augmentation and the
        task's head (cnntrain.inference.classifier.ImageClassifier)."""
        from cnntrain.inference.classifier import ImageClassifier  # torch: only when a model is asked for

        return ImageClassifier(self._saved(checkpoint, device))

    def predict(
        self, images_or_paths: ImagesOrPaths, top_k: int = 5, checkpoint: str = "best", device: str = "cpu"
    ) -> list[Any]:
        """The top_k (class, probability) pairs of each image, most likely first, as cnntrain-predict computes them
        (a multi-label run: each image's labels at or above their thresholds and its top_k labels, as
        cnntrain-predict --json gives them). Image files are read as the training images were (colour, resize);
        tensors and arrays must have the model's input size."""
        from cnntrain.inference.predict import predict  # torch: only when a model is asked for

        if not isinstance(top_k, int) or top_k < 1:
            raise ConfigError(f"top_k={top_k!r}: must be a whole number >= 1")
        return predict(self._saved(checkpoint, device), images_or_paths, top_k)

    def evaluate(
        self, checkpoint: str = "best", device: str = "auto", batch_size: int | None = None, **data_overrides: Any
    ) -> dict[str, Any]:
        """Test the run's model again, as cnntrain-eval does: on its own test split, or on other data given as
        data_root=... or **{"dataset.root": ...}. Writes eval_summary.json into the run directory and returns it."""
        from cnntrain.config.validate import check_device  # omegaconf, rich, torch: only when a model is asked for
        from cnntrain.inference.evaluate import evaluate
        from cnntrain.reporting.console import Reporter

        if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
            raise ConfigError(
                f"batch_size={batch_size!r}: must be a whole number >= 1 (None: the run's trainer.eval_batch_size)"
            )
        check_device(device)
        overrides = [f"{key}={override_value(value)}" for key, value in data_overrides.items()]
        return evaluate(self.dir, overrides, Reporter(), checkpoint=checkpoint, device=device, batch_size=batch_size)

    def export(
        self,
        format: str = "torchscript",
        path: str | os.PathLike[str] | None = None,
        checkpoint: str = "best",
        *,
        int8: bool = False,
        calibration: int = 300,
        accuracy_budget: float = 0.5,
    ) -> Path:
        """Write the model as cnntrain-export does (torchscript, pt2, onnx or openvino, normalisation built in,
        checked against the eager model on the run's test images, a JSON contract beside it; int8 for onnx and
        openvino); returns the file's path (default: export/model.EXT, model-int8.EXT, in the run)."""
        from cnntrain.inference.export import (  # torch: only when asked for
            FORMATS,
            check_options,
            check_output,
            export_run,
            export_target,
        )

        if format not in FORMATS:
            raise ConfigError(f"format={format!r}: expected one of {', '.join(sorted(FORMATS))}")
        check_options(format, int8, calibration, accuracy_budget)
        target, root = export_target(self.dir, format, int8, Path(path) if path is not None else None)
        check_output(target, format)
        saved = self._saved(checkpoint, "cpu")
        return export_run(
            saved,
            format,
            target,
            root=root,
            int8=int8,
            calibration=calibration,
            accuracy_budget=accuracy_budget,
            say=print,
        )

    def serve(self, format: str = "eager", checkpoint: str = "best", device: str = "cpu", **options: Any) -> None:
        """Serve the model over HTTP as cnntrain-serve does (docs/serving.md), until SIGTERM or Ctrl-C: the
        checkpoint (eager) or the run's export of `format` (onnx, openvino, pt2, onnx-int8, openvino-int8);
        `options` are cnntrain-serve's, spelt as Python names (host, port, max_batch_size, batch_timeout_ms,
        workers, top_k, queue, max_body_mb, max_images, body_timeout_s, keep_alive_s). Call it from the main thread:
        it blocks."""
        from cnntrain.serving.app import ServeOptions, check_options, serve  # litserve: only when asked for
        from cnntrain.serving.model import model_source

        unknown = sorted(set(options) - set(ServeOptions.__dataclass_fields__))
        if unknown:
            raise ConfigError(
                f"serve() got {', '.join(unknown)}; it takes {', '.join(ServeOptions.__dataclass_fields__)}"
            )
        chosen = ServeOptions(**options)
        check_options(chosen, str)
        serve(model_source(self.dir, format, checkpoint, device), chosen)

    def benchmark(
        self,
        formats: str | list[str] | tuple[str, ...] | None = None,
        *,
        runs: int | None = None,
        images: int | None = None,
        accuracy_budget: float | None = None,
        compile: bool = False,
        optimize: str = "latency",
        threads: int | None = None,
        checkpoint: str = "best",
        **data_overrides: Any,
    ) -> dict[str, Any]:
        """Measure the model as cnntrain-bench does (eager fp32 and bf16, torch.compile with compile=True, each
        exported format in fp32 and int8) on the run's test split; writes bench.json into the run directory and
        returns it: the rows and the recommendation, the fastest format within `accuracy_budget` points (None:
        cnntrain-bench's defaults, 100 runs, 2,000 images, cnntrain-export's 0.5 pt budget)."""
        from cnntrain.inference.bench import DEFAULT_FORMATS, Options, bench_run, parse_formats  # torch: lazy

        names = DEFAULT_FORMATS if formats is None else formats
        if isinstance(names, str):
            names = parse_formats(names)
        options = Options(
            formats=tuple(names),
            named=formats is not None,
            compile=compile,
            optimize=optimize,
            threads=threads,
        )
        for key, value in (("runs", runs), ("images", images), ("accuracy_budget", accuracy_budget)):
            if value is not None:
                setattr(options, key, value)
        options.check()
        overrides = [f"{key}={override_value(value)}" for key, value in data_overrides.items()]
        return bench_run(self.dir, options, checkpoint=checkpoint, overrides=overrides)

    def _repr_html_(self) -> str:
        from cnntrain.reporting.page import run_fragment  # rich: only when a notebook shows the run

        try:
            return run_fragment(self.dir)
        except UserError as err:
            return f"<p>{esc(repr(self))}: {esc(str(err))}</p>"

    def _saved(self, checkpoint: str, device: str) -> SavedRun:
        from cnntrain.config.validate import check_device  # omegaconf, torch: only when a model is asked for
        from cnntrain.device import resolve_device
        from cnntrain.inference.load import load_run

        check_device(device)
        return load_run(self.dir, checkpoint, resolve_device(device))

    def _summary_or_none(self) -> dict[str, Any] | None:
        try:
            return self.summary
        except UserError:
            return None


class Sweep:
    """One sweep directory written by `cnntrain -m` or `cnntrain.sweep`: its jobs, their table, the best one."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        root = Path(path).expanduser()
        if not root.is_dir():
            raise UserError(f"sweep directory not found: {root}")
        self.dir = root.resolve()

    def __repr__(self) -> str:
        return f"Sweep('{self.dir}', {len(self.runs)} jobs)"

    @property
    def runs(self) -> list[Run]:
        """Every job of the sweep, in job order (0, 1, 2, ...)."""
        jobs = [d for d in self.dir.iterdir() if d.is_dir() and RunDir(d).overrides_yaml.is_file()]
        return [Run(d) for d in sorted(jobs, key=lambda d: (not d.name.isdigit(), d.name.zfill(12)))]

    @property
    def table(self) -> list[dict[str, Any]]:
        """The rows of sweep_summary.csv (best job first, failed jobs last), numbers as numbers."""
        path = self.dir / SWEEP_SUMMARY_CSV
        if not path.is_file():
            raise UserError(f"{path} not found: the sweep has not finished (or was not run by cnntrain)")
        with path.open(newline="", encoding="utf-8") as f:
            return [
                {
                    key: _number(value) if key not in ("job", "status", "overrides", "monitor", "error") else value
                    for key, value in row.items()
                }
                for row in csv.DictReader(f)
            ]

    @property
    def best(self) -> Run:
        """The job with the best value of the monitored metric (trainer.checkpoint.monitor)."""
        from cnntrain.reporting.sweep_rows import collect  # rich: only when the best job is asked for

        done = [row for row in collect(self.dir) if row.status == "done"]
        if not done:
            raise UserError(f"no job of the sweep {self.dir} finished, so none is best")
        return Run(self.dir / done[0].job)

    def _repr_html_(self) -> str:
        from cnntrain.reporting.sweep_page import sweep_fragment  # rich: only when a notebook shows it
        from cnntrain.reporting.sweep_rows import collect

        return sweep_fragment(self.dir, collect(self.dir))


def _number(text: str | None) -> float | int | str | None:
    if text is None or text == "":
        return None
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def _dig(data: Any, *keys: str) -> Any:
    for key in keys:
        data = data.get(key) if isinstance(data, dict) else None
    return data
