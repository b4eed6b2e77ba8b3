"""What decides a run's floats, as its summary.json recorded it and as this machine would record it now.

cnntrain-reproduce compares these before any number: where one differs (a library version, the CPU's
instruction set, threads, the commit), float results may differ and are compared within a tolerance.
"""

from __future__ import annotations

from typing import Any

from cnntrain.reporting.provenance import cpu, device_name, git_commit, versions


def environment_changes(summary: dict[str, Any], cfg: Any) -> list[str]:
    """What decides the floats and differs between the original run's record (summary.json) and this machine:
    versions, device and its name, the CPU's instruction set and vector flags, threads, the commit, and the
    precision trainer.precision=auto picks here."""
    then, now = float_facts(summary), float_facts(_current_facts(cfg))
    return [
        f"{key}: {_shown(then.get(key))} then, {_shown(value)} now"
        for key, value in now.items()
        if then.get(key) != value and (key in then or key != PRECISION)  # runs before precision_choice: not known
    ]


PRECISION = "precision used"  # trainer.precision=auto decides by the machine


def float_facts(summary: dict[str, Any]) -> dict[str, Any]:
    """The facts of a run's provenance that can change its floats, by the name a message gives them."""
    facts = {f"version of {k}": v for k, v in (summary.get("versions") or {}).items() if k != "hydra"}
    cpu = summary.get("cpu") if isinstance(summary.get("cpu"), dict) else {}
    git = summary.get("git") if isinstance(summary.get("git"), dict) else {}
    facts.update(
        {
            "device": summary.get("device"),
            "device name": summary.get("device_name"),
            "cpu instruction set": cpu.get("capability"),
            "cpu vector flags": cpu.get("isa_flags"),
            "cpu dispatch variables": cpu.get("dispatch_env") or None,
            "threads": summary.get("threads"),
            "git commit": git.get("commit"),
            "uncommitted changes": git.get("dirty"),
        }
    )
    choice = summary.get("precision_choice")
    if isinstance(choice, dict):
        facts[PRECISION] = choice.get("used")
    return facts


def _current_facts(cfg: Any) -> dict[str, Any]:
    """This machine's provenance as the re-run will record it (its device and threads from the config)."""
    # torch, and cnntrain.device that imports it, only when a re-run is compared: this module stays torch-free
    import torch

    from cnntrain.device import auto_precision, resolve_device

    device = resolve_device(cfg.device)
    precision = cfg.trainer.precision
    return {
        "precision_choice": {"used": auto_precision(device)[0] if precision == "auto" else precision},
        "versions": versions(),
        "cpu": cpu(),
        "git": git_commit(),
        "device": str(device),
        "device_name": device_name(device),
        "threads": cfg.threads or torch.get_num_threads(),
    }


def _shown(value: Any) -> str:
    if value is None:
        return "not recorded"
    if isinstance(value, list):
        return " ".join(map(str, value)) if value else "none"
    return str(value)
