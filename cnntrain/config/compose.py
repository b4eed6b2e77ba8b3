"""Hydra composition: where the YAML configs are, which options each group has, and the composed config.

`cnntrain` composes a single run once: the preflight checks this composition and the job runs on it
(cnntrain.commands.train). Hydra is imported inside the functions, so `import cnntrain.config.compose`
stays cheap; composition errors become one ConfigError sentence.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cnntrain.config.guard import check_composed
from cnntrain.errors import ConfigError, first_line, unknown_key_message

CONFIG_NAME = "train"  # configs/train.yaml: the root config
LEGACY_AUGMENT = ("dataset.augment.translate", "dataset.augment.hflip")  # keys of the old augment mapping
_SPECIAL_IN_QUOTES = re.compile(r"(\\*)(\$\{|'|$)")  # what Hydra reads as an escape inside quotes, with the
# backslashes before it (backslashes elsewhere are literal)
VERSION_BASE = "1.3"  # Hydra's defaults of that release (no chdir into the run directory, ...)


def config_dir() -> Path:
    """Where the YAML configs are: inside the package when installed from a wheel, else the repo's configs/."""
    packaged = Path(__file__).resolve().parent.parent / "configs"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[2] / "configs"


def group_options(group: str, extra_dir: str | None = None) -> list[str]:
    """The choices of one config group, from the YAML files on disk (and a user's --config-dir)."""
    folders = [config_dir() / group] + ([Path(extra_dir) / group] if extra_dir else [])
    return sorted({p.stem for folder in folders if folder.is_dir() for p in folder.glob("*.yaml")})


@contextmanager
def hydra_session(extra_dir: str | None = None) -> Iterator[Any]:
    """A Hydra instance over our configs, with a user's --config-dir first, as `hydra.main` would set it up."""
    from hydra import version
    from hydra._internal.hydra import Hydra
    from hydra._internal.utils import create_config_search_path
    from hydra.core.config_search_path import SearchPathQuery
    from hydra.core.global_hydra import GlobalHydra

    version.setbase(VERSION_BASE)
    search_path = create_config_search_path(str(config_dir()))
    if extra_dir is not None:
        search_path.prepend(
            provider="command-line",
            path=f"file://{os.path.abspath(extra_dir)}",
            anchor=SearchPathQuery(provider="schema"),
        )
    GlobalHydra.instance().clear()
    try:
        yield Hydra.create_main_hydra2(task_name=CONFIG_NAME, config_search_path=search_path)
    finally:
        GlobalHydra.instance().clear()


def compose_train(
    overrides: list[str], *, hydra: Any = None, hydra_config: bool = False, log_configuration: bool = False
) -> Any:
    """The config `cnntrain OVERRIDES` runs (with its `hydra` node when hydra_config), or a ConfigError."""
    overrides = legacy_augment_overrides(overrides)
    if hydra is None:
        with hydra_session() as session:
            return compose_train(
                overrides, hydra=session, hydra_config=hydra_config, log_configuration=log_configuration
            )
    from hydra.errors import HydraException
    from hydra.types import RunMode
    from omegaconf import open_dict
    from omegaconf.errors import OmegaConfBaseException

    try:
        cfg = hydra.compose_config(
            config_name=CONFIG_NAME,
            overrides=list(overrides),
            run_mode=RunMode.RUN,
            from_shell=True,
            with_log_configuration=log_configuration,
        )
    except (HydraException, OmegaConfBaseException, ValueError) as err:  # ValueError: e.g. ~dataset=0
        raise ConfigError(composition_message(err, overrides, hydra)) from None
    check_composed(cfg)  # no foreign callback, no _target_ in our groups (cnntrain.config.guard)
    if not hydra_config:
        with open_dict(cfg):
            del cfg["hydra"]
    return cfg


def quoted(value: object) -> str:
    """A path or text as one quoted Hydra override value that reads back exactly: backslashes and quotes escaped,
    and `${` too, so a folder named `${oc.env:TOKEN}` (from an archive, say) is never resolved into another path."""
    text = _SPECIAL_IN_QUOTES.sub(lambda m: m.group(1) * 2 + (f"\\{m.group(2)}" if m.group(2) else ""), str(value))
    return f"'{text}'"


