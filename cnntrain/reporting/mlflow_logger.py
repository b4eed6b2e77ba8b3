"""The MLflow logger (`logger=[csv,mlflow]`): one MLflow run per cnntrain run, offline by default.

The store is `mlflow.tracking_uri`, else `$MLFLOW_TRACKING_URI`, else a SQLite file in the outputs root
(`sqlite:///<outputs root>/mlflow.db`, see cnntrain.reporting.trackers for the root), with the runs' artifacts
in `<outputs root>/mlartifacts/`; `mlflow ui --backend-store-uri sqlite:///outputs/mlflow.db` shows it.
A single run goes to the experiment `cnntrain` (or `mlflow.experiment`); a sweep's jobs to one experiment
named after the sweep directory, one MLflow run per job. Parallel jobs share a SQLite store through a lock file
beside it (`mlflow.db.lock`), so no job meets a locked database. The run id is kept in the run directory's
trackers.json: a resumed run continues its MLflow run. The mlflow package is an optional extra, imported
only here, and only once a run opens the logger.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cnntrain.config.names import MONITORS, STEP_COLUMNS
from cnntrain.config.schema import MLflowConfig
from cnntrain.errors import ConfigError, did_you_mean
from cnntrain.reporting.run_dir import RunDir
from cnntrain.reporting.trackers import (
    NO_COMMIT,
    artifact_files,
    flat_config,
    place_of,
    run_outcome,
    run_tags,
    save_tracker_id,
    table_text,
    tracker_id,
)

TRACKER = "mlflow"
URI_ENV = "MLFLOW_TRACKING_URI"
STORE_FILE = "mlflow.db"  # in the outputs root
ARTIFACTS_DIR = "mlartifacts"  # beside a SQLite store: the artifacts of its runs
DEFAULT_EXPERIMENT = "cnntrain"
SCHEMES = ("sqlite", "postgresql", "mysql", "mssql", "http", "https", "databricks")
"""The tracking stores MLflow 3 writes to (a database, a tracking server, Databricks); `+driver` may follow a
database's name (postgresql+psycopg2). File stores (`file:`, a bare path) are no longer created by MLflow 3."""
STATUS = {"done": "FINISHED", "stopped": "KILLED", "failed": "FAILED"}
STEP_SERIES = STEP_COLUMNS[2:]  # a step row's values after its two axes (the global step, the fractional epoch)
HTTP_RETRIES = "3"  # MLflow's default (7, with back-off) waits minutes on an unreachable server before it fails


def check_tracking_uri(configured: str | None) -> None:
    """A tracking URI MLflow can write to, by its form (nothing is contacted or created): a ConfigError naming
    it, and where it came from, when its scheme is unknown or it lacks a host or a path."""
    uri, source = (configured, "mlflow.tracking_uri") if configured else (os.environ.get(URI_ENV), URI_ENV)
    if not uri:
        return
    where = f"{source}={uri}"
    scheme, has_scheme, rest = uri.partition(":")
    base = scheme.split("+")[0].lower()
    if not has_scheme or base == "file" or len(scheme) == 1:  # a bare path, file:, or a Windows drive letter
        raise ConfigError(
            f"{where}: MLflow 3 no longer creates file stores; use a database such as "
            f"sqlite:///PATH/mlflow.db, or a tracking server http://HOST:PORT"
        )
    if base not in SCHEMES:
        raise ConfigError(
            f"{where}: unsupported scheme '{scheme}'{did_you_mean(base, SCHEMES)}; expected "
            f"sqlite:///PATH, http(s)://HOST[:PORT], postgresql://..., mysql://..., mssql://... "
            f"or databricks"
        )
    if base == "sqlite" and (not rest.startswith("///") or not rest[3:]):
        raise ConfigError(f"{where}: expected sqlite:///RELATIVE/PATH.db or sqlite:////ABSOLUTE/PATH.db")
    if base in ("http", "https", "postgresql", "mysql", "mssql"):
        parts = urlsplit(uri)
        try:
            host, _ = parts.hostname, parts.port
        except ValueError as err:
            raise ConfigError(f"{where}: {err}") from None
        if not rest.startswith("//") or not host:
            raise ConfigError(f"{where}: names no host; expected {scheme}://HOST[:PORT]")


def where_logged(run_id: str, uri: str) -> str:
    """The line a run ends with: which MLflow run, in which store, and how to look at it."""
    if urlsplit(uri).scheme in ("http", "https"):
        return f"mlflow: run {run_id} logged to {uri}"
    return f"mlflow: run {run_id} logged to {uri}; look with: mlflow ui --backend-store-uri {uri}"


def tracking_uri(configured: str | None, root: Path) -> str:
    """The configured URI, else $MLFLOW_TRACKING_URI, else the SQLite store in the outputs root."""
    return configured or os.environ.get(URI_ENV) or f"sqlite:///{(root / STORE_FILE).resolve()}"


