"""Outputs on a disk that refuses them: a real small filesystem (tmpfs, where this process may mount one) or a
real file-size limit (RLIMIT_FSIZE, anywhere) makes the write fail inside the OS; the run ends with one line
naming the file, exit status 2, and the file it would have replaced stays whole."""

from __future__ import annotations

import errno
import os
import resource
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from cnntrain.errors import OutputError
from cnntrain.files import write_text
from cnntrain.training.checkpoints import load_checkpoint, save_checkpoint

from helpers import TINY_RUN, assert_one_line_error, cli_env, cnntrain_command, run_main


def _mount(folder: Path, *options: str) -> bool:
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", ",".join(options), "tmpfs", str(folder)], capture_output=True)
    return done.returncode == 0


@pytest.fixture
def small_disk(tmp_path):
    """make(size) -> a folder on a tmpfs of that many bytes; skipped where this process cannot mount (not root)."""
    mounted: list[Path] = []

    def make(size: int, name: str = "disk") -> Path:
        folder = tmp_path / name
        if not _mount(folder, f"size={size}"):
            pytest.skip("mounting a small tmpfs needs root; test_run_past_a_file_size_limit covers the path")
        mounted.append(folder)
        return folder

    yield make
    for folder in mounted:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def _fill(folder: Path, leave: int) -> None:
    """Write a ballast file until only about `leave` bytes are free on the disk of `folder`."""
    free = shutil.disk_usage(folder).free
    with (folder / "ballast").open("wb") as f:
        f.write(b"\0" * max(0, free - leave))


def test_a_full_disk_keeps_the_previous_checkpoint(small_disk):
    disk = small_disk(2_000_000)
    path = disk / "checkpoints" / "last.pt"
    save_checkpoint(path, {"epoch": 1, "weights": torch.ones(1000)})
    _fill(disk, leave=64_000)
    with pytest.raises(OutputError) as raised:
        save_checkpoint(path, {"epoch": 2, "weights": torch.ones(250_000)})  # 1 MB: more than is left
    message = str(raised.value)
    assert message.startswith(f"cannot write {path}: no space left on device (needs ~")
    assert "free now" in message and "\n" not in message
    assert load_checkpoint(path)["epoch"] == 1, "the old checkpoint is whole"
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.pt"], "no temp file is left behind"
    with pytest.raises(OutputError, match=r"best\.pt: no space left on device \(needs more than \d+ KB free, "):
        save_checkpoint(path.with_name("best.pt"), {"epoch": 2, "weights": torch.ones(250_000)})


def test_a_read_only_disk_is_named_and_leaves_the_file(small_disk):
    disk = small_disk(1_000_000)
    path = disk / "summary.json"
    write_text(path, '{"old": true}\n')
    subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
    with pytest.raises(OutputError, match=r"read-only file system; write the run to a writable folder"):
        write_text(path, '{"new": true}\n')
    assert path.read_text() == '{"old": true}\n'


def test_an_error_that_is_not_the_disk_stays_what_it_is(tmp_path):
    def broken(tmp: Path) -> None:
        raise OSError(errno.EIO, "Input/output error")

    from cnntrain.files import atomic_write

    with pytest.raises(OSError) as raised:
        atomic_write(tmp_path / "x.json", broken)
    assert not isinstance(raised.value, OutputError) and raised.value.errno == errno.EIO
    assert list(tmp_path.iterdir()) == []


