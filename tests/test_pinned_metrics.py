"""The metrics of a few default commands on the synthetic data, pinned per CPU instruction-set family, so that a
change to them is deliberate.

Float results depend on the kernels torch dispatches to (AVX2 and AVX-512 machines give different numbers for the
same command and seed), so tests/pinned_metrics.json holds one set of values per family
(torch.backends.cpu.get_cpu_capability(), with the CPU's vendor and the flags that steer oneDNN: see family()): on a
machine of a pinned family the values must be equal exactly; a family with no pins yet is skipped with how to
record them. To record or update this machine's family (each
command runs twice and must agree with itself first):

    CNNTRAIN_UPDATE_PINS=1 pytest tests/test_pinned_metrics.py

then commit tests/pinned_metrics.json with a note of why the numbers moved.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from cnntrain.training.run import run

from helpers import compose_config

PINS = Path(__file__).with_name("pinned_metrics.json")
UPDATE = os.environ.get("CNNTRAIN_UPDATE_PINS", "") not in ("", "0")
# one thread: the split of a reduction between threads changes its floats too; the family alone should decide
BASE = (
    "trainer.epochs=1",
    "trainer.batch_size=64",
    "trainer.progress=false",
    "report.plots=false",
    "report.html=false",
    "report.analysis=false",
    "threads=1",
)
COMMANDS = {
    "model=cnn2": ("model=cnn2",),
    "model=lenet optimizer=sgd": ("model=lenet", "optimizer=sgd"),
    "model=cnn2 dataset=fashion": ("model=cnn2", "dataset=fashion"),
}
KEYS = ("test.acc", "test.loss", "best.value", "train_loss")


DISPATCH_FLAGS = ("avx512_bf16", "avx512_vnni", "amx_tile", "amx_bf16")
"""CPU flags that change which kernels oneDNN picks within one ATen capability."""


def family() -> str:
    """The dispatch family: torch's CPU capability, the CPU's vendor (MKL's GEMM takes other paths on other
    vendors) and the flags that steer oneDNN, e.g. 'AVX512 GenuineIntel +amx_tile +avx512_bf16'. Two machines with
    the same key run the same kernels; a machine of another key skips until its pins are recorded."""
    vendor, flags = "unknown", set()
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        info = ""
    for line in info.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "vendor_id":
            vendor = value.strip()
        elif key.strip() == "flags":
            flags = set(value.split())
            break
    extra = " ".join(f"+{flag}" for flag in DISPATCH_FLAGS if flag in flags)
    return " ".join(part for part in (torch.backends.cpu.get_cpu_capability(), vendor, extra) if part)


def measure(command: tuple[str, ...], data_root: Path, run_dir: Path) -> dict[str, float]:
    cfg = compose_config(*command, *BASE, data_root=data_root)
    run(cfg, run_dir)
    summary = json.loads((run_dir / "summary.json").read_text())
    history = (run_dir / "metrics.csv").read_text().splitlines()
    return {
        "test.acc": summary["test"]["acc"],
        "test.loss": summary["test"]["loss"],
        "best.value": summary["best"]["value"],
        "train_loss": float(history[1].split(",")[1]),
    }


@pytest.mark.slow
@pytest.mark.parametrize("name", list(COMMANDS))
def test_pinned_metrics_of_this_cpu_family(name, synthetic_data_root, tmp_path):
    pins = json.loads(PINS.read_text()) if PINS.is_file() else {}
    got = measure(COMMANDS[name], synthetic_data_root, tmp_path / "run")
    if UPDATE:
        again = measure(COMMANDS[name], synthetic_data_root, tmp_path / "again")
        assert again == got, f"`{name}` is not deterministic run to run on this machine; nothing pinned"
        mine = pins.setdefault(family(), {"torch": torch.__version__, "commands": {}})
        mine["torch"] = torch.__version__
        mine["commands"][name] = got
        PINS.write_text(json.dumps(pins, indent=2, sort_keys=True) + "\n")
        return
    if family() not in pins or name not in pins[family()]["commands"]:
        pytest.skip(
            f"no pinned metrics for `{name}` on {family()} CPUs yet; record them on such a machine with "
            f"CNNTRAIN_UPDATE_PINS=1 pytest tests/test_pinned_metrics.py and commit {PINS.name}"
        )
    pinned = pins[family()]
    assert got == pinned["commands"][name], (
        f"`{name}` on {family()} gives {got}, pinned {pinned['commands'][name]} (pinned with torch "
        f"{pinned['torch']}, now {torch.__version__}); if the change is deliberate, re-pin with "
        f"CNNTRAIN_UPDATE_PINS=1 and say why in the commit"
    )


def test_the_pins_file_is_well_formed():
    pins = json.loads(PINS.read_text())
    assert pins, "at least one family is pinned"
    for name, pinned in pins.items():
        assert name.split()[0].isupper() and isinstance(pinned["torch"], str)
        assert set(pinned["commands"]) <= set(COMMANDS)
        for values in pinned["commands"].values():
            assert set(values) == set(KEYS) and all(isinstance(v, float) for v in values.values())
