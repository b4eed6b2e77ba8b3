"""Shared fixtures: synthetic IDX datasets so tests run the real loading code without real data."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from synthetic_idx import write_idx_dataset


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "download: exercises torchvision's download path against a local fake server")


@pytest.fixture(scope="session")
def synthetic_data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A root holding MNIST/raw and FashionMNIST/raw: 1,200 train / 300 test 28x28 images, 10 classes."""
    root = tmp_path_factory.mktemp("synthetic_data")
    write_idx_dataset(root, "MNIST", seed=0)
    write_idx_dataset(root, "FashionMNIST", seed=1)
    return root


@pytest.fixture(scope="session")
def make_data_root(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """Factory for a fresh root with one custom-size set: make_data_root(folder="MNIST", n_train=..., ...)."""

    def make(folder: str = "MNIST", **kwargs: int) -> Path:
        root = tmp_path_factory.mktemp("custom_data")
        write_idx_dataset(root, folder, **kwargs)
        return root

    return make