def _footprint(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


@pytest.mark.slow
def test_a_run_that_fills_the_disk_in_epoch_two_ends_in_one_line(small_disk, tmp_path, small_data_root):
    """Epoch 1 fits (measured by a one-epoch run of the same command); epoch 2's checkpoint does not."""
    command = [*cnntrain_command(), *TINY_RUN, "trainer.progress=false", "report.html=false", "threads=1"]
    env = cli_env(small_data_root)
    sizing = subprocess.run(
        [*command, "trainer.epochs=1", f"hydra.run.dir='{tmp_path / 'sizing'}'"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert sizing.returncode == 0, sizing.stderr
    checkpoints = tmp_path / "sizing" / "checkpoints"
    one_epoch = _footprint(tmp_path / "sizing") - _footprint(checkpoints) + 2 * (checkpoints / "last.pt").stat().st_size
    size = one_epoch + (checkpoints / "last.pt").stat().st_size // 2 + 64_000
    disk = small_disk(size)
    result = subprocess.run(
        [*command, f"hydra.run.dir='{disk / 'run'}'"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert_one_line_error(
        result, f"cannot write {disk / 'run' / 'checkpoints'}", "no space left on device", "needs ~", "free now"
    )
    last = load_checkpoint(disk / "run" / "checkpoints" / "last.pt")
    assert last["epoch"] == 1, "epoch 1's checkpoint is whole: the run can resume from it"
    assert not list((disk / "run").rglob("*.tmp"))


def _file_size_limit(limit: int):
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


@pytest.mark.slow
def test_run_past_a_file_size_limit(tmp_path, small_data_root):
    """No root needed: a file-size limit makes the kernel refuse the checkpoint's write (EFBIG) mid-file."""
    command = [
        *cnntrain_command(),
        *TINY_RUN,
        "trainer.progress=false",
        "trainer.epochs=1",
        "threads=1",
        f"hydra.run.dir='{tmp_path / 'run'}'",
    ]
    result = subprocess.run(
        command,
        cwd=tmp_path,
        env=cli_env(small_data_root),
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=_file_size_limit(100_000),
    )
    assert_one_line_error(result, f"cannot write {tmp_path / 'run' / 'checkpoints'}", "file too large")
    assert not (tmp_path / "run" / "checkpoints" / "best.pt").exists()
    assert not list((tmp_path / "run").rglob("*.tmp"))


def test_a_run_directory_on_a_read_only_disk_is_one_line(small_disk, tmp_path, monkeypatch, synthetic_data_root):
    """Hydra makes the run directory before the job starts: its refusal is the same one line."""
    from cnntrain.commands.train import main

    disk = small_disk(1_000_000)
    subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
    result = run_main(
        main,
        [*TINY_RUN, f"hydra.run.dir='{disk / 'run'}'"],
        tmp_path,
        monkeypatch,
        CNNTRAIN_DATA_ROOT=str(synthetic_data_root),
    )
    assert_one_line_error(
        result,
        f"cannot write {disk / 'run'}: read-only file system; write the run to a writable folder (hydra.run.dir=...)",
    )


@pytest.mark.slow
def test_hydra_files_past_the_limit_are_one_line(tmp_path, synthetic_data_root):
    """Hydra writes .hydra/config.yaml before the job starts; the kernel refuses it at close, which names no
    file: the line names the run's .hydra folder."""
    run_dir = tmp_path / "run"
    command = [
        *cnntrain_command(),
        *TINY_RUN,
        "trainer.progress=false",
        "trainer.epochs=1",
        "threads=1",
        f"hydra.run.dir='{run_dir}'",
    ]
    result = subprocess.run(
        command,
        cwd=tmp_path,
        env=cli_env(synthetic_data_root),
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=_file_size_limit(1_500),
    )
    assert_one_line_error(result, f"cannot write {run_dir / '.hydra'}: file too large")
    assert not (run_dir / "checkpoints").exists()


def test_a_read_only_data_folder_still_caches_in_cache_dir(small_disk, tmp_path):
    """The decode cache tries beside the data first; a read-only disk there is no error, it caches elsewhere."""
    from cnntrain.data.loading import load_data

    from helpers import compose_config
    from synthetic_images import make_folder

    disk = small_disk(4_000_000)
    make_folder(disk / "pics", rgb=False, size=12, per_class=10)
    subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
    cfg = compose_config(
        "dataset=imagefolder",
        f"dataset.root={disk / 'pics'}",
        "dataset.num_workers=0",
        f"dataset.cache_dir={tmp_path / 'cache'}",
    )
    data = load_data(cfg.dataset, seed=0)
    assert len(data.train) + len(data.val) + len(data.test) == 30
    assert list((tmp_path / "cache").rglob("*.pt")), "the decoded images were cached in dataset.cache_dir"


def test_a_full_data_disk_still_caches_in_cache_dir(small_disk, tmp_path):
    """A decode cache that does not fit beside the data (no space left) goes to dataset.cache_dir; torch's own
    writer would have raised a RuntimeError that no fallback caught."""
    from cnntrain.data.loading import load_data

    from helpers import compose_config
    from synthetic_images import make_folder

    disk = small_disk(4_000_000)
    make_folder(disk / "pics", rgb=True, size=32, per_class=40)  # 120 images: ~370 KB decoded
    _fill(disk, leave=20_000)
    cfg = compose_config(
        "dataset=imagefolder",
        f"dataset.root={disk / 'pics'}",
        "dataset.num_workers=0",
        f"dataset.cache_dir={tmp_path / 'cache'}",
    )
    data = load_data(cfg.dataset, seed=0)
    assert len(data.train) + len(data.val) + len(data.test) == 120
    assert list((tmp_path / "cache").rglob("*.pt")), "the decoded images were cached in dataset.cache_dir"
    assert not list((disk / "pics").rglob("*.tmp")), "the failed temp file beside the data is gone"
