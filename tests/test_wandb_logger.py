"""logger=[csv,wandb] with the real wandb package, offline: the run's records in RUN_DIR/wandb/ (read from the
.wandb file W&B writes), the upload line, a sweep's jobs in one group, and a resumed run keeping its id."""

from __future__ import annotations

import csv
import importlib.util
import json
import re
import struct
import time
from pathlib import Path

import pytest

import cnntrain
from cnntrain.commands import train
from cnntrain.config.names import EPOCH_METRICS, STEP_LOSS

from helpers import TINY_RUN, run_main, run_stopped_in_epoch

needs_extra = pytest.mark.skipif(
    importlib.util.find_spec("wandb") is None, reason="wandb is not installed: pip install 'cnntrain[wandb]'"
)  # found, not imported: collection stays quick
pytestmark = needs_extra


BLOCK, HEADER = 32768, 7  # the .wandb file: a 7-byte file header, then records in 32 KiB blocks (LevelDB's log)


def read_records(path: Path) -> list:
    """Every record of a .wandb file, as wandb's own protobuf messages (wandb 0.31 ships no reader)."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B", "not a W&B transaction log"
    records, pos, pending = [], HEADER, b""
    while pos + HEADER <= len(data):
        left = BLOCK - pos % BLOCK
        if left < HEADER:  # a block's tail too short for a record header is padding
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + HEADER])
        if kind == 0:
            pos += left
            continue
        pending += data[pos + HEADER : pos + HEADER + length]
        pos += HEADER + length
        if kind in (1, 4):  # a whole record, or the last piece of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


def finished_records(path: Path, timeout: float = 60) -> list:
    """The records of a finished run: W&B's service process may still be writing the file when finish()
    returns, so wait for the exit record, which comes last."""
    deadline = time.monotonic() + timeout
    while True:
        records = read_records(path) if path.is_file() else []
        if any(r.WhichOneof("record_type") == "exit" for r in records) or time.monotonic() > deadline:
            return records
        time.sleep(0.1)


def offline_runs(run_dir: Path) -> list[Path]:
    """W&B's offline folders, oldest first: offline-run-<date>_<time>-<id>, and a '-N' suffix when a resume
    starts within the same second as the earlier start."""
    return sorted((run_dir / "wandb").glob("offline-run-*"), key=lambda p: (p.name.split("-")[2], p.name))


def run_id_of(folder: Path) -> str:
    """The W&B run id in an offline folder's name (its '-N' same-second suffix dropped)."""
    match = re.fullmatch(r"offline-run-\d{8}_\d{6}-(.+?)(-\d+)?", folder.name)
    assert match, folder.name
    return match.group(1)


def history(records: list) -> list[dict[str, float]]:
    rows = []
    for record in records:
        if record.WhichOneof("record_type") == "history":
            rows.append(
                {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in record.history.item}
            )
    return rows


def the_run(records: list):
    (run,) = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    return run


def csv_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def synthetic_data_root(small_data_root: Path) -> Path:
    """A tracker logs what the run writes, whatever the data: the runs here train on the small set."""
    return small_data_root


@pytest.fixture(autouse=True)
def offline_by_default(monkeypatch):
    for key in ("WANDB_MODE", "WANDB_PROJECT", "WANDB_DIR", "WANDB_RUN_ID", "WANDB_RESUME"):
        monkeypatch.delenv(key, raising=False)


