"""The small rules every config check is made of: a condition with its message, a choice, a positive number."""

from __future__ import annotations

import math
from typing import Any

from omegaconf import DictConfig, OmegaConf

from cnntrain.errors import ConfigError


def require(ok: bool, message: str) -> None:
    """A ConfigError with `message` unless `ok`."""
    if not ok:
        raise ConfigError(message)


def choice(cfg: DictConfig, key: str, allowed: tuple[str, ...], prefix: str = "") -> None:
    """`prefix` completes the key's name in the message when cfg is a sub-config (the dataset's)."""
    value = OmegaConf.select(cfg, key)
    require(value in allowed, f"{prefix}{key}={value}: expected one of {', '.join(allowed)}")


def positive(cfg: DictConfig, key: str, *, strict: bool = True) -> None:
    """A finite number > 0 (or >= 0 when not strict)."""
    value = OmegaConf.select(cfg, key)
    require(math.isfinite(value), f"{key}={value}: must be a finite number")
    ok = value > 0 if strict else value >= 0
    require(ok, f"{key}={value}: must be {'> 0' if strict else '>= 0'}")


def listed(value: Any) -> Any:
    """A list config as a plain list (None stays None), for a message."""
    return list(value) if value is not None else None