class MLflowLogger:
    """One MLflow run: the flattened config as params, tags, every epoch's metrics (step = epoch), the per-step
    loss and learning rate (step = global optimizer step), the test metrics, and at the end the run's pictures
    and summary.json (and best.pt when mlflow.log_checkpoint is set) as artifacts."""

    def __init__(self, settings: MLflowConfig, config: dict[str, Any], paths: RunDir) -> None:
        """`config`: the run's resolved config as plain data (its parameters and tags)."""
        from mlflow.tracking import MlflowClient

        _quiet_logging()
        self.paths = paths
        self.place = place_of(paths)
        self.uri = tracking_uri(settings.tracking_uri, self.place.root)
        if urlsplit(self.uri).scheme in ("http", "https"):
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", HTTP_RETRIES)
        self.store = _sqlite_path(self.uri)
        if self.store is not None:
            self.store.parent.mkdir(parents=True, exist_ok=True)
        self.with_checkpoint = settings.log_checkpoint
        with self._lock():  # a new SQLite store is created (its tables migrated) when the client opens it
            self.client = MlflowClient(tracking_uri=self.uri)
            self.run_id = self._continued() or self._started(settings.experiment, config)
            save_tracker_id(paths, TRACKER, {"run_id": self.run_id, "tracking_uri": self.uri})
            self._log_params(flat_config(config))

    def log_model(self, table: Any) -> None:
        with self._lock():
            self.client.log_text(self.run_id, table_text(table), "model.txt")

    def log_epoch(self, row: dict[str, Any]) -> None:
        self._log_metrics([(name, row[name], int(row["epoch"])) for name in MONITORS if name in row])

    def log_steps(self, rows: list[dict[str, float]]) -> None:
        self._log_metrics([(name, row[name], int(row["step"])) for row in rows for name in STEP_SERIES])

    def log_test(self, metrics: dict[str, float], step: int, misclassified: Any) -> None:
        self._log_metrics([(name, value, step) for name, value in metrics.items()])

    def close(self) -> None:
        """Keep the run's files, then mark the run finished (or killed, or failed, by how the run ended)."""
        outcome = run_outcome(self.paths)
        with self._lock():
            for path, folder in artifact_files(self.paths, self.with_checkpoint):
                self.client.log_artifact(self.run_id, str(path), folder)
            self.client.set_terminated(self.run_id, STATUS[outcome])
        print(where_logged(self.run_id, self.uri), flush=True)

    def _continued(self) -> str | None:
        """The run id trackers.json keeps for this store (a resume), set running again; None for a new run."""
        from mlflow.exceptions import MlflowException

        saved = tracker_id(self.paths, TRACKER)
        if not saved or saved.get("tracking_uri") != self.uri or not isinstance(saved.get("run_id"), str):
            return None
        try:
            self.client.update_run(saved["run_id"], status="RUNNING")
        except MlflowException:  # deleted from the store since: start a new one
            return None
        return saved["run_id"]

    def _started(self, experiment: str | None, config: dict[str, Any]) -> str:
        experiment = experiment or self.place.sweep or DEFAULT_EXPERIMENT
        tags = run_tags(config, self.place)
        if tags["git_commit"] != NO_COMMIT:
            tags["mlflow.source.git.commit"] = tags["git_commit"]  # shown by MLflow's UI
        run = self.client.create_run(self._experiment_id(experiment), run_name=self.place.name, tags=tags)
        return run.info.run_id

    def _experiment_id(self, name: str) -> str:
        """The experiment called `name`, created (with its artifacts beside a SQLite store) or restored."""
        from mlflow.exceptions import MlflowException

        found = self.client.get_experiment_by_name(name)
        if found is None:
            location = (self.store.parent / ARTIFACTS_DIR).as_uri() if self.store is not None else None
            try:
                return self.client.create_experiment(name, artifact_location=location)
            except MlflowException:  # another job of the sweep made it first (a server store has no lock here)
                found = self.client.get_experiment_by_name(name)
                if found is None:
                    raise
        if found.lifecycle_stage == "deleted":
            self.client.restore_experiment(found.experiment_id)
        return found.experiment_id

    def _log_params(self, params: dict[str, Any]) -> None:
        """The params the run does not have yet: a resumed run keeps its first values (MLflow refuses changes)."""
        from mlflow.entities import Param
        from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH, MAX_PARAMS_TAGS_PER_BATCH

        known = self.client.get_run(self.run_id).data.params
        new = [Param(key, str(value)[:MAX_PARAM_VAL_LENGTH]) for key, value in params.items() if key not in known]
        for start in range(0, len(new), MAX_PARAMS_TAGS_PER_BATCH):
            self.client.log_batch(self.run_id, params=new[start : start + MAX_PARAMS_TAGS_PER_BATCH])

    def _log_metrics(self, values: list[tuple[str, float, int]]) -> None:
        from mlflow.entities import Metric
        from mlflow.utils.validation import MAX_METRICS_PER_BATCH

        now = int(time.time() * 1000)
        metrics = [Metric(name, float(value), now, step) for name, value, step in values]
        with self._lock():
            for start in range(0, len(metrics), MAX_METRICS_PER_BATCH):
                self.client.log_batch(self.run_id, metrics=metrics[start : start + MAX_METRICS_PER_BATCH])

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        """For a SQLite store, one writer at a time across processes (parallel sweep jobs): SQLite itself would
        answer a second writer with "database is locked", and two new jobs would both create the tables."""
        if self.store is None:
            yield
            return
        import fcntl

        with (self.store.parent / f"{self.store.name}.lock").open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield


def _sqlite_path(uri: str) -> Path | None:
    """The database file of a sqlite:/// URI (relative to this folder, or absolute with four slashes)."""
    if not uri.lower().startswith("sqlite:///"):
        return None
    return Path(uri[len("sqlite:///") :].split("?", 1)[0])


def _quiet_logging() -> None:
    """MLflow and alembic announce every table they create on stderr; a run's stderr is for problems."""
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
