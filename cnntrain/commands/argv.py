"""The `cnntrain` command line split into Hydra's flags and the overrides, checked before Hydra sees it.

Hydra's own parser prints its usage text for an unknown flag; here an unknown or malformed flag is one line,
with a hint when it looks like a key (`--epochs 1` -> trainer.epochs=1).
"""

from __future__ import annotations

from cnntrain.commands.hints import key_like_flag
from cnntrain.errors import ConfigError, did_you_mean

INFO_FLAGS = {
    "--help",
    "-h",
    "--hydra-help",
    "--cfg",
    "-c",
    "--info",
    "-i",
    "--shell-completion",
    "-sc",
    "--version",
    "--resolve",
    "--package",
    "-p",
}
FLAGS_WITH_VALUE = {
    "--cfg",
    "-c",
    "--package",
    "-p",
    "--config-path",
    "-cp",
    "--config-name",
    "-cn",
    "--config-dir",
    "-cd",
    "--experimental-rerun",
}
CONFIG_DIR_FLAGS = ("--config-dir", "-cd")
FLAG_VALUES = {
    "--cfg": ("job", "hydra", "all"),
    "-c": ("job", "hydra", "all"),
    "--info": ("all", "config", "defaults", "defaults-tree", "plugins", "searchpath"),
    "-i": ("all", "config", "defaults", "defaults-tree", "plugins", "searchpath"),
}
FLAGS = {
    "-h",
    "--help",
    "--hydra-help",
    "--version",
    "-c",
    "--cfg",
    "--resolve",
    "-p",
    "--package",
    "-r",
    "--run",
    "-m",
    "--multirun",
    "-sc",
    "--shell-completion",
    "-cp",
    "--config-path",
    "-cn",
    "--config-name",
    "-cd",
    "--config-dir",
    "--experimental-rerun",
    "-i",
    "--info",
}
RERUN_FLAG = "--experimental-rerun"  # Hydra's: refused (a run directory is data; a pickle is code)
MODE_FLAGS = {
    "--run": ("-r", "--run"),
    "--multirun": ("-m", "--multirun"),
    "--cfg": ("-c", "--cfg"),
    "--info": ("-i", "--info"),
    "--shell-completion": ("-sc", "--shell-completion"),
}
"""Hydra's modes: one per command."""
FLAG_HELP = (
    "-m/--multirun (a sweep), -h/--help, --hydra-help, -c/--cfg job|hydra|all, --resolve, -p/--package "
    "PACKAGE, -i/--info [WHAT], -cd/--config-dir DIR, -cp/--config-path, -cn/--config-name, "
    "-sc/--shell-completion, --version, -r/--run"
)


def split_argv(argv: list[str]) -> tuple[list[str], list[str], bool]:
    """(hydra flags, overrides, multirun?) from the command line; an unknown flag or a bad flag value is a
    ConfigError (Hydra's own parser would print its usage text)."""
    flags: list[str] = []
    overrides: list[str] = []
    args = iter(argv)
    for arg in args:
        if not arg.startswith("-") or arg == "-":
            overrides.append(arg)
            continue
        flag, has_value, value = arg.partition("=")
        if flag not in FLAGS:
            raise ConfigError(
                key_like_flag(arg, argv)
                or f"unknown flag '{flag}'{did_you_mean(flag, FLAGS)}; cnntrain "
                f"takes KEY=VALUE overrides and the flags {FLAG_HELP}"
            )
        if flag == RERUN_FLAG:
            raise ConfigError(
                f"{RERUN_FLAG} is not supported: it unpickles a run directory's config.pickle, which "
                f"can run code; cnntrain-reproduce RUN_DIR runs a finished run again from its saved "
                f"overrides"
            )
        flags.append(flag)
        if flag in FLAGS_WITH_VALUE:
            value = value if has_value else next(args, "")
            if not value or value.startswith("-"):
                raise ConfigError(f"{flag} needs a value" + _allowed(flag))
        elif has_value and flag not in FLAG_VALUES:
            raise ConfigError(f"{flag} takes no value (got '{arg}')")
        if has_value or flag in FLAGS_WITH_VALUE:
            if flag in FLAG_VALUES and value not in FLAG_VALUES[flag]:
                raise ConfigError(f"{flag} {value}: unknown value" + _allowed(flag))
            flags.append(value)
    modes = [name for name in MODE_FLAGS if set(MODE_FLAGS[name]) & set(flags)]
    if len(modes) > 1:
        raise ConfigError(f"{' and '.join(modes)} cannot be combined; give one of {', '.join(MODE_FLAGS)}")
    return flags, overrides, "-m" in flags or "--multirun" in flags


def _allowed(flag: str) -> str:
    return f"; expected one of {', '.join(FLAG_VALUES[flag])}" if flag in FLAG_VALUES else ""


def flag_value(flags: list[str], names: tuple[str, ...]) -> str | None:
    """The value given to the first of `names` among the split flags (None: not given)."""
    for name, value in zip(flags, flags[1:]):
        if name in names:
            return value
    return None
