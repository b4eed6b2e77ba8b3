"""The throughput benchmark still runs end to end (its numbers are for people, not for asserts)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


def test_benchmark_prints_three_rates_and_two_ratios(small_data_root, tmp_path):
    env = {**os.environ, "CNNTRAIN_DATA_ROOT": str(small_data_root)}
    out = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "epoch_throughput.py"),
            "model=cnn2",
            "trainer.batch_size=64",
            "--images",
            "128",
            "--rounds",
            "1",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    rates = re.findall(r"^\s+\((a|b|c)\) .*?(\d+) images/s", out.stdout, flags=re.M)
    assert [name for name, _ in rates] == ["a", "b", "c"] and all(int(r) > 0 for _, r in rates)
    assert re.search(r"ratio b/a .* = \d+\.\d{3}", out.stdout)
    assert re.search(r"ratio c/a .* = \d+\.\d{3}", out.stdout)


def test_augment_benchmark_prints_three_rates_and_two_ratios(small_data_root, tmp_path):
    env = {**os.environ, "CNNTRAIN_DATA_ROOT": str(small_data_root)}
    out = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "augment_throughput.py"),
            "model=cnn2",
            "trainer.batch_size=64",
            "--images",
            "128",
            "--rounds",
            "1",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert "augment: random_crop, hflip, randaugment, random_erasing, mixup" in out.stdout
    rates = re.findall(r"^\s+\((a|b|c)\) .*?(\d+) images/s", out.stdout, flags=re.M)
    assert [name for name, _ in rates] == ["a", "b", "c"] and all(int(r) > 0 for _, r in rates)
    assert re.search(r"ratio b/a .* = \d+\.\d{3}", out.stdout)
    assert re.search(r"ratio c/a .* = \d+\.\d{3}", out.stdout)


def test_decode_benchmark_prints_seven_rates_and_five_ratios(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "decode_throughput.py"),
            "--images",
            "40",
            "--size",
            "16",
            "--workers",
            "1",
            "--batch-size",
            "8",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("40 images 3x16x16 under ")
    rates = re.findall(r"^\s+\(([a-g])\) .*?(\d+) images/s", out.stdout, flags=re.M)
    assert [name for name, _ in rates] == list("abcdefg") and all(int(r) > 0 for _, r in rates)
    for ratio in ("b/c", "a/c", "d/c", "e/g", "f/g"):
        assert re.search(rf"ratio {ratio} .* = \d+\.\d{{3}}", out.stdout), ratio


def test_cache_key_benchmark_prints_two_rates_and_the_ratio(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "cache_key.py"), "--images", "50", "--rounds", "1"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("50 files, target shape 1x28x28, best of 1 rounds")
    rates = re.findall(r"^\((a|b)\) \w+ +([\d,]+) files/s", out.stdout, flags=re.M)
    assert [name for name, _ in rates] == ["a", "b"] and all(int(r.replace(",", "")) > 0 for _, r in rates)
    assert re.search(r"^ratio a/b \(hashing time / decoding time\): \d+\.\d{3}$", out.stdout, flags=re.M)


def test_checkpoint_overhead_benchmark_prints_the_ratio_and_changes_no_number(small_data_root, tmp_path):
    # 270 training images in batches of 32: 9 steps, a checkpoint after steps 3 and 6
    out = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "checkpoint_overhead.py"),
            "--data-root",
            str(small_data_root),
            "--every",
            "3",
            "--rounds",
            "1",
            "--",
            "model=cnn2",
            "trainer.epochs=1",
            "trainer.batch_size=32",
            "report.plots=false",
            "report.html=false",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    found = re.search(
        r"without [\d.]+ s \(test acc ([\d.]+)%\) .* \(2 checkpoints inside epochs, test acc "
        r"([\d.]+)%\)",
        out.stdout,
    )
    assert found and found.group(1) == found.group(2), out.stdout
    assert re.search(r"ratio of the medians x\d+\.\d{3}, per round x\d+\.\d{3}$", out.stdout.strip())
