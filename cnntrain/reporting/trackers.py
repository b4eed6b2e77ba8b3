"""What the experiment trackers (MLflow, W&B) share: where a run sits, its parameters and tags, the ids that
let a resume continue a tracked run, the files sent at the end, and the guard that keeps a failing tracker
from costing the run.

Where a run sits, from its directory alone (so it holds on every launcher and in every rank's process):

- the *outputs root* is the nearest folder named `outputs` above the run directory (`outputs/<date>/<time>`,
  `outputs/multirun/<date>/<time>/<n>`, `outputs/reproduce/...`); a run directory outside any `outputs/`
  folder uses the folder holding it, and a sweep job the folder holding its sweep directory. MLflow's default
  store is `<outputs root>/mlflow.db`.
- a *sweep job* is a run whose `.hydra/hydra.yaml` says `mode: MULTIRUN`; its sweep directory is the folder
  holding it, and the sweep's name (an MLflow experiment, a W&B group) is that folder relative to the root,
  e.g. `multirun/2026-11-23/10-00-00`.
"""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnntrain.config.flat import flatten
from cnntrain.config.saved import read_saved_yaml
from cnntrain.errors import Interrupted, UserError, first_line
from cnntrain.files import write_text
from cnntrain.reading import MAX_RUN_FILE_BYTES, json_value, read_bytes
from cnntrain.reporting.run_dir import RunDir, read_summary
from cnntrain.version import __version__

OUTPUTS = "outputs"
"""The name of the folder whose runs share one MLflow store (Hydra's default output folder)."""
NO_COMMIT = "none"  # the git_commit tag of a run made outside a git checkout (an installed wheel)


@dataclass(frozen=True)
class Place:
    """Where a run sits among the others: its outputs root, its name there, and its sweep."""

    run_dir: Path
    root: Path
    name: str  # the run directory relative to the root, e.g. 2026-11-23/10-00-00: the tracked run's name
    sweep: str | None = None  # a sweep job's sweep directory relative to the root; None for a single run
    job: int | None = None  # a sweep job's number
    overrides: tuple[str, ...] = ()  # the command-line overrides of this run (a sweep job: its own values)


def place_of(paths: RunDir) -> Place:
    """The run's place, read from its directory and the .hydra/ files Hydra left there (none: a single run)."""
    run_dir = paths.root.resolve()
    hydra = _yaml_or_none(paths.hydra_yaml)
    hydra = hydra.get("hydra", {}) if isinstance(hydra, dict) else {}
    sweep_dir = run_dir.parent if hydra.get("mode") == "MULTIRUN" else None
    root = next((folder for folder in run_dir.parents if folder.name == OUTPUTS), (sweep_dir or run_dir).parent)
    job = (hydra.get("job") or {}).get("num") if sweep_dir is not None else None
    overrides = _yaml_or_none(paths.overrides_yaml)
    return Place(
        run_dir=run_dir,
        root=root,
        name=_relative(run_dir, root),
        sweep=_relative(sweep_dir, root) if sweep_dir is not None else None,
        job=job if isinstance(job, int) else None,
        overrides=tuple(str(o) for o in overrides) if isinstance(overrides, list) else (),
    )


def flat_config(config: dict[str, Any]) -> dict[str, Any]:
    """The run's resolved config as dotted keys (`optimizer.lr`), the form trackers show parameters in; lists stay
    whole (`dataset.input_shape: [1, 28, 28]`)."""
    return flatten(config)


def run_tags(config: dict[str, Any], place: Place) -> dict[str, str]:
    """What tells runs apart at a glance: model, dataset, git commit, cnntrain version, and a sweep job's sweep,
    number and overrides."""
    from cnntrain.reporting.provenance import git_commit

    git = git_commit()
    tags = {
        "model": str(config["model"]["name"]),
        "dataset": str(config["dataset"]["name"]),
        "cnntrain_version": __version__,
        "git_commit": git["commit"] if git else NO_COMMIT,
        "git_dirty": str(bool(git and git["dirty"])).lower(),
        "run_dir": str(place.run_dir),
    }
    if place.sweep is not None:
        tags["sweep"] = place.sweep
        tags["job"] = str(place.job)
    if place.overrides:
        tags["overrides"] = " ".join(place.overrides)
    return tags


