"""trainer.precision=auto: bf16 autocast on a CPU with native bf16 (AMX, AVX512_BF16), fp32 on every other CPU and
device, by a documented rule (cnntrain.device.auto_precision); the choice is said in the run's start line and
recorded in summary.json, and a re-run on a machine where auto picks otherwise says so."""

from __future__ import annotations

import json

import pytest
import torch

from cnntrain.device import auto_precision
from cnntrain.training.accel import Accel

from helpers import TINY_RUN, assert_one_line_error, compose_config, run_main

CPU = torch.device("cpu")


def cpu_with(monkeypatch: pytest.MonkeyPatch, *, amx: bool, avx512_bf16: bool) -> None:
    """This process's view of the CPU's bf16 features (what torch.cpu reports), as on another machine."""
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)


@pytest.mark.parametrize(
    ("amx", "avx512_bf16", "used", "why"),
    [
        (True, True, "bf16", "the CPU has AMX"),
        (False, True, "bf16", "the CPU has AVX512_BF16"),
        (False, False, "fp32", "no native bf16"),
    ],
)
def test_auto_is_bf16_only_on_a_cpu_with_native_bf16(monkeypatch, amx, avx512_bf16, used, why):
    cpu_with(monkeypatch, amx=amx, avx512_bf16=avx512_bf16)
    chosen, reason = auto_precision(CPU)
    assert chosen == used and why in reason
    accel = Accel(CPU, "auto")
    assert accel.precision == used and accel.chosen == reason
    with accel.autocast():
        product = torch.ones(4, 4) @ torch.ones(4, 4)
    assert product.dtype == (torch.bfloat16 if used == "bf16" else torch.float32)


def test_auto_is_fp32_off_the_cpu_and_a_named_precision_is_kept(monkeypatch):
    cpu_with(monkeypatch, amx=True, avx512_bf16=True)
    assert auto_precision(torch.device("cuda")) == (
        "fp32",
        "fp32 on cuda: auto chooses bf16 only on CPUs with native bf16",
    )
    assert auto_precision(torch.device("mps"))[0] == "fp32"
    named = Accel(CPU, "fp32")
    assert named.precision == "fp32" and named.chosen is None


@pytest.mark.slow
def test_a_run_says_and_records_what_auto_chose(tmp_path, monkeypatch, small_data_root):
    from cnntrain.commands import train
    from cnntrain.reporting.float_facts import environment_changes

    cpu_with(monkeypatch, amx=True, avx512_bf16=True)
    run_dir = tmp_path / "run"
    argv = [
        *TINY_RUN,
        "trainer.epochs=1",
        "trainer.progress=false",
        "trainer.precision=auto",
        f"hydra.run.dir='{run_dir}'",
    ]
    result = run_main(train.main, argv, tmp_path, monkeypatch, CNNTRAIN_DATA_ROOT=str(small_data_root))
    assert result.returncode == 0, result.stderr
    start = result.stdout.splitlines()[0]
    assert "device cpu, precision bf16 (auto: bf16 autocast: the CPU has AMX), " in start
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["precision"] == "auto"
    assert summary["precision_choice"] == {"asked": "auto", "used": "bf16", "rule": "bf16 autocast: the CPU has AMX"}

    cfg = compose_config(*TINY_RUN, "trainer.precision=auto", data_root=small_data_root)
    assert "precision used" not in " ".join(environment_changes(summary, cfg))
    cpu_with(monkeypatch, amx=False, avx512_bf16=False)  # the same run reproduced on a CPU without native bf16
    assert "precision used: bf16 then, fp32 now" in environment_changes(summary, cfg)
    del summary["precision_choice"]  # a run from before precision_choice: nothing to compare
    assert not [line for line in environment_changes(summary, cfg) if "precision" in line]


def test_a_precision_that_is_not_one_of_the_choices_is_one_line(tmp_path, monkeypatch):
    from cnntrain.commands import train

    result = run_main(train.main, [*TINY_RUN, "trainer.precision=fastest"], tmp_path, monkeypatch)
    assert_one_line_error(result, "trainer.precision=fastest", "fp32, bf16, fp16, auto", cwd=tmp_path)