PLAIN = re.compile(r"[\w./:+@-]*")  # a string Hydra's parser reads back as the same string when unquoted


def override_value(value: Any, *, sweep: bool = False) -> str:
    """A Python value in Hydra's override syntax. A string is used as typed (it may hold a sweep, a list or an
    interpolation) unless it holds a space; in a sweep a list or tuple is the choice of its values. A path (or
    anything with __fspath__, such as a cnntrain.Run) is quoted."""
    if isinstance(value, str):
        return quoted(value) if re.search(r"\s", value) and value.strip()[:1] not in ("'", '"') else value
    if sweep and isinstance(value, (list, tuple, range)):
        return ",".join(_element(item) for item in value)
    return _element(value)


def _element(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, os.PathLike):
        return quoted(os.fspath(value))
    if isinstance(value, str):
        return value if PLAIN.fullmatch(value) and value else quoted(value)
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_element(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{_element(str(k))}: {_element(v)}" for k, v in value.items()) + "}"
    raise ConfigError(
        f"value {value!r} ({type(value).__name__}) cannot be written as an override; use a string, "
        f"number, boolean, None, path, list or dict"
    )


def legacy_augment_overrides(overrides: list[str]) -> list[str]:
    """The old dotted overrides dataset.augment.translate=N and .hflip=B (typed, or replayed from a saved run's
    overrides.yaml) as the one override they mean, dataset.augment={translate: N, hflip: B}: dataset.augment is a
    list or null now, and Hydra cannot set a key inside either. Sweeps (a,b) are left to Hydra."""
    found: dict[str, str] = {}
    out: list[str | None] = []
    for item in overrides:
        key, sep, value = item.partition("=")
        if sep and key in LEGACY_AUGMENT and "," not in value:
            if not found:
                out.append(None)  # where the mapping goes
            found[key.rpartition(".")[2]] = value
        else:
            out.append(item)
    if not found:
        return overrides
    mapping = "dataset.augment={" + ", ".join(f"{key}: {value}" for key, value in found.items()) + "}"
    return [mapping if item is None else item for item in out]


def composition_message(err: Exception, overrides: list[str], hydra: Any = None) -> str:
    """One sentence for what Hydra refused: an unknown key (with the keys allowed there), a missing plugin, ..."""
    text = f"{err}\n{err.__cause__ or ''}"
    bad = re.search(r"Could not override '([^']+)'", text)
    if bad and "not in struct" in text:
        from omegaconf import DictConfig, OmegaConf

        key = bad.group(1)
        parent = key.rpartition(".")[0]
        rest = [o for o in overrides if not o.split("=", 1)[0].lstrip("+~") == key]
        node = compose_train(rest, hydra=hydra, hydra_config=key.startswith("hydra."))
        target = OmegaConf.select(node, parent) if parent else node
        allowed = sorted(target.keys()) if isinstance(target, DictConfig) else []
        message = unknown_key_message(key, allowed)
        if key.startswith("hydra.") and "did you mean" not in message:
            message += f" (a key Hydra's config does not have yet is added with a '+': +{key}=VALUE)"
        if key.startswith("dataset.augment."):
            message = (
                f"{key}: dataset.augment is a list of augmentations (null when off): set it whole, e.g. "
                f"dataset.augment=[{{translate: 2}},hflip] or dataset.augment={{translate: 2, hflip: true}}"
            )
        return message
    plugin = re.search(r"Could not find 'hydra/(launcher|sweeper)/([^']+)'", text)
    if plugin:
        kind, name = plugin.groups()
        available = re.findall(r"^\t(\S+)$", text, flags=re.MULTILINE)
        return (
            f"unknown hydra/{kind} '{name}'; available: {', '.join(available) or 'basic'} (the optuna sweeper "
            f"and the joblib, submitit and Ray launchers come with pip install "
            f"'cnntrain[optuna,joblib,slurm,ray]')"
        )
    exists = re.search(r"Could not append to config. An item is already at '([^']+)'", text)
    if exists:
        return f"config key '{exists.group(1)}' already exists; drop the '+' to override it"
    first = next((line for line in text.splitlines() if line.strip()), first_line(err))
    return f"bad override: {first.split(' : Override(')[0].strip()}"
