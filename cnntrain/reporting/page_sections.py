"""The sections every run's page shares, whatever its task: augmentation, model, config and provenance, and the
helpers that read a value from summary.json for a page (a hand-edited file may hold anything: a missing or
wrong-typed value shows as "-"). The single-label page (page.py), the multi-label page (label_page.py) and the
sweep's page (sweep_page.py) build on these; each section is (anchor, title, body) for html.page, or None when
the run directory has nothing to show in it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cnntrain.reporting.console import format_macs, format_metric
from cnntrain.reporting.html import figure, folded, number, read_text, section, table
from cnntrain.reporting.run_dir import RunDir
from cnntrain.reporting.text import html_text


def augment_section(paths: RunDir, root: Path) -> tuple[str, str, str] | None:
    """The first training images after dataset.augment (augment_preview.png), when the run drew them."""
    picture = figure(
        paths.augment_preview, root, "the first training images after dataset.augment (augment_preview.png)"
    )
    return section("augment", "Augmentation", picture) if picture else None


def model_section(summary: dict[str, Any]) -> tuple[str, str, str] | None:
    """The model summary's layers (a block's own layers indented), with the totals of the top-level rows."""
    layers = summary.get("model_summary")
    if not isinstance(layers, list) or not layers:
        return None
    rows, params, macs = [], 0, 0
    for layer in (layer for layer in layers if isinstance(layer, dict)):
        p, m = int(number(layer.get("params")) or 0), int(number(layer.get("macs")) or 0)
        if layer.get("part_of") is None:
            params, macs = params + p, macs + m
        name = ("\u2003" if layer.get("part_of") is not None else "") + str(layer.get("layer", "?"))
        rows.append(
            (layer.get("index", ""), name, layer.get("detail", ""), layer.get("output", ""), f"{p:,}", format_macs(m))
        )
    body = table(
        ["#", "layer", "details", "output shape", "params", "MACs"],
        rows,
        numeric=(0, 3, 4, 5),
        footer=["", "total", "", "", f"{params:,}", format_macs(macs)],
    )
    return section("model", f"Model {summary.get('model', '')}", folded(f"{len(rows)} rows", body, True))


def config_section(paths: RunDir, root: Path) -> tuple[str, str, str] | None:
    """The command line's overrides and .hydra/config.yaml, shown as text (never resolved)."""
    config = read_text(paths.config_yaml, root)
    overrides = read_text(paths.overrides_yaml, root)
    if config is None:
        return None
    shown = folded("overrides on the command line", f"<pre>{html_text(overrides, keep_lines=True)}</pre>", True)
    body = (shown if overrides else "") + folded(
        ".hydra/config.yaml", f"<pre>{html_text(config, keep_lines=True)}</pre>"
    )
    return section("config", "Config", body)


def provenance_section(summary: dict[str, Any]) -> tuple[str, str, str] | None:
    """What besides the config decides the run's numbers: versions, commit, device, CPU, platform, command."""
    rows: list[tuple[str, Any]] = []
    versions = summary.get("versions")
    if isinstance(versions, dict):
        rows += [(name, version) for name, version in versions.items()]
    git = summary.get("git")
    if isinstance(git, dict):
        rows.append(("git commit", f"{git.get('commit')}{' (uncommitted changes)' if git.get('dirty') else ''}"))
    for key in ("device", "device_name", "threads"):
        if key in summary:
            rows.append((key.replace("_", " "), summary[key]))
    cpu = summary.get("cpu")
    if isinstance(cpu, dict):
        rows += [("cpu", cpu.get("model")), ("cpu instruction set", cpu.get("capability"))]
        if isinstance(cpu.get("isa_flags"), list):
            rows.append(("cpu vector flags", " ".join(str(flag) for flag in cpu["isa_flags"])))
        if cpu.get("dispatch_env"):
            rows.append(("cpu dispatch capped by", str(cpu["dispatch_env"])))
    platform = summary.get("platform")
    if isinstance(platform, dict):
        rows += [(f"platform {key}", value) for key, value in platform.items()]
    deterministic = summary.get("deterministic")
    if isinstance(deterministic, dict):
        rows.append(("deterministic", ", ".join(f"{k}={v}" for k, v in deterministic.items())))
    command = summary.get("command")
    if isinstance(command, list):
        rows.append(("command", " ".join(str(part) for part in command)))
    if not rows:
        return None
    return section("provenance", "Provenance", table(None, rows))


# ---------------------------------------------------------------- values from summary.json


def metric(name: str, value: Any) -> str:
    """A metric from a file as the console shows it; "-" where it is missing or not a number."""
    value = number(value)
    return "-" if value is None else format_metric(name, value)


def get(data: Any, *keys: str) -> Any:
    """data[k1][k2]..., None where a level is missing or not a mapping (a hand-edited file)."""
    for key in keys:
        data = data.get(key) if isinstance(data, dict) else None
    return data


def fixed(value: Any, digits: int = 3) -> str:
    """A number from a file with `digits` decimals; "-" where it is missing or not a number."""
    value = number(value)
    return "-" if value is None else f"{value:.{digits}f}"
