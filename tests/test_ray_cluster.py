"""A sweep on a real Ray cluster through Hydra's Ray launcher (hydra/launcher=ray_cluster): a head node started
with the `ray` command as a user would, two jobs run as Ray tasks, the cluster stopped again.

Skipped when hydra-ray-launcher is not installed (pip install 'cnntrain[ray]')."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import cli_env, cnntrain_command

pytest.importorskip("hydra_plugins.hydra_ray_launcher", reason="pip install 'cnntrain[ray]'")

RAY_ENV = {"RAY_USAGE_STATS_ENABLED": "0"}  # no usage report; Ray reaches no other address of its own accord


def ray_command() -> list[str]:
    path = Path(sys.executable).parent / "ray"
    return [str(path)] if path.exists() else [sys.executable, "-c", "from ray.scripts.scripts import main; main()"]


def free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def processes() -> dict[int, tuple[int, int, str]]:
    """pid: (parent pid, process group, args) of every process that has not exited (zombies left out)."""
    ps = subprocess.run(["ps", "-eo", "pid=,ppid=,pgid=,stat=,args="], capture_output=True, text=True, check=True)
    rows = [line.split(None, 4) for line in ps.stdout.splitlines()]
    return {
        int(r[0]): (int(r[1]), int(r[2]), r[4] if len(r) > 4 else "")
        for r in rows
        if len(r) >= 4 and not r[3].startswith("Z")
    }


def cluster_processes(group: int) -> dict[int, str]:
    """The processes of a process group and all their descendants (Ray's workers run in groups of their own)."""
    table = processes()
    found = {pid for pid, (_, pgid, _) in table.items() if pgid == group}
    while True:
        more = {pid for pid, (ppid, _, _) in table.items() if ppid in found} - found
        if not more:
            return {pid: table[pid][2] for pid in found}
        found |= more


def still_running(cluster: dict[int, str], group: int) -> dict[int, str]:
    return {pid: args for pid, (_, pgid, args) in processes().items() if pid in cluster or pgid == group}


@pytest.fixture
def ray_head() -> Iterator[str]:
    """A one-node Ray cluster of 2 CPUs and no GPU, as `ray start --head` makes it; yields its address.

    `ray start` runs in a process group of its own, which the Ray processes it starts stay in; the raylet's
    workers are its children. The teardown ends those processes and no others: `ray stop` would end every Ray
    process on the machine, a cluster the user started included."""
    temp_dir = tempfile.mkdtemp(prefix="ray", dir="/tmp" if os.path.isdir("/tmp") else None)  # socket paths: short
    port, client_port, agent_port, dashboard_port = free_ports(4)
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | RAY_ENV
    start = subprocess.Popen(
        [
            *ray_command(),
            "start",
            "--head",
            f"--port={port}",
            "--num-cpus=2",
            "--num-gpus=0",
            f"--temp-dir={temp_dir}",
            "--include-dashboard=false",
            "--disable-usage-stats",
            f"--ray-client-server-port={client_port}",
            f"--dashboard-agent-listen-port={agent_port}",
            f"--dashboard-port={dashboard_port}",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = start.communicate(timeout=60)
        assert start.returncode == 0, output
        yield f"127.0.0.1:{port}"
    finally:
        group = start.pid  # start_new_session: the group's id is the pid of `ray start`
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGSTOP)  # the raylet starts no more workers while they are listed
        cluster = cluster_processes(group)
        for pid in cluster:  # a throwaway cluster: nothing to save, so no grace period
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        start.wait()
        deadline = time.monotonic() + 15
        while (left := still_running(cluster, group)) and time.monotonic() < deadline:
            time.sleep(0.2)
        shutil.rmtree(temp_dir, ignore_errors=True)
        assert not left, f"Ray processes left running: {left}"


@pytest.mark.slow
def test_sweep_runs_on_a_ray_cluster(ray_head, tmp_path, small_data_root):
    sweep_dir = tmp_path / "sweep"
    env = {k: v for k, v in cli_env(small_data_root, **RAY_ENV).items() if k != "RAY_ADDRESS"}
    # Ray's workers run in the folder and environment of `ray start` (here: pytest's), not of this command:
    # cnntrain pins the relative sweep directory and CNNTRAIN_DATA_ROOT as absolute paths before launching.
    result = subprocess.run(
        [
            *cnntrain_command(),
            "-m",
            "hydra/launcher=ray_cluster",
            f"hydra.launcher.ray.init.address={ray_head}",
            "model=lenet,cnn2",
            "trainer.epochs=1",
            "trainer.batch_size=64",
            "trainer.progress=false",
            "threads=1",
            "hydra.sweep.dir=sweep",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Ray Launcher is launching 2 jobs" in output
    assert "Connected to Ray cluster" in output, "joined the running cluster rather than starting one"
    assert "(_run_job pid=" in output, "the jobs ran in Ray's worker processes"
    for job, model in (("0", "lenet"), ("1", "cnn2")):
        summary = json.loads((sweep_dir / job / "summary.json").read_text())
        assert (summary["status"], summary["model"]) == ("done", model)
    with (sweep_dir / "sweep_summary.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert sorted(row["job"] for row in rows) == ["0", "1"] and {row["status"] for row in rows} == {"done"}
    assert "sweep: 2 done, 0 failed" in result.stdout


def test_no_ray_cluster_is_one_line(tmp_path, synthetic_data_root):
    env = {k: v for k, v in cli_env(synthetic_data_root, **RAY_ENV).items() if k != "RAY_ADDRESS"}
    result = subprocess.run(
        [
            *cnntrain_command(),
            "-m",
            "hydra/launcher=ray_cluster",
            "model=lenet,cnn2",
            "trainer.epochs=1",
            "hydra.launcher.ray.init.address=auto",
            "hydra.sweep.dir=sweep",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("error: the sweep's launcher cannot reach its cluster: ")
    assert "ray start --head" in lines[-1] and "Traceback" not in result.stderr


def test_a_new_ray_init_key_is_one_line_that_names_the_plus(tmp_path, synthetic_data_root, monkeypatch):
    from cnntrain.commands import train

    from helpers import assert_one_line_error, run_main

    result = run_main(
        train.main,
        ["-m", "hydra/launcher=ray_cluster", "hydra.launcher.ray.init.log_to_driver=false", "model=lenet"],
        tmp_path,
        monkeypatch,
        CNNTRAIN_DATA_ROOT=str(synthetic_data_root),
    )
    assert_one_line_error(
        result,
        "unknown config key 'hydra.launcher.ray.init.log_to_driver'; keys of "
        "hydra.launcher.ray.init: address, object_store_memory",
        "+hydra.launcher.ray.init.log_to_driver=VALUE",
        cwd=tmp_path,
    )