@pytest.mark.slow
def test_an_offline_run_is_written_into_the_run_directory(tmp_path, train_cli):
    run_dir = tmp_path / "run"
    result = train_cli(run_dir, "logger=[csv,wandb]", "report.plots=true")
    assert "warning" not in result.stderr, result.stderr
    (offline,) = offline_runs(run_dir)
    assert f"upload it with: wandb sync {offline}" in result.stdout
    run_id = json.loads((run_dir / "trackers.json").read_text())["wandb"]["run_id"]
    records = finished_records(offline / f"run-{run_id}.wandb")

    run = the_run(records)
    assert (run.run_id, run.project, run.display_name, run.run_group) == (run_id, "cnntrain", "run", "")
    assert {"model:cnn2", "dataset:mnist", f"cnntrain_version:{cnntrain.__version__}"} <= set(run.tags)
    config = {item.key: json.loads(item.value_json) for item in run.config.update}
    assert config["model"]["name"] == "cnn2" and config["optimizer"]["lr"] == 0.001

    rows = history(records)
    epochs = csv_rows(run_dir / "metrics.csv")
    steps = csv_rows(run_dir / "steps.csv")
    logged_epochs = [row for row in rows if "val/acc" in row]
    assert [row["epoch"] for row in logged_epochs] == [1, 2]
    for row, expected in zip(logged_epochs, epochs):
        for key in EPOCH_METRICS:
            assert row[key] == pytest.approx(float(expected[key]), rel=1e-6), key
    assert [row["_step"] for row in rows if STEP_LOSS in row] == [int(float(s["step"])) for s in steps]
    assert [row[STEP_LOSS] for row in rows if STEP_LOSS in row] == pytest.approx([float(s[STEP_LOSS]) for s in steps])
    assert [row["lr"] for row in rows if "lr" in row] == pytest.approx([float(s["lr"]) for s in steps])
    summary = json.loads((run_dir / "summary.json").read_text())
    assert [row["test/acc"] for row in rows if "test/acc" in row] == [pytest.approx(summary["test"]["acc"])]

    saved = {f.path for r in records if r.WhichOneof("record_type") == "files" for f in r.files.files}
    assert {
        "summary.json",
        "curves.png",
        "confusion_matrix.png",
        "misclassified.png",
        "model.txt",
        "report.html",
        "worst_mistakes.png",
        "reliability.png",
        "per_class.png",
    } <= saved
    assert json.loads((offline / "files" / "summary.json").read_text()) == summary
    assert [r.exit.exit_code for r in records if r.WhichOneof("record_type") == "exit"] == [0]


@pytest.mark.slow
def test_a_sweep_is_one_group_with_a_run_per_job(tmp_path, monkeypatch, small_data_root):
    result = run_main(
        train.main,
        [
            "-m",
            *TINY_RUN,
            "trainer.epochs=1",
            "trainer.progress=false",
            "threads=1",
            "report.plots=false",
            "seed=1,2",
            "logger=[csv,wandb]",
            "hydra.sweep.dir=outputs/multirun/seeds",
        ],
        tmp_path,
        monkeypatch,
        CNNTRAIN_DATA_ROOT=str(small_data_root),
    )
    assert result.returncode == 0, result.stderr
    assert "warning" not in result.stderr, result.stderr
    assert result.stdout.count("upload it with: wandb sync") == 2
    ids = set()
    for job in ("0", "1"):
        (offline,) = offline_runs(tmp_path / "outputs" / "multirun" / "seeds" / job)
        records = finished_records(next(offline.glob("run-*.wandb")))
        run = the_run(records)
        assert (run.run_group, run.display_name, run.job_type) == (
            "multirun/seeds",
            f"multirun/seeds/{job}",
            "sweep-job",
        )
        assert [r.exit.exit_code for r in records if r.WhichOneof("record_type") == "exit"] == [0], (
            "each job's run is finished before the next starts"
        )
        ids.add(run.run_id)
    assert len(ids) == 2


@pytest.mark.slow
def test_a_resumed_run_keeps_its_wandb_id(tmp_path, tiny_config, monkeypatch, capsys):
    from cnntrain.training.run import resume_run

    cfg = tiny_config("trainer.epochs=3", "report.plots=false", "logger=[csv,wandb]")
    run_dir = tmp_path / "stopped"
    run_stopped_in_epoch(cfg, run_dir, 2, monkeypatch)
    first_id = json.loads((run_dir / "trackers.json").read_text())["wandb"]["run_id"]
    resume_run(run_dir)
    assert json.loads((run_dir / "trackers.json").read_text())["wandb"]["run_id"] == first_id
    first, second = offline_runs(run_dir)
    assert run_id_of(first) == run_id_of(second) == first_id, "one W&B run, written twice"
    before, after = (finished_records(path / f"run-{first_id}.wandb") for path in (first, second))
    assert [r.exit.exit_code for r in before if r.WhichOneof("record_type") == "exit"] == [130]
    assert [row["epoch"] for row in history(before) if "val/acc" in row] == [1]
    assert [row["epoch"] for row in history(after) if "val/acc" in row] == [2, 3]
    steps_after = [row["_step"] for row in history(after)]
    assert min(steps_after) > max(row["_step"] for row in history(before)), "W&B's step goes on growing"
    assert "warning" not in capsys.readouterr().err
