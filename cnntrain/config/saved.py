"""Configs read back from run directories and checkpoints: data, read with bounds, never resolved.

A run directory or a checkpoint may come from someone else. What it holds is read as plain values: a YAML
file within a size and node budget and without anchors or aliases (cnntrain's and Hydra's own files have
none, and an alias bomb of 500 bytes expands to billions of nodes); an unpickled value walked within a node
budget (a pickle can share one list many times); a checkpoint's config with every string made literal, and
saved overrides with no interpolation that calls a resolver (`${oc.env:TOKEN}` would copy a secret of this
machine into the outputs). Each exceeded limit is one UserError line. No torch import: the commands that read
runs without training use this too. docs/trust.md lists the limits.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cnntrain.errors import ConfigError, UserError, first_line

MAX_YAML_BYTES = 1_000_000  # a run's .hydra/config.yaml is a few KB; a long class list a few hundred KB
MAX_NODES = 20_000  # values in one saved config (YAML or checkpoint); a run's config has a few hundred
MAX_DEPTH = 64  # nesting of a saved config; a run's config nests about 6 deep
RESTORE = "restore it from a copy of the run"
_INTERPOLATION = re.compile(r"\$\{")
_INTERPOLATION_START = re.compile(r"(\\*)\$\{")  # with the backslashes before it, which OmegaConf reads as escapes
_PLAIN_REFERENCE = re.compile(r"\$\{[\w.\[\]-]*\}")  # ${dataset.num_classes}: a key of the same config, no resolver


def read_saved_yaml(path: Path, *, fix: str = RESTORE) -> Any:
    """A YAML file of a run directory as plain lists and dicts (None when blank), read as OmegaConf reads Hydra's
    files but bounded: at most MAX_YAML_BYTES, MAX_NODES and MAX_DEPTH, no anchors or aliases. Interpolations
    stay strings: nothing is resolved. Any problem is a UserError naming the file and ending in `fix`."""
    import yaml
    from omegaconf._utils import get_yaml_loader

    from cnntrain.files import yaml_error

    text = _read_bounded(path, fix)
    try:
        _check_events(yaml.parse(io.StringIO(text), Loader=_loader()), path, fix)
        return yaml.load(text, Loader=get_yaml_loader()) if text.strip() else None  # OmegaConf's: a SafeLoader
    except yaml.YAMLError as err:
        raise yaml_error(path, _python_parser_error(text) or err, fix) from None


DESTINATIONS = ("mlflow", "wandb")
"""Config keys that say where a run's trackers send what they log (a store, a server, a project): this machine's,
never a saved run's. `logger` (which trackers: csv, tensorboard, mlflow, wandb) is kept: it chooses what is logged,
not where, so a resumed run goes on logging to its trackers at this machine's defaults (an MLflow store in the
outputs root or $MLFLOW_TRACKING_URI, W&B offline or $WANDB_MODE)."""


def local_destinations(config: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """A saved config (plain data) with the trackers' destinations (mlflow, wandb) and dataset.cache_dir set to this
    machine's defaults, and the keys whose saved value differed: a checkpoint someone sent chooses no MLflow
    store, W&B project or cache folder here."""
    from cnntrain.config.schema import from_yaml

    changed: list[str] = []
    result = dict(config)
    for key in DESTINATIONS:
        default = from_yaml(key).default_factory()  # type: ignore[misc]
        if key in result and result[key] != default:
            changed.append(key)
        result[key] = default
    dataset = result.get("dataset")
    if isinstance(dataset, dict) and dataset.get("cache_dir") is not None:
        changed.append("dataset.cache_dir")
        result["dataset"] = {**dataset, "cache_dir": None}
    return result, changed


def is_destination(key: str) -> bool:
    """Whether an override's key says where a run's trackers log or its caches go: `logger`, `mlflow.KEY`,
    `wandb.KEY`, `dataset.cache_dir`. These, and only these, a command may set on a saved run it continues or
    evaluates (the checkpoint's own are never taken, see local_destinations)."""
    head, dot, _ = key.partition(".")
    return key in ("logger", "dataset.cache_dir") or bool(dot) and head in DESTINATIONS


def destinations_notice(changed: list[str], where: str, given: list[str] | tuple[str, ...] = ()) -> str | None:
    """The one line that says which saved destinations were not taken; None when there is nothing to say. `given`:
    the destination keys the command sets itself (a saved key the command replaces whole is not named)."""
    left = [key for key in changed if key not in given]
    if not left:
        return None
    uses = "this machine's defaults"
    if given:
        uses = f"the command's {', '.join(given)} and this machine's defaults for the rest"
    return (
        f"notice: {where} names its own {', '.join(left)}; not taken (a saved run chooses no destination "
        f"on this machine): this run uses {uses}"
    )


def with_destinations(config: dict[str, Any], overrides: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """A saved config (plain data, its destinations already this machine's) with the command's destination
    overrides (`logger=[csv,mlflow]`, `mlflow.tracking_uri=...`: each is_destination, in Hydra's override
    grammar) set: the command line is the user's own, so its values are taken as typed."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    result = dict(config)
    for text in overrides:
        try:
            (override,) = OverridesParser.create().parse_overrides([text])
        except OverrideParseException as err:
            raise ConfigError(f"cannot parse override '{text}': {first_line(err)}") from None
        key = override.key_or_group
        if override.is_sweep_override():
            raise ConfigError(
                f"override '{text}' sweeps over several values, and a saved run is continued once: give one "
                f"value (a list is written in brackets: logger=[csv,mlflow])"
            )
        if not is_destination(key) or override.input_line.startswith(("+", "~")):
            raise ConfigError(
                f"override '{text}': a saved run takes only KEY=VALUE for logger, mlflow.KEY, wandb.KEY and "
                f"dataset.cache_dir"
            )
        *parents, leaf = key.split(".")
        section = result
        for name in parents:
            inner = section.get(name)
            section[name] = dict(inner) if isinstance(inner, dict) else {}
            section = section[name]
        section[leaf] = override.value()
    return result


def saved_config_data(config: Any, where: str, *, fix: str = RESTORE) -> Any:
    """A config from a checkpoint (`where` names it in messages) as plain data to give OmegaConf: checked to be
    mappings with string keys, lists, strings, numbers, booleans and nulls within the node and depth budgets,
    and returned with every string made literal. cnntrain saves configs resolved, so a `${` left in one is
    text (a class folder may be named so): it is kept as written and never resolved (an `${oc.env:TOKEN}`
    would copy a secret of this machine into the outputs)."""
    walk(config, where, fix=fix)
    if isinstance(config, dict):
        config = local_destinations(config)[0]
    return _literal(config)


def run_config_data(path: Path, *, fix: str = RESTORE) -> dict[str, Any]:
    """A run directory's .hydra/config.yaml as plain data for OmegaConf.create, the one reading every caller (the
    Python API's Run.config among them) shares: bounded (read_saved_yaml), and with every interpolation that
    calls a resolver made literal text, so `${oc.env:TOKEN}` never reads this machine; a plain reference to
    another key of the same config (`${dataset.num_classes}`) stays one, as Hydra composed it."""
    data = read_saved_yaml(path, fix=fix) or {}
    if not isinstance(data, dict):
        raise UserError(f"{path} holds {type(data).__name__}, not the mapping a run's config is; {fix}")
    walk(data, str(path), fix=fix)
    return _literal(data, keep_references=True)


def check_saved_overrides(overrides: list[str], where: str, *, fix: str = RESTORE) -> None:
    """Override strings read from a run (overrides.yaml): no resolver interpolation in any of them; a plain
    reference to another key (`${dataset.num_classes}`) is fine."""
    for number, override in enumerate(overrides, 1):
        if "${" in override and not _plain_interpolations(override):
            raise UserError(
                f"{where}: override {number} ({override[:80]!r}) holds an interpolation that calls a "
                f"resolver; a saved run is data and is never resolved against this machine (its "
                f"environment, files or code); {fix}"
            )


def literal(text: str, *, keep_references: bool = False) -> str:
    """`text` escaped for OmegaConf so that it reads back exactly as written: no `${...}` in it is resolved (with
    keep_references, a plain reference to another key, `${dataset.num_classes}`, stays one)."""
    if "${" not in text:
        return text

    def escape(match: re.Match[str]) -> str:
        if keep_references and _PLAIN_REFERENCE.match(text, match.end() - 2):
            return match.group()
        return match.group(1) * 2 + "\\${"

    return _INTERPOLATION_START.sub(escape, text)


def walk(value: Any, where: str, *, limit: int = MAX_NODES, plain_only: bool = True, fix: str = RESTORE) -> None:
    """Check a value unpickled from a file within budgets: at most `limit` nodes (a shared reference counts
    each time it is reached: a pickle can share one list a billion times in a few hundred bytes) and MAX_DEPTH
    levels; with plain_only, string keys and plain values only (a config). Iterative: the depth is ours to
    limit."""
    stack: list[tuple[str, Any, int]] = [("", value, 0)]
    seen = 0
    while stack:
        key, item, depth = stack.pop()
        seen += 1
        if seen > limit:
            raise UserError(
                f"{where}: more than {limit:,} values (shared references count each time), far more "
                f"than cnntrain writes; refused; {fix}"
            )
        if depth > MAX_DEPTH:
            raise UserError(f"{where}: nested more than {MAX_DEPTH} levels deep at '{key}'; refused; {fix}")
        if isinstance(item, dict):
            for name in item:
                if plain_only and not isinstance(name, str):
                    raise UserError(f"{where}: '{key}' has a key of type {type(name).__name__}, not a string; {fix}")
            stack.extend((f"{key}.{name}" if key else name, child, depth + 1) for name, child in item.items())
        elif isinstance(item, (list, tuple)):
            stack.extend((f"{key}[{index}]", child, depth + 1) for index, child in enumerate(item))
        elif plain_only and item is not None and not isinstance(item, (str, int, float, bool)):
            raise UserError(f"{where}: '{key}' is a {type(item).__name__}, not a plain value; {fix}")


def _plain_interpolations(text: str) -> bool:
    """Whether every `${` in text opens a plain reference to another key (no resolver, nothing nested)."""
    return all(_PLAIN_REFERENCE.match(text, match.start()) for match in _INTERPOLATION.finditer(text))


def _literal(value: Any, keep_references: bool = False) -> Any:
    if isinstance(value, str):
        return literal(value, keep_references=keep_references)
    if isinstance(value, dict):
        return {key: _literal(item, keep_references) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_literal(item, keep_references) for item in value]
    return value


def _read_bounded(path: Path, fix: str) -> str:
    if not path.is_file():
        raise UserError(f"{path} not found; {fix}")
    try:
        with path.open("rb") as file:
            data = file.read(MAX_YAML_BYTES + 1)
    except OSError as err:
        raise UserError(f"cannot read {path}: {first_line(err)}; {fix}") from None
    if len(data) > MAX_YAML_BYTES:
        raise UserError(f"{path} is larger than {MAX_YAML_BYTES:,} bytes, far more than a run writes; refused; {fix}")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise UserError(f"cannot read {path}: not UTF-8 text ({first_line(err)}); {fix}") from None


def _check_events(events: Iterator[Any], path: Path, fix: str) -> None:
    import yaml

    nodes = depth = 0
    for event in events:
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise UserError(
                f"{path}: holds a YAML anchor or alias (&, *), which cnntrain and Hydra never write; "
                f"refused (aliases can expand a small file into billions of values); {fix}"
            )
        if isinstance(event, (yaml.ScalarEvent, yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            nodes += 1
            if nodes > MAX_NODES:
                raise UserError(f"{path}: more than {MAX_NODES:,} values, far more than a run writes; refused; {fix}")
        if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            depth += 1
            if depth > MAX_DEPTH:  # the YAML loader recurses once per level
                raise UserError(f"{path}: nested more than {MAX_DEPTH} levels deep; refused; {fix}")
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            depth -= 1


def _python_parser_error(text: str) -> Exception | None:
    """The pure-Python parser's error for text libyaml refused (its messages name the character, as OmegaConf's
    do), from its events alone: nothing is composed or built, so no alias expands and no recursion deepens."""
    import yaml

    depth = 0
    try:
        for event in yaml.parse(io.StringIO(text), Loader=yaml.SafeLoader):
            depth += isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent))
            depth -= isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent))
            if depth > MAX_DEPTH:  # deeper than a run writes: libyaml's own message will do
                return None
    except yaml.YAMLError as err:
        return err
    return None


def _loader() -> Any:
    import yaml

    return getattr(yaml, "CSafeLoader", yaml.SafeLoader)
