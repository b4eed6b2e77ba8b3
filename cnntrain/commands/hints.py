"""Hints for the mistakes a newcomer makes first: habits from other tools (`--epochs 1`), a shell that cut a
list override at its spaces, and a model file of their own that cnntrain cannot see.

Each function returns the end of one error sentence; the checks that detect the mistake stay where they
are (cnntrain.commands.train and .preflight) and only call here to say what to type instead.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path

from cnntrain.config.flat import flatten
from cnntrain.config.names import CONFIG_GROUPS
from cnntrain.errors import UserError

KEY_ORDER = ("trainer.", "optimizer.", "", "dataset.", "scheduler.", "model.", "report.")
"""Where a bare name is looked for first: `--lr` means optimizer.lr, `--epochs` trainer.epochs."""


def key_like_flag(arg: str, argv: list[str]) -> str | None:
    """The error for an unknown flag named like a config key (`--epochs 1`, `--lr=3e-4`): the override it means,
    instead of the list of flags; None for any other flag."""
    flag, has_value, value = arg.partition("=")
    if not flag.lstrip("-"):
        return None
    following = argv[argv.index(arg) + 1 : argv.index(arg) + 2]
    if not has_value and following and "=" not in following[0] and not following[0].startswith("-"):
        value = following[0]
    meant = flag_as_override(flag, value or None)
    if meant is None:
        return None
    return f"unknown flag '{flag}'; cnntrain takes KEY=VALUE overrides: write {meant} (cnntrain --help lists them)"


def flag_as_override(flag: str, value: str | None) -> str | None:
    """`--epochs` (with its value, if one was given) as the override the user meant, e.g. 'trainer.epochs=1';
    None when the flag's name is no config key or group."""
    name = flag.lstrip("-").replace("-", "_")
    try:
        key = _config_key(name)
    except UserError:  # the default config does not compose: say nothing more than the unknown flag
        return None
    if key is None:
        return None
    return f"{key}={value if value else 'VALUE'}"


def _config_key(name: str) -> str | None:
    if name in CONFIG_GROUPS:
        return name
    keys = _default_keys()
    if name in keys:
        return name
    for prefix in KEY_ORDER:
        matches = [key for key in keys if key.startswith(prefix) and key.rpartition(".")[2] == name]
        if matches:
            return matches[0]
    leaves = {key.rpartition(".")[2]: key for key in reversed(keys)}
    close = difflib.get_close_matches(name, list(leaves), n=1, cutoff=0.8)
    return leaves[close[0]] if close else None


def _default_keys() -> list[str]:
    """Every dotted key of the default config (trainer.epochs, optimizer.lr, ...), in file order."""
    from omegaconf import OmegaConf

    from cnntrain.config.compose import compose_train

    tree = OmegaConf.to_container(compose_train([]), resolve=False)
    return list(flatten(tree))


def cut_override(overrides: list[str], index: int) -> str | None:
    """The whole override a shell cut at its spaces (`dataset.augment=[{random_crop:` `4},hflip]`), put back
    together from the pieces that follow, when overrides[index] opens more brackets than it closes."""
    pieces = [overrides[index]]
    for piece in overrides[index + 1 :]:
        if _depth(" ".join(pieces)) <= 0:
            break
        pieces.append(piece)
    whole = " ".join(pieces)
    return whole if len(pieces) > 1 and _depth(whole) == 0 else None


def _depth(text: str) -> int:
    return sum(text.count(c) for c in "[{(") - sum(text.count(c) for c in "]})")


def home_path_hint(override: str) -> str | None:
    """`dataset.root=~/photos`: no shell expands a `~` after `=`, and Hydra's lexer takes none in a value (quoted,
    it would stay a folder named `~`). The end of the error with the path written out; None without a `~`."""
    key, _, value = override.partition("=")
    if "~" not in value:
        return None
    if value.startswith("~"):
        return f"; a '~' is not expanded after '=': write the path out, {key}={os.path.expanduser(value)}"
    return f"; a '~' is not expanded after '=': write the path out in full (or \"{key}=$HOME/...\" for the shell)"


def own_config_hint(group: str, value: str, extra_dir: str | None) -> str:
    """Where a file of one's own goes: DIR/GROUP/VALUE.yaml and --config-dir DIR (named, when the file is found
    in the usual places under the current folder)."""
    if extra_dir is not None:
        return f"; {Path(extra_dir) / group / (value + '.yaml')} does not exist either"
    for folder in (Path("configs"), Path("."), Path("conf")):
        if (folder / group / f"{value}.yaml").is_file():
            return (
                f"; {folder / group / (value + '.yaml')} is there: pass its folder, cnntrain --config-dir "
                f"{folder} {group}={value}"
            )
    if Path(f"{value}.yaml").is_file():
        return (
            f"; ./{value}.yaml is there: move it to my_configs/{group}/{value}.yaml and run cnntrain "
            f"--config-dir my_configs {group}={value}"
        )
    return (
        f"; a {group} of your own: save it as DIR/{group}/{value}.yaml and pass the folder, cnntrain "
        f"--config-dir DIR {group}={value}"
    )