def tracker_id(paths: RunDir, tracker: str) -> dict[str, Any] | None:
    """What the run directory remembers of its run in `tracker` (its id, the store), or None."""
    entry = _tracker_ids(paths).get(tracker)
    return entry if isinstance(entry, dict) else None


def save_tracker_id(paths: RunDir, tracker: str, entry: dict[str, Any]) -> None:
    """Remember the tracked run, so that `cnntrain resume=RUN_DIR` continues it instead of starting another."""
    ids = _tracker_ids(paths)
    ids[tracker] = entry
    write_text(paths.tracker_ids, json.dumps(ids, indent=2) + "\n")


def artifact_files(paths: RunDir, with_checkpoint: bool) -> list[tuple[Path, str | None]]:
    """The files a tracker keeps at the end, as (file, folder in the tracked run): the pictures (the analysis's
    and the multi-label ones too), report.html and summary.json the run wrote, and checkpoints/best.pt when asked
    for, so the tracker's page shows what the run directory holds."""
    kept = (*paths.tracked_pictures, paths.report_html, paths.summary_json)
    files: list[tuple[Path, str | None]] = [(path, None) for path in kept]
    if with_checkpoint:
        files.append((paths.best, paths.checkpoints.name))
    return [(path, folder) for path, folder in files if path.is_file()]


def run_outcome(paths: RunDir) -> str:
    """How the run that closes its loggers ended: done (summary.json says so), stopped (Ctrl-C, SIGTERM, or
    no error on the way out: it can be resumed) or failed. Called while the run's error, if any, is in flight."""
    try:
        done = read_summary(paths.summary_json).get("status") == "done"
    except UserError:
        done = False
    error = sys.exc_info()[1]
    if done and error is None:
        return "done"
    return "stopped" if error is None or isinstance(error, (KeyboardInterrupt, Interrupted)) else "failed"


def table_text(table: Any) -> str:
    """A rich table (the model summary) as plain monospaced text."""
    from rich.console import Console

    buffer = io.StringIO()
    Console(file=buffer, width=120, no_color=True, force_terminal=False, force_jupyter=False).print(table)
    return buffer.getvalue()


class Guarded:
    """Any logger whose failure costs only itself: the first exception it raises (opening it included) becomes
    one warning line on stderr, and from then on every call to it does nothing. Ctrl-C still goes through.

    Every method of the wrapped logger is guarded the same way, whatever the Logger protocol adds later.
    """

    def __init__(self, name: str, make: Callable[[], Any]) -> None:
        self.name = name
        self.inner: Any = None
        try:
            self.inner = make()
        except Exception as err:  # the package, the server, the disk: whatever fails, the run goes on without it
            self._stop(err)

    def __getattr__(self, method: str) -> Callable[..., Any]:
        if method.startswith("_"):
            raise AttributeError(method)

        def call(*args: Any, **kwargs: Any) -> Any:
            if self.inner is None:
                return None
            try:
                return getattr(self.inner, method)(*args, **kwargs)
            except Exception as err:
                self._stop(err)
                return None

        return call

    def _stop(self, err: Exception) -> None:
        self.inner = None
        print(f"warning: {self.name} logger stopped: {first_line(err)}; the run goes on", file=sys.stderr, flush=True)


def _tracker_ids(paths: RunDir) -> dict[str, Any]:
    try:
        found = json_value(
            read_bytes(paths.tracker_ids, MAX_RUN_FILE_BYTES, "trackers file"), "trackers file", str(paths.tracker_ids)
        )
    except (OSError, ValueError, UserError):  # missing, torn, not a regular file, too large or too deep: none
        return {}
    return found if isinstance(found, dict) else {}


def _yaml_or_none(path: Path) -> Any:
    try:
        return read_saved_yaml(path) if path.is_file() else None
    except UserError:
        return None


def _relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()
