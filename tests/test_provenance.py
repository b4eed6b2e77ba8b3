"""What summary.json records about what decides a run's floats: the commit of a checkout, the CPU's
instruction-set family as torch dispatches to it, and the variables that cap it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from cnntrain.reporting.provenance import cpu, git_commit

REPO = Path(__file__).resolve().parents[1]


def test_git_commit_of_a_checkout_is_its_head():
    import cnntrain

    head = subprocess.run(
        ["git", "-C", str(Path(cnntrain.__file__).parents[1]), "rev-parse", "HEAD"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    found = git_commit()
    assert found is not None and found["commit"] == head and len(head) == 40
    assert isinstance(found["dirty"], bool)


def test_cpu_names_the_dispatched_family_and_its_flags():
    found = cpu()
    assert found["capability"] == torch.backends.cpu.get_cpu_capability()
    if Path("/proc/cpuinfo").is_file():
        listed = set(Path("/proc/cpuinfo").read_text().split("flags", 1)[1].split("\n", 1)[0].split())
        assert found["isa_flags"] and set(found["isa_flags"]) <= listed
        assert found["capability"] != "AVX512" or "avx512f" in found["isa_flags"]


def test_a_capped_dispatch_is_recorded():
    """ATEN_CPU_CAPABILITY=default makes torch dispatch to its plain kernels: the record says so, and why."""
    env = {**os.environ, "ATEN_CPU_CAPABILITY": "default"}
    code = "import json; from cnntrain.reporting.provenance import cpu; print(json.dumps(cpu()))"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    found = json.loads(done.stdout)
    assert found["capability"] == "DEFAULT"
    assert found["dispatch_env"] == {"ATEN_CPU_CAPABILITY": "default"}
