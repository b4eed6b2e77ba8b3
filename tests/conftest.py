"""Shared fixtures: synthetic IDX datasets so tests run the real loading code without real data."""

from __future__ import annotations

import os

# Two test processes share the cores (pytest -n auto), each with torch's OpenMP pool of one thread a core: threads
# that spin while they wait for work take the core the other process needs (a third of the suite's time on 2
# cores). Sleeping waiters change no number, only who gets the core; set before torch loads OpenMP, inherited by
# the commands the tests start.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from helpers import TINY_RUN, cli_env, cnntrain_command, compose_config, run_main
from synthetic_idx import write_idx_dataset


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "download: exercises torchvision's download path against a local fake server")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The modules with the most end-to-end (`slow`) tests first, each module's tests together and in order: two
    test processes then finish on short tests, instead of one waiting for the other's 30-second test that started
    last. The order is the same in every process (pytest-xdist requires it) and no test depends on it."""
    modules: dict[str, list[pytest.Item]] = {}
    for item in items:
        modules.setdefault(item.nodeid.split("::", 1)[0], []).append(item)
    weight = {name: sum(1 for item in tests if item.get_closest_marker("slow")) for name, tests in modules.items()}
    items[:] = [item for name in sorted(modules, key=lambda name: -weight[name]) for item in modules[name]]


@pytest.fixture(autouse=True)
def own_cache_folder(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test's decoded-image caches and shard indexes in a folder of its own (XDG_CACHE_HOME, inherited by the
    commands tests start), never in the user's ~/.cache."""
    folder = tmp_path_factory.mktemp("xdg_cache")
    monkeypatch.setenv("XDG_CACHE_HOME", str(folder))
    return folder / "cnntrain"


@pytest.fixture(scope="session")
def synthetic_data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A root holding MNIST/raw and FashionMNIST/raw: 1,200 train / 300 test 28x28 images, 10 classes."""
    root = tmp_path_factory.mktemp("synthetic_data")
    write_idx_dataset(root, "MNIST", seed=0)
    write_idx_dataset(root, "FashionMNIST", seed=1)
    return root


@pytest.fixture(scope="session")
def one_epoch_run(tmp_path_factory: pytest.TempPathFactory, synthetic_data_root: Path) -> Path:
    """A finished one-epoch TINY_RUN on synthetic_data_root (run(cfg, folder): no .hydra folder), trained once per
    session for the tests that read a run (eval, predict, the commands' mistakes). Read-only: a module copies it
    (shutil.copytree) before anything writes into it."""
    from cnntrain.training.run import run

    folder = tmp_path_factory.mktemp("one_epoch_run")
    run(compose_config(*TINY_RUN, "trainer.epochs=1", "trainer.progress=false", data_root=synthetic_data_root), folder)
    return folder


@pytest.fixture(scope="session")
def small_data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A quarter of synthetic_data_root (MNIST/raw, 300 train / 100 test), for end-to-end runs whose assertions
    do not depend on the data's size: a run here trains on a quarter of the images."""
    root = tmp_path_factory.mktemp("small_data")
    write_idx_dataset(root, "MNIST", n_train=300, n_test=100, seed=3)
    return root


@pytest.fixture
def small_config(small_data_root: Path) -> Callable[..., object]:
    """tiny_config on small_data_root."""

    def make(*overrides: str):
        return compose_config(*TINY_RUN, "trainer.progress=false", *overrides, data_root=small_data_root)

    return make


@pytest.fixture(scope="session")
def make_data_root(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """Factory for a fresh root with one custom-size set: make_data_root(folder="MNIST", n_train=..., ...)."""

    def make(folder: str = "MNIST", **kwargs: int) -> Path:
        root = tmp_path_factory.mktemp("custom_data")
        write_idx_dataset(root, folder, **kwargs)
        return root

    return make


@pytest.fixture
def run_cli(tmp_path: Path, synthetic_data_root: Path) -> Callable[..., subprocess.CompletedProcess]:
    """Run `cnntrain ARGS` in a fresh folder with the synthetic data as CNNTRAIN_DATA_ROOT."""

    def run(
        *args: str, data_root: Path | None = None, timeout: float = 300, command: list[str] | None = None, **env: str
    ) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*(command or cnntrain_command()), *args],
            cwd=tmp_path,
            env=cli_env(data_root or synthetic_data_root, **env),
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    return run


@pytest.fixture
def start_cli(tmp_path: Path, synthetic_data_root: Path) -> Iterator[Callable[..., subprocess.Popen]]:
    """Start `cnntrain ARGS` in the background (like run_cli), for tests that signal or kill it."""
    started: list[subprocess.Popen] = []

    def start(*args: str) -> subprocess.Popen:
        process = subprocess.Popen(
            [*cnntrain_command(), *args],
            cwd=tmp_path,
            env=cli_env(synthetic_data_root),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.fixture
def tiny_config(synthetic_data_root: Path) -> Callable[..., object]:
    """compose_config with the synthetic data and a run small enough for a unit test."""

    def make(*overrides: str):
        return compose_config(*TINY_RUN, "trainer.progress=false", *overrides, data_root=synthetic_data_root)

    return make


@pytest.fixture
def train_cli(synthetic_data_root: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., object]:
    """`cnntrain TINY_RUN OVERRIDES hydra.run.dir=RUN_DIR` through the CLI's main in this process (preflight,
    Hydra's job, the run), on the synthetic data: tiny_config's settings, on the path users take."""
    return _trainer(synthetic_data_root, monkeypatch)


@pytest.fixture
def small_train_cli(small_data_root: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., object]:
    """train_cli on small_data_root, for runs whose assertions do not depend on the data's size."""
    return _trainer(small_data_root, monkeypatch)


def _trainer(data_root: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., object]:
    from cnntrain.commands.train import main

    def train(run_dir: Path, *overrides: str):
        argv = [*TINY_RUN, "trainer.progress=false", *overrides, f"hydra.run.dir='{run_dir}'"]
        result = run_main(main, argv, run_dir.parent, monkeypatch, CNNTRAIN_DATA_ROOT=str(data_root))
        assert result.returncode == 0, result.stderr
        return result

    return train
